//! `tsusen check`: as root on this host it finds everything for `lo` and a
//! test out-dir (and creates nothing); without privileges, on the host and in
//! a namespace without a default route, it names what is missing and exits 1.

use std::{fs, path::Path, process::Command};

use tsusen::{
    skip_unless,
    testing::{Netns, have_program, is_root, live, one_error_line},
};

const TSUSEN: &str = env!("CARGO_BIN_EXE_tsusen");
const SETPRIV: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of check `what` (e.g. "privileges", "interface lo").
fn line<'a>(text: &'a str, what: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.split_once(char::is_whitespace)
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{what}:")))
        })
        .unwrap_or_else(|| panic!("no {what:?} line in:\n{text}"))
}

fn assert_status(text: &str, what: &str, status: &str) {
    let l = line(text, what);
    assert!(l.starts_with(status), "{what}: want {status}, got {l:?}");
}

#[test]
fn as_root_every_check_passes_for_lo_and_creates_nothing() {
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let scratch = live::Scratch::new();
    let out_dir = scratch.out_dir();
    let pin_dir = scratch.pin_dir();
    let out = Command::new(TSUSEN)
        .args(["check", "--iface", "lo", "--out-dir"])
        .arg(&out_dir)
        .arg("--pin-dir")
        .arg(&pin_dir)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for what in ["privileges", "bpf", "interface lo"] {
        assert_status(&text, what, "ok ");
    }
    assert_status(&text, &format!("pin-dir {}", pin_dir.display()), "ok ");
    assert_status(&text, &format!("out-dir {}", out_dir.display()), "ok ");
    assert!(!text.contains("MISSING"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("ready"), "{text}");
    // No probe file or day file left, no pin directory made.
    assert_eq!(
        fs::read_dir(&out_dir).unwrap().count(),
        0,
        "out-dir not empty"
    );
    assert!(!pin_dir.exists(), "check created the pin directory");

    // A missing out-dir is reported as creatable, and not created.
    let later = scratch.path("later/out");
    let out = Command::new(TSUSEN)
        .args(["check", "--iface", "lo", "--out-dir"])
        .arg(&later)
        .arg("--pin-dir")
        .arg(&pin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        line(&stdout(&out), &format!("out-dir {}", later.display())).contains("will be created")
    );
    assert!(!scratch.path("later").exists());

    // A pin-dir not on bpffs is missing, with the fix.
    let out = Command::new(TSUSEN)
        .args(["check", "--iface", "lo", "--out-dir"])
        .arg(&out_dir)
        .args(["--pin-dir", "/run/tsusen-not-bpffs/pins"])
        .output()
        .unwrap();
    let err = one_error_line(&out);
    assert!(err.contains("pin-dir"), "{err}");
    let text = stdout(&out);
    let l = line(&text, "pin-dir /run/tsusen-not-bpffs/pins");
    assert!(
        l.starts_with("MISSING") && l.contains("mount -t bpf"),
        "{l}"
    );
}

#[test]
fn an_unprivileged_user_is_told_what_is_missing() {
    skip_unless!(is_root(), "needs root to switch to an unprivileged user");
    skip_unless!(have_program("setpriv"), "needs setpriv (util-linux)");
    let out_dir = std::env::temp_dir().join(tsusen::testing::unique_name("chku"));
    let out = Command::new("setpriv")
        .args(SETPRIV)
        .args([TSUSEN, "check", "--iface", "lo", "--out-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let text = stdout(&out);
    let err = one_error_line(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(err.contains("privileges") && err.contains("bpf"), "{err}");
    assert_status(&text, "privileges", "MISSING");
    assert!(line(&text, "privileges").contains("CAP_BPF"), "{text}");
    assert!(line(&text, "privileges").contains("fix: "), "{text}");
    assert_status(&text, "bpf", "MISSING");
    assert_status(&text, "interface lo", "ok ");
    assert!(!Path::new(&out_dir).exists());
}

#[test]
fn in_a_namespace_without_privileges_or_default_route() {
    let why = live::why_not(&["setpriv"]);
    skip_unless!(why.is_empty(), &why);
    let ns = Netns::new("chk");
    let out = ns
        .command("setpriv")
        .args(SETPRIV)
        .args([TSUSEN, "check", "--out-dir", "/nonexistent-tsusen/out"])
        .output()
        .unwrap();
    let text = stdout(&out);
    let err = one_error_line(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for what in ["privileges", "bpf", "interface", "out-dir"] {
        assert!(err.contains(what), "{what} not in {err}");
    }
    assert_status(&text, "privileges", "MISSING");
    let l = line(&text, "interface");
    assert!(l.starts_with("MISSING") && l.contains("--iface"), "{l}");
    assert!(
        line(&text, "out-dir /nonexistent-tsusen/out").contains("not writable"),
        "{text}"
    );
    // Named, the namespace's lo is there.
    let out = ns
        .command("setpriv")
        .args(SETPRIV)
        .args([TSUSEN, "check", "--iface", "lo", "--iface", "tsnope0"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_status(&text, "interface lo", "ok ");
    let l = line(&text, "interface tsnope0");
    assert!(
        l.starts_with("MISSING") && l.contains("interfaces here: lo"),
        "{l}"
    );
}

/// An XDP program another tool attached to an interface is a warning that
/// says `tsusen run` would refuse it without --force; with nothing attached
/// the interface is ok.
#[test]
fn another_xdp_program_on_the_interface_is_a_warning() {
    use aya::programs::{Xdp, xdp::XdpMode};
    let live = tsusen::live_test!(&[]);
    let (net, scratch) = (&live.net, &live.scratch);
    let check = || {
        let out = net
            .sensor
            .command(TSUSEN)
            .args(["check", "--iface", &net.sensor_if, "--out-dir"])
            .arg(scratch.out_dir())
            .arg("--pin-dir")
            .arg(scratch.pin_dir())
            .output()
            .unwrap();
        stdout(&out)
    };
    let what = format!("interface {}", net.sensor_if);
    let text = check();
    assert_status(&text, &what, "ok ");

    // Another program (the benchmark's empty one, named tsusen_floor), attached
    // in generic mode from inside the namespace.
    let ebpf = live::in_netns(&net.sensor, || {
        let mut ebpf = tsusen::capture::load(&tsusen::capture::LoadOptions::default()).unwrap();
        let floor: &mut Xdp = ebpf
            .program_mut("tsusen_floor")
            .unwrap()
            .try_into()
            .unwrap();
        floor.load().unwrap();
        floor.attach(&net.sensor_if, XdpMode::Skb).unwrap();
        ebpf
    });
    let text = check();
    let l = line(&text, &what);
    assert!(
        l.starts_with("warning")
            && l.contains("another XDP program \"tsusen_floor\"")
            && l.contains("generic mode")
            && l.contains("--force"),
        "{l}"
    );
    drop(ebpf);
    assert_status(&check(), &what, "ok ");
}
