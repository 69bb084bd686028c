//! `cme-exec check`: every field, ok or why not; which identity each provider used; with
//! `--live`, whom each instance authenticates the credentials as (see [`crate::live`]).

use serde_json::json;

use crate::cli::{CheckArgs, Cli, Format};
use crate::error;
use crate::exit::Exit;
use crate::live::Report;
use crate::resolve::Resolution;

pub fn check(cli: &Cli, args: &CheckArgs) -> Exit {
    if args.offline {
        return offline(cli, args);
    }
    let (prepared, resolution) = match crate::session::prepare_and_resolve(cli, true, |e| {
        report_error(args.format, &e.to_string())
    }) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let live = if args.live {
        match crate::session::live_blocking(cli, &prepared, &resolution) {
            Ok(reports) => Some(reports),
            Err((exit, e)) => {
                report_error(args.format, &e.to_string());
                error::print(&e);
                return exit;
            }
        }
    } else {
        None
    };
    match args.format {
        Format::Text => print_text(&resolution, live.as_deref(), args),
        Format::Json => print_json(&resolution, live.as_deref(), args),
    }
    let live_ok = live.as_deref().is_none_or(|r| r.iter().all(Report::is_ok));
    let now = crate::expiry::now();
    let expiring_ok = args.fail_within.is_none_or(|days| {
        !resolution
            .verdicts
            .iter()
            .any(|v| v.expires.as_ref().is_some_and(|e| e.within(now, days)))
    });
    if resolution.is_ok() && live_ok && expiring_ok {
        Exit::Success
    } else {
        Exit::CheckFailed
    }
}

fn report_error(format: Format, message: &str) {
    if format == Format::Json {
        crate::outln!(
            "{}",
            json!({ "ok": false, "error": message, "fields": [], "providers": [] })
        );
    }
}

/// The line of a resolved field: `ok`, `ok; expires ... (in 40 days)`, `ok; WARNING: ...`
/// inside the warning window, `FAILED: ...` inside `--fail-within`.
fn resolved_verdict(v: &crate::resolve::Verdict, args: &CheckArgs, now: i64) -> String {
    let Some(e) = &v.expires else {
        return "ok".to_owned();
    };
    let text = e.describe(now);
    match args.fail_within {
        Some(days) if e.within(now, days) => {
            format!("FAILED: {text}, within --fail-within {days} days")
        }
        _ if e.within(now, args.warn_within) || e.unix.is_none() => format!("ok; WARNING: {text}"),
        _ => format!("ok; {text}"),
    }
}

/// For a `from` or `[auth] from` line: the fields its document supplied that are used (an
/// explicit field of the instance wins over the document's), per instance. Names only, never
/// values.
fn supplied(
    r: &Resolution,
    v: &crate::resolve::Verdict,
) -> Option<Vec<(String, Vec<&'static str>)>> {
    use crate::resolve::Origin;
    let origin = match v.subject.as_str() {
        "from" => Origin::From(v.source.clone()),
        "[auth] from" => Origin::Bulk(v.source.clone()),
        _ => return None,
    };
    let only = v.product.zip(v.url.clone());
    Some(
        r.auth
            .instances
            .iter()
            .filter(|(key, _)| only.as_ref().is_none_or(|o| o == *key))
            .map(|((product, url), instance)| {
                let fields = instance
                    .fields
                    .iter()
                    .filter(|(_, value)| value.origin == origin)
                    .map(|(f, _)| f.name())
                    .collect();
                (format!("{product}.\"{url}\""), fields)
            })
            .filter(|(_, fields): &(String, Vec<&str>)| !fields.is_empty() || only.is_some())
            .collect(),
    )
}

/// `supplies username, api_token`; for `[auth] from`, each instance's:
/// `supplies confluence."https://x" (username, api_token), jira."https://y" (pat)`.
fn describe_supplied(v: &crate::resolve::Verdict, list: &[(String, Vec<&str>)]) -> String {
    let text = if v.product.is_some() {
        list.iter()
            .flat_map(|(_, f)| f.iter().copied())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        list.iter()
            .map(|(instance, f)| format!("{instance} ({})", f.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if text.is_empty() {
        "supplies no field that is used".to_owned()
    } else {
        format!("supplies {text}")
    }
}

fn print_text(r: &Resolution, live: Option<&[Report]>, args: &CheckArgs) {
    let now = crate::expiry::now();
    let width = r
        .verdicts
        .iter()
        .map(|v| v.place().len())
        .max()
        .unwrap_or(0);
    let source_width = r.verdicts.iter().map(|v| v.source.len()).max().unwrap_or(0);
    for v in &r.verdicts {
        let verdict = match &v.outcome {
            Ok(()) => match supplied(r, v) {
                Some(list) => format!(
                    "{}; {}",
                    resolved_verdict(v, args, now),
                    describe_supplied(v, &list)
                ),
                None => resolved_verdict(v, args, now),
            },
            Err(f) => match &f.hint {
                Some(h) => format!("FAILED: {} (hint: {h})", f.message),
                None => format!("FAILED: {}", f.message),
            },
        };
        let line = format!(
            "{:width$}  {:source_width$}  {verdict}",
            v.place(),
            v.source
        );
        crate::outln!("{}", error::strip_controls(&line));
    }
    for p in &r.identities {
        let identity = match &p.identity {
            Ok(Some(i)) => i
                .facts
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            Ok(None) => "no identity (local)".to_owned(),
            Err(e) => format!("identity unknown: {e}"),
        };
        crate::outln!(
            "{}",
            error::strip_controls(&format!("provider {} ({}): {identity}", p.name, p.kind))
        );
    }
    if let Some(reports) = live {
        print_live_text(r, reports);
    }
    // Instance-level problems (an api_token without a username) are not fields: counted apart.
    let fields = r.verdicts.iter().filter(|v| !v.is_instance_level()).count();
    let failed = r.failures().filter(|v| !v.is_instance_level()).count();
    let problems = r.failures().filter(|v| v.is_instance_level()).count();
    match (failed, problems) {
        (0, 0) => crate::outln!("all {fields} resolved"),
        (0, p) => crate::outln!(
            "all {fields} resolved; {p} instance{} would send no credentials",
            if p == 1 { "" } else { "s" }
        ),
        (f, 0) => crate::outln!("{f} of {fields} failed"),
        (f, p) => crate::outln!(
            "{f} of {fields} failed; {p} instance{} would send no credentials",
            if p == 1 { "" } else { "s" }
        ),
    }
    if let Some(days) = args.fail_within {
        let n = r
            .verdicts
            .iter()
            .filter(|v| v.expires.as_ref().is_some_and(|e| e.within(now, days)))
            .count();
        if n > 0 {
            crate::outln!(
                "{n} credential{} expire{} within {days} days (--fail-within)",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" }
            );
        }
    }
    if let Some(reports) = live {
        let ok = reports.iter().filter(|x| x.is_ok()).count();
        let not_called = crate::session::unresolved_instances(r).len();
        let mut line = format!(
            "live: {ok} of {} instance{} authenticated",
            reports.len(),
            if reports.len() == 1 { "" } else { "s" }
        );
        if not_called > 0 {
            line.push_str(&format!(
                "; {not_called} not called (a reference did not resolve)"
            ));
        }
        crate::outln!("{line}");
    }
}

/// `live [confluence."https://x"]  GET https://x/rest/api/user/current (Basic): authenticated as ...`
fn print_live_text(r: &Resolution, reports: &[Report]) {
    let width = reports.iter().map(|x| x.place().len()).max().unwrap_or(0);
    for x in reports {
        let line = format!(
            "live {:width$}  GET {} ({}): {}",
            x.place(),
            x.call,
            x.auth.name(),
            x.verdict()
        );
        crate::outln!("{}", error::strip_controls(&line));
        if let Some(c) = &x.cloud_id {
            if c.matches() != Some(false) {
                let line = format!("live {:width$}  {}", x.place(), c.describe());
                crate::outln!("{}", error::strip_controls(&line));
            }
        }
    }
    for (product, url) in crate::session::unresolved_instances(r) {
        let place = format!("[{product}.\"{url}\"]");
        crate::outln!(
            "{}",
            error::strip_controls(&format!(
                "live {place:width$}  not called: a reference of this instance did not resolve"
            ))
        );
    }
}

fn print_json(r: &Resolution, live: Option<&[Report]>, args: &CheckArgs) {
    let now = crate::expiry::now();
    let fields: Vec<_> = r
        .verdicts
        .iter()
        .map(|v| {
            json!({
                "product": v.product.map(|p| p.name()),
                "url": v.url,
                "field": v.subject,
                "source": v.source,
                "ok": v.outcome.is_ok(),
                "error": v.outcome.as_ref().err().map(|f| f.message.clone()),
                "hint": v.outcome.as_ref().err().and_then(|f| f.hint.clone()),
                "supplies": supplied(r, v).filter(|_| v.outcome.is_ok()).map(|list| {
                    list.into_iter()
                        .map(|(instance, fields)| (instance, json!(fields)))
                        .collect::<serde_json::Map<_, _>>()
                }),
                "expires": v.expires.as_ref().map(|e| json!({
                    "at": e.at,
                    "source": e.source,
                    "days_left": e.days_left(now),
                    "warning": e.within(now, args.warn_within) || e.unix.is_none(),
                    "failed": args.fail_within.is_some_and(|d| e.within(now, d)),
                })),
            })
        })
        .collect();
    let providers: Vec<_> = r
        .identities
        .iter()
        .map(|p| {
            let (identity, error) = match &p.identity {
                Ok(Some(i)) => (
                    Some(
                        i.facts
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect::<serde_json::Map<_, _>>(),
                    ),
                    None,
                ),
                Ok(None) => (None, None),
                Err(e) => (None, Some(e.to_string())),
            };
            json!({ "name": p.name, "kind": p.kind.name(), "identity": identity, "error": error })
        })
        .collect();
    let expiring = args.fail_within.is_some_and(|d| {
        r.verdicts
            .iter()
            .any(|v| v.expires.as_ref().is_some_and(|e| e.within(now, d)))
    });
    let mut out = json!({ "ok": r.is_ok() && !expiring, "fields": fields, "providers": providers });
    if let Some(reports) = live {
        let items: Vec<_> = reports
            .iter()
            .map(|x| {
                let (account, problem) = match &x.outcome {
                    Ok(a) => (Some(a), None),
                    Err(p) => (None, Some(p)),
                };
                json!({
                    "product": x.product.name(),
                    "url": x.url,
                    "call": x.call,
                    "auth": x.auth.name(),
                    "ok": x.is_ok(),
                    "account_id": account.and_then(|a| a.account_id.clone()),
                    "display_name": account.and_then(|a| a.display_name.clone()),
                    "status": problem.and_then(|p| p.status),
                    "error": problem.map(|p| p.message.clone()),
                    "hint": problem.and_then(|p| p.hint.clone()),
                    "cloud_id": x.cloud_id.as_ref().map(|c| json!({
                        "configured": c.configured,
                        "site": c.site.as_ref().ok(),
                        "site_error": c.site.as_ref().err(),
                        "matches": c.matches(),
                    })),
                })
            })
            .collect();
        let all_live = reports.iter().all(Report::is_ok);
        out["ok"] = json!(out["ok"].as_bool().unwrap_or(false) && all_live);
        out["live"] = json!(items);
    }
    crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}

/// One line of `check --offline`: a field (or a `from`) and what could be said of it without a
/// store.
struct Offline {
    product: Option<crate::config::Product>,
    url: Option<String>,
    subject: String,
    source: String,
    outcome: Result<String, cme_exec_providers::FetchError>,
}

impl Offline {
    fn place(&self) -> String {
        match (self.product, &self.url) {
            (Some(p), Some(u)) => format!("[{p}.\"{u}\"] {}", self.subject),
            _ => self.subject.clone(),
        }
    }
}

/// `check --offline`: [`crate::session::prepare`] (the config with every reference and scheme checked,
/// trust, the base config against cme's schema, the config's and base config's permissions),
/// then each reference by what needs no store: the file provider's files by their metadata.
/// No provider is built, so nothing is contacted and no credential is needed.
fn offline(cli: &Cli, args: &CheckArgs) -> Exit {
    let prepared = match crate::session::prepare(cli) {
        Ok(p) => p,
        Err(e) => {
            report_error(args.format, &e.to_string());
            error::print(&e);
            return if e.is_fatal() {
                Exit::Failed
            } else {
                Exit::CheckFailed
            };
        }
    };
    let lines = offline_lines(&prepared.config, &prepared.ctx);
    let providers = offline_providers(&prepared.config);
    let ok = lines.iter().all(|l| l.outcome.is_ok());
    match args.format {
        Format::Text => print_offline_text(&lines, &providers),
        Format::Json => print_offline_json(&lines, &providers, ok),
    }
    if ok {
        Exit::Success
    } else {
        Exit::CheckFailed
    }
}

/// One line per reference and literal field, in the config's order, each with what can be
/// said of it without contacting its store.
fn offline_lines(
    config: &crate::config::Config,
    ctx: &std::sync::Arc<cme_exec_providers::Context>,
) -> Vec<Offline> {
    use crate::config::FieldSpec;
    let check_reference = |r: &cme_exec_providers::Reference| {
        let settings = config.provider_for(&r.document.scheme);
        match settings
            .as_ref()
            .and_then(|s| s.check_offline(ctx, &r.document))
        {
            Some(outcome) => outcome.map(|note| format!("not read (--offline); {note}")),
            None => Ok("not fetched (--offline)".to_owned()),
        }
    };
    let mut lines = Vec::new();
    if let Some(r) = &config.auth_from {
        lines.push(Offline {
            product: None,
            url: None,
            subject: "[auth] from".into(),
            source: r.raw.clone(),
            outcome: check_reference(r),
        });
    }
    for i in &config.instances {
        let line = |subject: &str, source: &str, outcome| Offline {
            product: Some(i.product),
            url: Some(i.url.clone()),
            subject: subject.to_owned(),
            source: source.to_owned(),
            outcome,
        };
        if let Some(r) = &i.from {
            lines.push(line("from", &r.raw, check_reference(r)));
        }
        for (field, spec) in &i.fields {
            lines.push(match spec {
                FieldSpec::Reference(r) => line(field.name(), &r.raw, check_reference(r)),
                FieldSpec::Literal(_) => line(field.name(), "(literal)", Ok("ok".to_owned())),
            });
        }
    }
    lines
}

/// The providers the references use, as (name, kind), sorted: none is contacted.
fn offline_providers(config: &crate::config::Config) -> Vec<(String, String)> {
    let mut providers: Vec<(String, String)> = config
        .references()
        .iter()
        .map(|(r, _)| r.document.scheme.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|scheme| {
            let s = config.provider_for(&scheme)?;
            Some((scheme, s.kind().name().to_owned()))
        })
        .collect();
    providers.sort();
    providers
}

fn print_offline_text(lines: &[Offline], providers: &[(String, String)]) {
    let width = lines.iter().map(|l| l.place().len()).max().unwrap_or(0);
    let source_width = lines.iter().map(|l| l.source.len()).max().unwrap_or(0);
    for l in lines {
        let verdict = match &l.outcome {
            Ok(note) if note == "ok" => "ok".to_owned(),
            Ok(note) => format!("ok; {note}"),
            Err(e) => match e.hint() {
                Some(h) => format!("FAILED: {} (hint: {h})", e.message()),
                None => format!("FAILED: {}", e.message()),
            },
        };
        let line = format!(
            "{:width$}  {:source_width$}  {verdict}",
            l.place(),
            l.source
        );
        crate::outln!("{}", error::strip_controls(&line));
    }
    for (name, kind) in providers {
        crate::outln!(
            "{}",
            error::strip_controls(&format!(
                "provider {name} ({kind}): not contacted (--offline)"
            ))
        );
    }
    let failed = lines.iter().filter(|l| l.outcome.is_err()).count();
    if failed == 0 {
        crate::outln!(
            "offline: all {} well-formed; no store contacted, nothing fetched",
            lines.len()
        );
    } else {
        crate::outln!("offline: {failed} of {} failed", lines.len());
    }
}

fn print_offline_json(lines: &[Offline], providers: &[(String, String)], ok: bool) {
    let fields: Vec<_> = lines
        .iter()
        .map(|l| {
            json!({
                "product": l.product.map(|p| p.name()),
                "url": l.url,
                "field": l.subject,
                "source": l.source,
                "ok": l.outcome.is_ok(),
                "fetched": false,
                "note": l.outcome.as_ref().ok(),
                "error": l.outcome.as_ref().err().map(|e| e.message().to_owned()),
                "hint": l.outcome.as_ref().err().and_then(|e| e.hint().map(str::to_owned)),
            })
        })
        .collect();
    let providers: Vec<_> = providers
        .iter()
        .map(|(name, kind)| json!({ "name": name, "kind": kind, "contacted": false }))
        .collect();
    let out = json!({ "ok": ok, "offline": true, "fields": fields, "providers": providers });
    crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
