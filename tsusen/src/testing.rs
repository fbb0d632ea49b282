//! Test support shared by unit and integration tests (not part of the API).

use std::io::Write as _;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a program is on PATH.
pub fn have_program(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skip the calling test with a one-line reason unless `ready` holds.
///
/// The line goes straight to stderr (past the test harness's capture) so a
/// skip is visible. In CI (`TSUSEN_REQUIRE_ROOT_TESTS=1`, set by `cargo xtask
/// test` when `CI` is set) a skip is a failure: these tests must run there.
#[macro_export]
macro_rules! skip_unless {
    ($ready:expr, $reason:expr) => {
        if !$ready {
            $crate::testing::skip(module_path!(), $reason);
            return;
        }
    };
}

#[doc(hidden)]
pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("TSUSEN_REQUIRE_ROOT_TESTS").is_some() {
        panic!("{test}: cannot skip in CI: {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}
