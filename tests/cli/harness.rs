//! The harness itself: the end-of-test check ([`Test::assert_clean`]) runs
//! when a `Test` is dropped, so no test can forget it; it stays quiet while the test is already
//! failing, and [`Test::leaves_things_behind`] turns it off for a test that says why.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::support::*;

/// The message of a caught panic.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn dropping_a_test_that_left_a_file_behind_fails() {
    let t = Test::new();
    fs::write(t.runtime_dir().join("left-behind"), "x").expect("write a file");
    let payload = catch_unwind(AssertUnwindSafe(move || drop(t)))
        .expect_err("a file left in XDG_RUNTIME_DIR should fail the test when its Test is dropped");
    assert!(
        message(&*payload).contains("left-behind"),
        "the failure should name the file: {}",
        message(&*payload)
    );
}

#[test]
fn dropping_a_test_with_its_secret_in_a_file_fails_without_printing_it() {
    let mut t = Test::new();
    let secret = t.sentinel("harness");
    fs::write(t.work_dir().join("export.md"), format!("page: {secret}\n")).expect("write a file");
    let payload = catch_unwind(AssertUnwindSafe(move || drop(t)))
        .expect_err("a sentinel in a file outside secrets/ and out/ should fail the test");
    let text = message(&*payload);
    assert!(
        text.contains("export.md"),
        "the failure should name the file: {text}"
    );
    assert!(
        !text.contains(&secret),
        "the failure must not print the secret"
    );
}

#[test]
fn a_failing_test_keeps_its_own_failure_message() {
    let payload = catch_unwind(|| {
        let t = Test::new();
        fs::write(t.runtime_dir().join("left-behind"), "x").expect("write a file");
        panic!("the test's own failure");
    })
    .expect_err("the test panics");
    assert_eq!(message(&*payload), "the test's own failure");
}

#[test]
fn a_test_may_say_why_it_leaves_things_behind() {
    let t = Test::new().leaves_things_behind("this test checks the opt-out itself");
    fs::write(t.runtime_dir().join("left-on-purpose"), "x").expect("write a file");
    // An explicit call still checks.
    let explicit = catch_unwind(AssertUnwindSafe(|| t.assert_clean()));
    assert!(explicit.is_err(), "an explicit assert_clean still checks");
    drop(t);
}

#[test]
fn assert_clean_can_be_called_again_and_before_the_drop() {
    let t = Test::new();
    t.assert_clean();
    t.assert_clean();
}

/// The support code's way out for a test that needs namespaces the machine
/// lacks fails the test, with the reason and the fix (it used to print "SKIPPED" and pass).
#[test]
fn a_test_that_cannot_run_fails_with_the_reason() {
    let outcome = std::panic::catch_unwind(|| {
        crate::support::launch::cannot_run("some::test", "`unshare -m sh -c ...` failed: EPERM")
    });
    let payload = outcome.expect_err("a test that cannot run must fail");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    for needle in ["some::test", "EPERM", "To fix", "root"] {
        assert!(message.contains(needle), "{needle:?} in {message:?}");
    }
}
