//! A Confluence site with one page, for the tests that run cme for real in a container and want
//! a Markdown file at the end (tests/cli/deploy.rs): the calls `cme pages URL` makes for a page
//! without attachments, and the one `cme-exec check --live` makes.
//!
//! - `GET /rest/api/user/current`: the accepted credential: 200 `{"type":"known",...}`; none:
//!   200 `{"type":"anonymous"}` (as Confluence Cloud answers); another: 401.
//! - `GET /rest/api/space?limit=1` (cme's connection check), `GET /rest/api/content/PAGE`,
//!   `GET /rest/api/space/ENG`, `GET /rest/api/content/PAGE/child/attachment`: with the accepted
//!   credential, the page [`PAGE_ID`] titled [`PAGE_TITLE`] in space `ENG` (its home page), whose
//!   body holds [`PAGE_TEXT`]; without it, 401.
//! - anything else: 404.
//!
//! Built on [`StandIn`], which records every request with its headers.

use serde_json::json;

use super::openbao::{Action, Seen, StandIn};

pub const PAGE_ID: u64 = 123;
pub const PAGE_TITLE: &str = "Release checklist";
pub const PAGE_TEXT: &str = "Exported through cme-exec in a container";

pub struct ConfluenceSite {
    standin: StandIn,
}

impl ConfluenceSite {
    /// A site that accepts exactly `authorization` (the whole header value, e.g. `Basic ...`).
    pub fn start(authorization: String) -> ConfluenceSite {
        let standin = StandIn::start(move |request, _| answer(request, &authorization));
        ConfluenceSite { standin }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.standin.url()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.standin.requests()
    }

    /// The paths (without query) of the requests that carried an `Authorization` header equal
    /// to `value`.
    pub fn paths_with_authorization(&self, value: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.header("authorization") == Some(value))
            .map(|r| r.path().to_owned())
            .collect()
    }

    /// Method and target of every request (no header: safe to print).
    pub fn summary(&self) -> String {
        self.standin.summary()
    }
}

fn answer(request: &Seen, accepted: &str) -> Action {
    let path = request.path().trim_end_matches('/');
    let sent = request.header("authorization");
    let known = sent == Some(accepted);
    if request.method != "GET" {
        return not_found();
    }
    if path == "/rest/api/user/current" {
        return match sent {
            None => Action::json(200, json!({ "type": "anonymous" })),
            Some(_) if known => Action::json(
                200,
                json!({
                    "type": "known",
                    "accountId": "5b10a2844c20165700ede21g",
                    "displayName": "Jane Export",
                }),
            ),
            Some(_) => unauthorized(),
        };
    }
    let page = format!("/rest/api/content/{PAGE_ID}");
    let body = if path == "/rest/api/space" {
        json!({ "results": [], "start": 0, "limit": 1, "size": 0, "_links": {} })
    } else if path == page {
        let html = format!("<p>{PAGE_TEXT}</p>");
        json!({
            "id": PAGE_ID.to_string(),
            "type": "page",
            "title": PAGE_TITLE,
            "_expandable": { "space": "/rest/api/space/ENG" },
            "body": {
                "view": { "value": html },
                "export_view": { "value": html },
                "editor2": { "value": "" },
                "storage": { "value": html },
            },
            "ancestors": [],
            "version": { "number": 1 },
            "_links": { "webui": format!("/spaces/ENG/pages/{PAGE_ID}") },
        })
    } else if path == "/rest/api/space/ENG" {
        json!({
            "key": "ENG",
            "name": "Engineering",
            "description": {},
            "homepage": { "id": PAGE_ID.to_string() },
        })
    } else if path == format!("{page}/child/attachment") {
        json!({ "results": [], "size": 0, "_links": {} })
    } else {
        return not_found();
    };
    if known {
        Action::json(200, body)
    } else {
        unauthorized()
    }
}

fn unauthorized() -> Action {
    Action::json(
        401,
        json!({ "statusCode": 401, "message": "Basic authentication with passwords is deprecated" }),
    )
}

fn not_found() -> Action {
    Action::json(
        404,
        json!({ "statusCode": 404, "message": "No content found (cme-exec test stand-in)" }),
    )
}
