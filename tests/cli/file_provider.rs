//! The `file` provider's directories and file types: a Kubernetes Secret volume as kubelet
//! writes it is read, directories and names another user could have changed are refused, and a
//! file that is not a regular file is refused as such, never with a hint to chmod it.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::support::*;

/// The layout kubelet's atomic writer (kubernetes pkg/volume/util/atomic_writer.go) gives a
/// Secret volume: the files (0644) in `..2026_11_30_05_33_52.123456789/` (0755), `..data` linking
/// to it, `KEY -> ..data/KEY` for each key, and the volume root `drwxrwxrwt` (kubernetes#125876).
fn kubelet_volume(root: &Path, files: &[(&str, &str)]) {
    let ts = "..2026_11_30_05_33_52.123456789";
    fs::create_dir_all(root.join(ts)).unwrap();
    fs::set_permissions(root.join(ts), fs::Permissions::from_mode(0o755)).unwrap();
    for (key, value) in files {
        let f = root.join(ts).join(key);
        fs::write(&f, value).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(format!("..data/{key}"), root.join(key)).unwrap();
    }
    std::os::unix::fs::symlink(ts, root.join("..data")).unwrap();
    fs::set_permissions(root, fs::Permissions::from_mode(0o1777)).unwrap();
}

/// `chown UID:UID path` (not following a link); these tests run as root, as CI does.
#[track_caller]
pub(crate) fn chown_to(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap_or_else(|e| {
        panic!(
            "cannot chown {} to uid {uid}: {e}. This test plays another user's files and needs \
             root: run the tests as root (CI does)",
            path.display()
        )
    });
}

/// A Test whose Confluence instance takes everything `from` a file reference.
fn from_test(vol: impl FnOnce(&Test) -> PathBuf) -> (Test, PathBuf) {
    let t = Test::new();
    let path = vol(&t);
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nfrom = \"file://{}\"\n",
        path.display()
    ));
    (t, path)
}

/// A Kubernetes Secret volume as kubelet writes it (sticky root-owned root,
/// `..data` and per-key links) is read as a directory by `check` and `render`.
#[test]
fn a_kubernetes_secret_volume_is_read() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let vol = t.path().join("secrets/cme");
    kubelet_volume(
        &vol,
        &[("username", &format!("{user}\n")), ("api_token", &token)],
    );
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nfrom = \"file://{}\"\n",
        vol.display()
    ));
    let out = t.run_args(["check"]);
    out.assert_success();
    let output = t.out_dir().join("app_data.json");
    t.run_args([
        OsStr::new("render"),
        OsStr::new("--output"),
        output.as_os_str(),
    ])
    .assert_success();
    let config: serde_json::Value = serde_json::from_slice(&fs::read(&output).unwrap()).unwrap();
    let entry = &config["auth"]["confluence"]["https://company.atlassian.net"];
    assert!(entry["username"] == *user, "username from the volume");
    assert!(entry["api_token"] == *token, "api_token from the volume");
    assert_eq!(mode_of(&vol), 0o1777, "the volume is left as it was");
    t.assert_clean();
}

/// What stays refused in a Secret volume: a world-writable directory without the sticky bit; a
/// sticky one that belongs to another user; a name another user added to a sticky volume; a key
/// linking outside the volume. Each names the directory or key and never a value.
#[test]
fn unsafe_secret_directories_stay_refused() {
    type Spoil = fn(&Path, &Path);
    let cases: [(&str, Spoil, &str); 4] = [
        (
            "no sticky bit",
            |vol, _| fs::set_permissions(vol, fs::Permissions::from_mode(0o777)).unwrap(),
            "no sticky bit",
        ),
        (
            "sticky, another user's",
            |vol, _| chown_to(vol, 65534),
            "belongs to another user",
        ),
        (
            "a name planted by another user",
            |vol, _| {
                let planted = vol.join("pat");
                fs::write(&planted, "planted").unwrap();
                chown_to(&planted, 65534);
            },
            "belongs to another user",
        ),
        (
            "a key linking outside",
            |vol, outside| std::os::unix::fs::symlink(outside, vol.join("pat")).unwrap(),
            "leads outside",
        ),
    ];
    for (what, spoil, reason) in cases {
        let (t, vol) = from_test(|t| {
            let vol = t.path().join("secrets/cme");
            kubelet_volume(&vol, &[("username", "someone"), ("api_token", "x-token")]);
            let outside = t.secret_file("outside", "x");
            spoil(&vol, &outside);
            vol
        });
        let out = t.run_args(["check"]);
        out.assert_code(1);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains(reason) && text.contains(&vol.display().to_string()),
            "{what}: refused with {reason:?}, naming the volume\n{}",
            out.describe()
        );
        assert!(
            !text.contains("x-token") && !text.contains("planted"),
            "{what}: no value"
        );
    }
}

/// A device is refused as not a regular file, never with a hint to chmod it;
/// a world-writable file that is not the user's own gets no chmod hint either; the user's own
/// world-writable file does.
#[test]
fn file_type_first_and_no_chmod_hint_for_what_is_not_yours() {
    for device in ["/dev/zero", "/dev/null"] {
        let t = Test::new().config_toml(&format!(
            "[jira.\"https://jira.example.com\"]\npat = \"file://{device}\"\n"
        ));
        let out = t.run_args(["check"]);
        out.assert_code(1)
            .assert_stdout_contains("not a regular file");
        assert!(
            !out.stdout.contains("chmod") && !out.stderr.contains("chmod"),
            "{device}\n{}",
            out.describe()
        );
    }
    for (owner, hint) in [(None, true), (Some(65534), false)] {
        let t = Test::new();
        let file = t.secret_file("pat", "a-pat-value");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        if let Some(uid) = owner {
            chown_to(&file, uid);
        }
        let t = t.config_toml(&format!(
            "[jira.\"https://jira.example.com\"]\npat = \"file://{}\"\n",
            file.display()
        ));
        let out = t.run_args(["check"]);
        out.assert_code(1)
            .assert_stdout_contains("writable by other users");
        assert_eq!(
            format!("{}{}", out.stdout, out.stderr).contains("chmod o-w"),
            hint,
            "owner {owner:?}\n{}",
            out.describe()
        );
    }
}
