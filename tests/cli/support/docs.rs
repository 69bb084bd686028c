//! The fenced blocks of the documentation that the deployment tests run (tests/cli/deploy.rs).
//!
//! A block is run when the line before its opening fence is `<!-- tested: NAME -->` (an HTML
//! comment: invisible on GitHub, plain to whoever edits the Markdown). The tests take the block's
//! text from the file at run time, so an edit that breaks a documented command or manifest fails
//! them; a marker that disappears fails with its name and file.

use std::fs;

use super::repo_root;

/// One fenced block: its text (without the fences, indentation of the fence removed from each
/// line), the fence's info string (`yaml`, `sh`, ...) and where it starts.
#[derive(Clone, Debug)]
pub struct Block {
    pub doc: String,
    pub name: String,
    pub info: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    pub text: String,
}

impl Block {
    /// `docs/kubernetes.md:120 (tested: NAME)`, for messages.
    pub fn place(&self) -> String {
        format!("{}:{} (tested: {})", self.doc, self.line, self.name)
    }
}

const MARKER_START: &str = "<!-- tested: ";
const MARKER_END: &str = " -->";

/// Every fenced block of `doc` (a path relative to the repository root), marked or not.
pub fn blocks(doc: &str) -> Vec<Block> {
    let path = repo_root().join(doc);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let fence: String = trimmed.chars().take_while(|&c| c == '`').collect();
        if fence.len() < 3 {
            i += 1;
            continue;
        }
        let info = trimmed[fence.len()..].trim().to_owned();
        let name = i
            .checked_sub(1)
            .map(|p| lines[p].trim())
            .and_then(|p| p.strip_prefix(MARKER_START))
            .and_then(|p| p.strip_suffix(MARKER_END))
            .unwrap_or("")
            .to_owned();
        let start = i;
        let mut body = String::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != fence {
            let l = lines[i];
            let cut = l.len() - l.trim_start().len();
            body.push_str(&l[cut.min(indent)..]);
            body.push('\n');
            i += 1;
        }
        assert!(
            i < lines.len(),
            "{doc}:{}: a fence that is never closed",
            start + 1
        );
        out.push(Block {
            doc: doc.to_owned(),
            name,
            info,
            line: start + 1,
            text: body,
        });
        i += 1;
    }
    out
}

/// The block marked `<!-- tested: NAME -->` in `doc`.
#[track_caller]
pub fn tested(doc: &str, name: &str) -> Block {
    let mut found: Vec<Block> = blocks(doc).into_iter().filter(|b| b.name == name).collect();
    assert!(
        found.len() == 1,
        "{doc}: expected exactly one fenced block marked `{MARKER_START}{name}{MARKER_END}` \
         (on the line before its opening fence), found {}.\n\
         The deployment tests run that block as documented: restore the marker, or change the \
         test in tests/cli/deploy.rs together with the docs.",
        found.len()
    );
    found.remove(0)
}

/// The names of every marked block of `doc`, in order.
pub fn marked(doc: &str) -> Vec<String> {
    let path = repo_root().join(doc);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(MARKER_START))
        .filter_map(|l| l.strip_suffix(MARKER_END))
        .map(str::to_owned)
        .collect()
}

/// The shell commands of a block: continuation lines (`\` at the end) joined, comments and
/// blank lines left out.
pub fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim_end();
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}
