//! Mistakes a person can make get one clear line and a non-zero exit.

use std::process::{Command, Output};

use tsusen::testing::one_error_line;
use tsusen::{
    skip_unless,
    testing::{have_program, is_root},
};

fn tsusen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn unknown_interface_lists_the_real_ones() {
    let out = tsusen(&["run", "--iface", "nosuch0"]);
    let line = one_error_line(&out);
    assert!(line.contains("no interface named \"nosuch0\""), "{line}");
    assert!(line.contains("lo"), "{line}");
}

#[test]
fn without_privileges_it_names_the_capabilities() {
    if is_root() {
        // Drop to an unprivileged user to see what a non-root user sees.
        skip_unless!(have_program("setpriv"), "needs setpriv (util-linux)");
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_tsusen"))
            .args(["run", "--iface", "lo"])
            .output()
            .unwrap();
        let line = one_error_line(&out);
        assert!(line.contains("missing privileges"), "{line}");
        assert!(
            line.contains("CAP_BPF") && line.contains("CAP_NET_ADMIN"),
            "{line}"
        );
    } else {
        let line = one_error_line(&tsusen(&["run", "--iface", "lo"]));
        assert!(line.contains("missing privileges"), "{line}");
    }
}

#[test]
fn command_line_mistakes_are_one_line_too() {
    for args in [
        &["run", "--flush-interval", "0s"][..],
        &["run", "--flush-interval", "banana"],
        &["run", "--map-size", "12"],
        &["run", "--xdp-mode", "fast"],
        &["replay"],
        &[
            "report",
            "--dir",
            "/tmp",
            "--out",
            "/tmp/x.html",
            "--days",
            "0",
        ],
        &["frobnicate"],
    ] {
        let line = one_error_line(&tsusen(args));
        assert!(line.len() < 200, "{args:?}: {line}");
    }
    let line = one_error_line(&tsusen(&["run", "--flush-interval", "0s"]));
    assert!(line.contains("shorter than the 1s minimum"), "{line}");
}
