//! The strict TOML table reader every settings parser uses (a leaf: it imports nothing of the
//! crate). Unknown keys and wrong types are collected as [`Problem`]s, all of them, and no
//! message ever repeats a value.

use std::path::PathBuf;

/// One configuration problem: where (`table`, `key`) and what. The caller adds the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The table as written in TOML, e.g. `providers.vault` or `confluence."https://x"`.
    pub table: String,
    pub key: Option<String>,
    pub message: String,
}

/// A key as TOML would need it written in a table name: bare when it can be, else quoted.
pub fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The candidate nearest to `name`, when it is near enough to be a typo: a Damerau-Levenshtein
/// distance (a swap of two neighbours counts once, case is ignored) of 1, or 2 for a name of
/// five characters or more (`valt` for `vault`, `adress` for `address`, `apitokn` for
/// `api_token`). Ties go to the first candidate. Used for unknown keys, schemes and `#KEY`s.
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = if name.chars().count() < 5 { 1 } else { 2 };
    let lower = name.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let d = strsim::damerau_levenshtein(&lower, &c.to_lowercase());
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Reads one TOML table strictly.
pub struct TableReader<'t, 'p> {
    table: &'t toml::Table,
    path: String,
    used: Vec<&'t str>,
    problems: &'p mut Vec<Problem>,
}

/// Names a TOML value's type without showing it.
pub fn describe_toml(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

impl<'t, 'p> TableReader<'t, 'p> {
    pub fn new(
        table: &'t toml::Table,
        path: impl Into<String>,
        problems: &'p mut Vec<Problem>,
    ) -> Self {
        TableReader {
            table,
            path: path.into(),
            used: Vec::new(),
            problems,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn problem(&mut self, key: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem {
            table: self.path.clone(),
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }

    /// Whether a problem was already reported for `key` of this table.
    pub fn has_problem(&self, key: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.table == self.path && p.key.as_deref() == Some(key))
    }

    fn get(&mut self, key: &'t str) -> Option<&'t toml::Value> {
        self.used.push(key);
        self.table.get(key)
    }

    fn wrong_type(&mut self, key: &str, expected: &str, found: &toml::Value) {
        let found = describe_toml(found);
        self.problem(Some(key), format!("expected {expected}, found {found}"));
    }

    pub fn string(&mut self, key: &'t str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                self.wrong_type(key, "a string", other);
                None
            }
        }
    }

    /// A string that must not be empty.
    pub fn non_empty_string(&mut self, key: &'t str) -> Option<String> {
        let s = self.string(key)?;
        if s.trim().is_empty() {
            self.problem(Some(key), "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn path_buf(&mut self, key: &'t str) -> Option<PathBuf> {
        self.non_empty_string(key).map(PathBuf::from)
    }

    pub fn bool(&mut self, key: &'t str) -> Option<bool> {
        match self.get(key)? {
            toml::Value::Boolean(b) => Some(*b),
            other => {
                self.wrong_type(key, "true or false", other);
                None
            }
        }
    }

    pub fn integer(&mut self, key: &'t str, min: i64, max: i64) -> Option<i64> {
        match self.get(key)? {
            toml::Value::Integer(i) if (min..=max).contains(i) => Some(*i),
            toml::Value::Integer(_) => {
                self.problem(Some(key), format!("must be between {min} and {max}"));
                None
            }
            other => {
                self.wrong_type(key, "an integer", other);
                None
            }
        }
    }

    /// An array of strings (each element's type is checked; values are never shown).
    pub fn string_list(&mut self, key: &'t str) -> Option<Vec<String>> {
        match self.get(key)? {
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        toml::Value::String(s) => out.push(s.clone()),
                        other => {
                            let found = describe_toml(other);
                            self.problem(
                                Some(key),
                                format!("element {} is {found}, expected a string", i + 1),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.wrong_type(key, "an array of strings", other);
                None
            }
        }
    }

    /// A sub-table, or an inline table.
    pub fn table(&mut self, key: &'t str) -> Option<&'t toml::Table> {
        match self.get(key)? {
            toml::Value::Table(t) => Some(t),
            other => {
                self.wrong_type(key, "a table", other);
                None
            }
        }
    }

    /// Marks a key as handled without reading it here.
    pub fn allow(&mut self, key: &'t str) {
        self.used.push(key);
    }

    /// Reports every key nobody read, with the nearest key this table does read (`api_tokn`:
    /// "did you mean `api_token`?"). The keys read are exactly the ones the table knows: every
    /// parser asks for each of its keys whether or not it is there.
    pub fn finish(self) {
        let TableReader {
            table,
            path,
            used,
            problems,
        } = self;
        for key in table.keys() {
            if !used.contains(&key.as_str()) {
                let message = match closest(key, used.iter().copied()) {
                    Some(k) => format!("unknown key (did you mean `{k}`?)"),
                    None => "unknown key".into(),
                };
                problems.push(Problem {
                    table: path.clone(),
                    key: Some(key.clone()),
                    message,
                });
            }
        }
    }

    /// A reader for a sub-table, sharing the problem list.
    pub fn with_sub<R>(
        &mut self,
        key: &'t str,
        f: impl FnOnce(&mut TableReader<'_, '_>) -> R,
    ) -> Option<R> {
        let table = self.table(key)?;
        let path = format!("{}.{key}", self.path);
        let mut sub = TableReader::new(table, path, &mut *self.problems);
        let r = f(&mut sub);
        sub.finish();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(toml: &str, keys: &[&'static str]) -> Vec<Problem> {
        let table: toml::Table = toml.parse().unwrap();
        let mut problems = Vec::new();
        let mut r = TableReader::new(&table, "providers.vault", &mut problems);
        for k in keys {
            r.string(k);
        }
        r.finish();
        problems
    }

    #[test]
    fn an_unknown_key_names_the_nearest_known_one() {
        let p = problems_of(
            "adress = \"x\"\ncolour = \"y\"\n",
            &["address", "namespace"],
        );
        let messages: Vec<_> = p
            .iter()
            .map(|p| format!("{}: {}", p.key.as_deref().unwrap_or(""), p.message))
            .collect();
        assert_eq!(
            messages,
            [
                "adress: unknown key (did you mean `address`?)",
                "colour: unknown key"
            ]
        );
    }

    #[test]
    fn nearest_names() {
        let fields = [
            "username",
            "api_token",
            "pat",
            "session_cookies",
            "cloud_id",
        ];
        for (typo, meant) in [
            ("api_tokn", Some("api_token")),
            ("apitoken", Some("api_token")),
            ("API_TOKEN", Some("api_token")),
            ("usernmae", Some("username")),
            ("pta", Some("pat")),
            ("cloudid", Some("cloud_id")),
            ("password", None),
            ("x", None),
            ("token", None),
        ] {
            assert_eq!(closest(typo, fields), meant, "{typo}");
        }
        let schemes = ["env", "file", "vault", "aws-sm", "aws-ssm"];
        assert_eq!(closest("valt", schemes), Some("vault"));
        assert_eq!(closest("aws-sn", schemes), Some("aws-sm"));
        assert_eq!(closest("fiel", schemes), Some("file"));
        assert_eq!(closest("http", schemes), None);
        assert_eq!(closest("vault", schemes), None, "never itself");
    }
}
