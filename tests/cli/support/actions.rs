//! A GitHub Actions job run here the way the runner runs it, as far as the documented workflows
//! need (no runner can be had on this machine): `run:` steps in bash, a local composite action
//! (`action.yml`) step by step, and what the runner does between steps, by GitHub's documented
//! protocol (<https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands>):
//!
//! - each step gets fresh `GITHUB_ENV`, `GITHUB_PATH`, `GITHUB_OUTPUT` (and `GITHUB_STATE`,
//!   `GITHUB_STEP_SUMMARY`) files; after it, `NAME=value` and `NAME<<DELIMITER` blocks of
//!   `GITHUB_ENV` set variables for the following steps, every line of `GITHUB_PATH` goes in
//!   front of `PATH` for them (the last added first), and `GITHUB_OUTPUT` sets the step's outputs;
//! - `run:` without `shell:` is `bash -e {0}`, `shell: bash` is `bash --noprofile --norc -eo
//!   pipefail {0}`, `shell: sh` is `sh -e {0}`, the script written to a file;
//! - a composite action reads its inputs through the `inputs` context only (the runner sets no
//!   `INPUT_*` variables for composite actions: its steps map inputs to variables in `env:`), gets
//!   `GITHUB_ACTION_PATH`, and its `outputs.*.value` are evaluated after its steps;
//!   `github.action_ref` is the action's ref in a step's `env:` and empty inside `run:` (the
//!   runner's long-standing behaviour for composite actions);
//! - `ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN` are set only when the workflow grants
//!   `permissions: id-token: write`;
//! - a `::add-mask::VALUE` line a step prints is not shown, and VALUE is `***` in every step's
//!   output from then on (the runner masks it before the log is written).
//!
//! `${{ }}` expressions are evaluated for the plain context paths these files use (`inputs.X`,
//! `github.X`, `runner.temp`, `env.X`, `steps.ID.outputs.X`); anything else fails the test,
//! naming the expression. A `uses:` of another action is given by the test as a small script that
//! does through the same files what that action does (a stand-in: the real one cannot run here).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{repo_root, Venv};

/// A YAML file as JSON, read with PyYAML from the venv (a real YAML parser; moto brings it).
#[track_caller]
pub fn yaml_to_json(yaml: &str) -> Value {
    let mut child = Command::new(Venv::get().python())
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "YAML that PyYAML cannot read:\n{yaml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

/// How a step's `uses:` is run.
pub enum Uses {
    /// A composite action in this directory (its `action.yml`), used at this ref, with these
    /// inputs added to the step's `with:` and these variables to its `env:` (the test's
    /// substitutions, e.g. a mirror's address).
    Composite {
        dir: PathBuf,
        action_ref: String,
        extra_with: Vec<(String, String)>,
        extra_env: Vec<(String, String)>,
    },
    /// A stand-in: a bash script run as the step, with the step's `with:` as `WITH_*` variables.
    StandIn(String),
}

/// One step as it ran.
pub struct StepRun {
    pub name: String,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: std::time::Duration,
}

/// The state of a running job.
pub struct Job {
    /// The job's variables: the runner's, the job's `env:`, and what `GITHUB_ENV` set.
    env: BTreeMap<String, String>,
    /// Directories from `GITHUB_PATH`, the newest first.
    path: Vec<String>,
    base_path: String,
    github: BTreeMap<String, String>,
    runner_temp: PathBuf,
    files: PathBuf,
    counter: usize,
    /// Values `::add-mask::` asked to hide.
    masks: Vec<String>,
    /// Every step that ran, in order (composite steps included), its output masked.
    pub runs: Vec<StepRun>,
}

/// A context for `${{ }}`.
struct Ctx<'a> {
    inputs: Option<&'a BTreeMap<String, String>>,
    github: BTreeMap<String, String>,
    env: &'a BTreeMap<String, String>,
    steps: &'a BTreeMap<String, BTreeMap<String, String>>,
    runner_temp: &'a Path,
}

impl Ctx<'_> {
    #[track_caller]
    fn lookup(&self, expr: &str) -> String {
        let parts: Vec<&str> = expr.split('.').collect();
        let found = match parts.as_slice() {
            ["inputs", name] => self.inputs.and_then(|i| i.get(*name)).cloned(),
            ["github", name] => Some(self.github.get(*name).cloned().unwrap_or_default()),
            ["runner", "temp"] => Some(self.runner_temp.display().to_string()),
            ["env", name] => Some(self.env.get(*name).cloned().unwrap_or_default()),
            ["steps", id, "outputs", name] => Some(
                self.steps
                    .get(*id)
                    .and_then(|o| o.get(*name))
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        found.unwrap_or_else(|| {
            panic!(
                "the test runner does not evaluate `${{{{ {expr} }}}}` (plain context paths only)"
            )
        })
    }

    #[track_caller]
    fn eval(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .unwrap_or_else(|| panic!("an unclosed expression in {text:?}"))
                + start;
            out.push_str(&self.lookup(rest[start + 3..end].trim()));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// A YAML scalar as the runner reads it into a string (`true`, `5`, text).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn map_of(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
        .unwrap_or_default()
}

/// `NAME=value` lines and `NAME<<DELIMITER` blocks, as `GITHUB_ENV` and `GITHUB_OUTPUT` hold them.
#[track_caller]
pub fn parse_command_file(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let heredoc = line.split_once("<<");
        let assign = line.split_once('=');
        match (heredoc, assign) {
            (Some((name, delimiter)), a) if a.is_none_or(|(n, _)| n.len() > name.len()) => {
                let mut value = Vec::new();
                loop {
                    let next = lines
                        .next()
                        .unwrap_or_else(|| panic!("no closing {delimiter} for {name} in:\n{text}"));
                    if next == delimiter {
                        break;
                    }
                    value.push(next);
                }
                pairs.push((name.to_owned(), value.join("\n")));
            }
            (_, Some((name, value))) => pairs.push((name.to_owned(), value.to_owned())),
            _ => panic!("not a NAME=value or NAME<<DELIMITER line: {line:?}"),
        }
    }
    pairs
}

impl Job {
    /// A job on a fresh runner: `workspace` is `GITHUB_WORKSPACE` (and each step's working
    /// directory), `home` its `HOME`, `runner` holds `RUNNER_TEMP` (`runner/temp`) and the
    /// command files; `env` the runner's own variables besides those set here.
    pub fn new(workspace: &Path, home: &Path, runner: &Path, env: &[(&str, &str)]) -> Job {
        let runner_temp = runner.join("temp");
        let files = runner.join("files");
        fs::create_dir_all(&runner_temp).unwrap();
        fs::create_dir_all(&files).unwrap();
        let mut vars: BTreeMap<String, String> = [
            ("CI", "true"),
            ("GITHUB_ACTIONS", "true"),
            ("RUNNER_OS", "Linux"),
            ("RUNNER_ARCH", "X64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.insert("HOME".into(), home.display().to_string());
        vars.insert("GITHUB_WORKSPACE".into(), workspace.display().to_string());
        vars.insert("RUNNER_TEMP".into(), runner_temp.display().to_string());
        for (name, value) in [
            ("GITHUB_RUN_ID", "4242"),
            ("GITHUB_REPOSITORY", "company/docs-export"),
            ("GITHUB_REF", "refs/heads/main"),
        ] {
            vars.insert(name.into(), value.into());
        }
        let mut base_path = "/usr/local/bin:/usr/bin:/bin".to_owned();
        for (k, v) in env {
            if *k == "PATH" {
                base_path = (*v).to_owned();
            } else {
                vars.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        let github = [
            ("workspace", workspace.display().to_string()),
            ("run_id", "4242".to_owned()),
            ("repository", "company/docs-export".to_owned()),
            ("ref", "refs/heads/main".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Job {
            env: vars,
            path: Vec::new(),
            base_path,
            github,
            runner_temp,
            files,
            counter: 0,
            masks: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Runs `jobs.<name>` of a workflow: its `env:`, then its steps in order, stopping at the first
    /// that fails. `id_token` is what the runner would set for `permissions: id-token: write`
    /// (URL, request token); `uses` tells how each `uses:` runs.
    #[track_caller]
    pub fn run_workflow_job(
        &mut self,
        workflow: &Value,
        name: &str,
        id_token: Option<(&str, &str)>,
        uses: &mut dyn FnMut(&str) -> Uses,
    ) -> Result<(), String> {
        let job = &workflow["jobs"][name];
        assert!(job.is_object(), "the workflow has no job {name}");
        let grants_id_token = |perms: &Value| perms["id-token"].as_str() == Some("write");
        if grants_id_token(&workflow["permissions"]) || grants_id_token(&job["permissions"]) {
            if let Some((url, token)) = id_token {
                self.env
                    .insert("ACTIONS_ID_TOKEN_REQUEST_URL".into(), url.to_owned());
                self.env
                    .insert("ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(), token.to_owned());
            }
        }
        let steps_outputs = BTreeMap::new();
        for (k, v) in map_of(job.get("env")) {
            let value = self.ctx(None, &steps_outputs, "").eval(&v);
            self.env.insert(k, value);
        }
        let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (i, step) in job["steps"].as_array().expect("steps").iter().enumerate() {
            let label = step["name"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| step["uses"].as_str().map(|u| format!("uses {u}")))
                .or_else(|| step["run"].as_str().map(|r| format!("run {}", r.trim())))
                .unwrap_or_else(|| format!("step {i}"));
            let step_env = {
                let ctx = self.ctx(None, &outputs, "");
                map_of(step.get("env"))
                    .into_iter()
                    .map(|(k, v)| (k, ctx.eval(&v)))
                    .collect::<Vec<_>>()
            };
            let produced = if let Some(script) = step["run"].as_str() {
                let script = self.ctx(None, &outputs, "").eval(script);
                let shell = step["shell"].as_str();
                self.run_script(&label, &script, shell, &step_env, None)?
            } else if let Some(action) = step["uses"].as_str() {
                let with: Vec<(String, String)> = {
                    let ctx = self.ctx(None, &outputs, "");
                    map_of(step.get("with"))
                        .into_iter()
                        .map(|(k, v)| (k, ctx.eval(&v)))
                        .collect()
                };
                match uses(action) {
                    Uses::StandIn(script) => {
                        let mut env = step_env.clone();
                        for (k, v) in &with {
                            env.push((
                                format!("WITH_{}", k.to_uppercase().replace('-', "_")),
                                v.clone(),
                            ));
                        }
                        self.run_script(&label, &script, Some("bash"), &env, None)?
                    }
                    Uses::Composite {
                        dir,
                        action_ref,
                        extra_with,
                        extra_env,
                    } => {
                        let with = with.into_iter().chain(extra_with).collect();
                        let step_env: Vec<(String, String)> =
                            step_env.into_iter().chain(extra_env).collect();
                        self.run_composite(&label, &dir, &action_ref, with, &step_env)?
                    }
                }
            } else {
                panic!("step {label} has neither run nor uses");
            };
            if let Some(id) = step["id"].as_str() {
                outputs.insert(id.to_owned(), produced);
            }
        }
        Ok(())
    }

    fn ctx<'a>(
        &'a self,
        inputs: Option<&'a BTreeMap<String, String>>,
        steps: &'a BTreeMap<String, BTreeMap<String, String>>,
        action_ref: &str,
    ) -> Ctx<'a> {
        let mut github = self.github.clone();
        github.insert("action_ref".into(), action_ref.to_owned());
        Ctx {
            inputs,
            github,
            env: &self.env,
            steps,
            runner_temp: &self.runner_temp,
        }
    }

    /// A composite action's steps; returns its outputs.
    #[track_caller]
    fn run_composite(
        &mut self,
        label: &str,
        dir: &Path,
        action_ref: &str,
        with: Vec<(String, String)>,
        step_env: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, String> {
        let text = fs::read_to_string(dir.join("action.yml")).expect("action.yml");
        let action = yaml_to_json(&text);
        assert_eq!(
            action["runs"]["using"], "composite",
            "{label}: not composite"
        );
        let mut inputs = BTreeMap::new();
        let declared = action["inputs"].as_object().cloned().unwrap_or_default();
        for (name, spec) in &declared {
            let given = with.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
            let value = match given {
                Some(v) => v.clone(),
                None => {
                    if spec["required"].as_bool() == Some(true) && spec.get("default").is_none() {
                        return Err(format!("{label}: input {name} is required"));
                    }
                    scalar(&spec["default"])
                }
            };
            inputs.insert(name.clone(), value);
        }
        for (k, _) in &with {
            assert!(
                declared.contains_key(k),
                "{label}: `with: {k}` is not an input of the action (the runner warns and ignores it)"
            );
        }
        let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (i, step) in action["runs"]["steps"]
            .as_array()
            .expect("runs.steps")
            .iter()
            .enumerate()
        {
            let inner = format!(
                "{label} / {}",
                step["name"].as_str().unwrap_or(&i.to_string())
            );
            let script = step["run"]
                .as_str()
                .unwrap_or_else(|| panic!("{inner}: only run steps are supported in the action"));
            let shell = step["shell"]
                .as_str()
                .unwrap_or_else(|| panic!("{inner}: a composite run step needs shell:"));
            let (env, script) = {
                let ctx = self.ctx(Some(&inputs), &outputs, action_ref);
                // The using step's `env:` reaches the action's steps, under their own.
                let env: Vec<(String, String)> = step_env
                    .iter()
                    .cloned()
                    .chain(
                        map_of(step.get("env"))
                            .into_iter()
                            .map(|(k, v)| (k, ctx.eval(&v))),
                    )
                    .collect();
                // Inside `run:`, the runner leaves github.action_ref empty for composite actions.
                let run_ctx = self.ctx(Some(&inputs), &outputs, "");
                (env, run_ctx.eval(script))
            };
            let produced = self.run_script(&inner, &script, Some(shell), &env, Some(dir))?;
            if let Some(id) = step["id"].as_str() {
                outputs.insert(id.to_owned(), produced);
            }
        }
        let ctx = self.ctx(Some(&inputs), &outputs, action_ref);
        Ok(action["outputs"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, spec)| (k.clone(), ctx.eval(spec["value"].as_str().unwrap_or(""))))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// One script step with fresh command files; applies them afterwards; returns the outputs.
    fn run_script(
        &mut self,
        label: &str,
        script: &str,
        shell: Option<&str>,
        step_env: &[(String, String)],
        action_path: Option<&Path>,
    ) -> Result<BTreeMap<String, String>, String> {
        self.counter += 1;
        let dir = self.files.join(format!("step-{}", self.counter));
        fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| {
            let path = dir.join(name);
            fs::write(&path, "").unwrap();
            path
        };
        let (github_env, github_path, github_output) = (file("env"), file("path"), file("output"));
        let (state, summary) = (file("state"), file("summary"));
        let script_file = dir.join("script.sh");
        fs::write(&script_file, script).unwrap();
        let (program, args): (&str, Vec<&str>) = match shell {
            None => ("bash", vec!["-e"]),
            Some("bash") => ("bash", vec!["--noprofile", "--norc", "-eo", "pipefail"]),
            Some("sh") => ("sh", vec!["-e"]),
            Some(other) => panic!("{label}: shell {other} is not supported by the test runner"),
        };
        let mut path: Vec<String> = self.path.clone();
        path.push(self.base_path.clone());
        let mut command = Command::new(program);
        command
            .args(&args)
            .arg(&script_file)
            .env_clear()
            .envs(&self.env)
            .env("PATH", path.join(":"))
            .env("GITHUB_ENV", &github_env)
            .env("GITHUB_PATH", &github_path)
            .env("GITHUB_OUTPUT", &github_output)
            .env("GITHUB_STATE", &state)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .current_dir(&self.env["GITHUB_WORKSPACE"])
            .stdin(Stdio::null());
        if let Some(dir) = action_path {
            command.env("GITHUB_ACTION_PATH", dir);
        }
        for (k, v) in step_env {
            command.env(k, v);
        }
        let started = std::time::Instant::now();
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut shown = String::new();
        for line in stdout.split_inclusive('\n') {
            match line.trim_end_matches('\n').strip_prefix("::add-mask::") {
                Some(value) if !value.is_empty() => self.masks.push(value.to_owned()),
                Some(_) => {}
                None => shown.push_str(line),
            }
        }
        let run = StepRun {
            name: label.to_owned(),
            status: out.status,
            stdout: self.mask(&shown),
            stderr: self.mask(&String::from_utf8_lossy(&out.stderr)),
            took,
        };
        let failed = !out.status.success();
        self.runs.push(run);
        if failed {
            return Err(format!("step `{label}` failed ({})", out.status));
        }
        for (k, v) in parse_command_file(&fs::read_to_string(&github_env).unwrap()) {
            self.env.insert(k, v);
        }
        for line in fs::read_to_string(&github_path).unwrap().lines() {
            if !line.trim().is_empty() {
                self.path.insert(0, line.trim().to_owned());
            }
        }
        Ok(
            parse_command_file(&fs::read_to_string(&github_output).unwrap())
                .into_iter()
                .collect(),
        )
    }

    /// `text` with every masked value replaced by `***`.
    fn mask(&self, text: &str) -> String {
        self.masks
            .iter()
            .fold(text.to_owned(), |text, value| text.replace(value, "***"))
    }

    /// What every step printed, with each step's name, for a failure message.
    pub fn describe(&self) -> String {
        self.runs
            .iter()
            .map(|r| {
                format!(
                    "--- {} ({}, {:.1} s)\nstdout:\n{}\nstderr:\n{}",
                    r.name,
                    r.status,
                    r.took.as_secs_f64(),
                    r.stdout,
                    r.stderr
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `PATH` the next step would get.
    pub fn path(&self) -> String {
        let mut path = self.path.clone();
        path.push(self.base_path.clone());
        path.join(":")
    }

    /// A job variable (from the runner, the job's `env:` or `GITHUB_ENV`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }
}

/// This repository as the action `cme-exec/cme-exec@REF`.
pub fn this_action(
    action_ref: &str,
    extra_with: &[(&str, &str)],
    extra_env: &[(&str, &str)],
) -> Uses {
    let owned = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    Uses::Composite {
        dir: repo_root().to_owned(),
        action_ref: action_ref.to_owned(),
        extra_with: owned(extra_with),
        extra_env: owned(extra_env),
    }
}
