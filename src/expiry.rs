//! Token expiry: when a credential stops working, read from its store's metadata, so that
//! `check` shows the days left and warns (or, with `--fail-within`, fails) before a long export
//! does.
//!
//! Sources, in order: a sibling key `expires_at` next to the field in a JSON/TOML/dotenv
//! document (`{"api_token": "...", "expires_at": "2027-03-01T00:00:00Z"}`; for `from`, a key of
//! the object), then the store's own metadata ([`cme_exec_providers::Provider::expiry`]: Vault
//! KV v2 `custom_metadata.expires_at`, an AWS Secrets Manager tag `expires_at`). The time is
//! RFC 3339 (`2027-03-01T00:00:00Z`, `2027-03-01T09:00:00+01:00`) or a plain date
//! (`2027-03-01`, midnight UTC). Not secret: shown as written.

use std::time::{SystemTime, UNIX_EPOCH};

/// The default warning window, in days.
pub const DEFAULT_WARN_DAYS: u32 = 14;

/// One credential's expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// As written in the store (control characters removed, at most 64 characters).
    pub at: String,
    /// Seconds since the epoch, or `None` when `at` is not a time.
    pub unix: Option<i64>,
    /// Where it came from: `expires_at key`, `Vault custom_metadata`, `AWS tag`.
    pub source: &'static str,
}

impl Expiry {
    pub fn new(at: &str, source: &'static str) -> Expiry {
        let at: String = at
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        Expiry {
            unix: parse(&at),
            at,
            source,
        }
    }

    /// Whole days left from `now` (negative once past; 0 on the last day).
    pub fn days_left(&self, now: i64) -> Option<i64> {
        self.unix.map(|t| (t - now).div_euclid(86_400))
    }

    /// `expires 2027-03-01T00:00:00Z (in 31 days)`, `EXPIRED 2 days ago`, ...
    pub fn describe(&self, now: i64) -> String {
        match self.days_left(now) {
            None => format!(
                "expires_at {:?} ({}) is not an RFC 3339 time",
                self.at, self.source
            ),
            Some(_) if self.unix.is_some_and(|t| t <= now) => {
                let ago = (now - self.unix.unwrap_or(now)).div_euclid(86_400);
                let when = if ago == 0 {
                    "today".to_owned()
                } else {
                    format!("{} ago", days(ago))
                };
                format!("EXPIRED {} ({}; {when})", self.at, self.source)
            }
            Some(0) => format!("expires {} ({}; today)", self.at, self.source),
            Some(d) => format!("expires {} ({}; in {})", self.at, self.source, days(d)),
        }
    }

    /// Whether it expires within `window` days of `now` (or has).
    pub fn within(&self, now: i64, window: u32) -> bool {
        self.unix
            .is_some_and(|t| t - now < i64::from(window) * 86_400)
    }
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `T` or space) or a plain `YYYY-MM-DD`
/// (midnight UTC), read by the `time` crate (which the AWS SDK builds anyway).
pub fn parse(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    use time::{Date, OffsetDateTime};
    // `time` takes any character between the date and the time; only these are RFC 3339's.
    match s.as_bytes().get(10) {
        None => {
            let format =
                time::format_description::parse_borrowed::<2>("[year]-[month]-[day]").ok()?;
            let date = Date::parse(s, &format).ok()?;
            Some(date.midnight().assume_utc().unix_timestamp())
        }
        Some(b'T' | b't' | b' ') => OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(OffsetDateTime::unix_timestamp),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_3339() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse("2027-03-01"), parse("2027-03-01T00:00:00Z"));
        assert_eq!(
            parse("2027-03-01T09:30:00+01:00"),
            parse("2027-03-01T08:30:00Z")
        );
        assert_eq!(
            parse("2027-03-01 08:30:00.123456-00:00"),
            parse("2027-03-01T08:30:00Z")
        );
        for bad in [
            "",
            "2027-02-29",
            "2027-13-01",
            "2027-03-01T25:00:00Z",
            "2027-03-01T08:30:00",
            "soon",
            "2027-03-01T08:30:00+0100",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse("2028-02-29"), Some(1_835_395_200));
        assert_eq!(parse("2027-03-01X08:30:00Z"), None);
    }

    #[test]
    fn days_left_and_window() {
        let now = parse("2027-03-01T12:00:00Z").unwrap();
        let e = Expiry::new("2027-03-11T12:00:00Z", "AWS tag");
        assert_eq!(e.days_left(now), Some(10));
        assert!(e.within(now, 14));
        assert!(!e.within(now, 10));
        assert_eq!(
            e.describe(now),
            "expires 2027-03-11T12:00:00Z (AWS tag; in 10 days)"
        );
        let past = Expiry::new("2027-02-27T12:00:00Z", "AWS tag");
        assert!(past.within(now, 0));
        assert_eq!(
            past.describe(now),
            "EXPIRED 2027-02-27T12:00:00Z (AWS tag; 2 days ago)"
        );
        let junk = Expiry::new("next spring", "expires_at key");
        assert!(!junk.within(now, 14));
        assert!(junk.describe(now).contains("not an RFC 3339 time"));
    }
}
