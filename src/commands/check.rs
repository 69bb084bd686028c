//! `cme-exec check`: every field, ok or why not; which identity each provider used.

use serde_json::json;

use crate::cli::{Cli, Format, ReportArgs};
use crate::error;
use crate::exit::Exit;
use crate::resolve::Resolution;

pub fn check(cli: &Cli, args: &ReportArgs) -> Exit {
    let (_, resolution) = match super::prepare_and_resolve(cli, true, |e| {
        report_error(args.format, &e.to_string())
    }) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    match args.format {
        Format::Text => print_text(&resolution),
        Format::Json => print_json(&resolution),
    }
    if resolution.is_ok() {
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

fn print_text(r: &Resolution) {
    let width = r
        .verdicts
        .iter()
        .map(|v| v.place().len())
        .max()
        .unwrap_or(0);
    let source_width = r.verdicts.iter().map(|v| v.source.len()).max().unwrap_or(0);
    for v in &r.verdicts {
        let verdict = match &v.outcome {
            Ok(()) => "ok".to_owned(),
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
    let failed = r.failures().count();
    if failed == 0 {
        crate::outln!("all {} resolved", r.verdicts.len());
    } else {
        crate::outln!("{failed} of {} failed", r.verdicts.len());
    }
}

fn print_json(r: &Resolution) {
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
    let out = json!({ "ok": r.is_ok(), "fields": fields, "providers": providers });
    crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
