//! The alerting rules shipped in packaging/: valid for Prometheus
//! (`promtool check rules`), and each alert fires on the series it is about
//! and stays quiet on a healthy sensor (`promtool test rules` on
//! packaging/tsusen-alerts.test.yml). promtool comes with Debian's
//! `prometheus` package; CI installs it, so there the test cannot skip.

use std::{collections::BTreeSet, path::Path, process::Command};

use serde_json::Value;
use tsusen::{
    skip_unless,
    testing::{have_program, run_command},
};

fn packaging() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging"))
}

fn yaml(name: &str) -> Value {
    let path = packaging().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn promtool(args: &[&str]) {
    run_command(Command::new("promtool").current_dir(packaging()).args(args));
}

#[test]
fn the_alert_rules_are_valid_and_their_tests_pass() {
    skip_unless!(
        have_program("promtool"),
        "needs promtool (apt-get install prometheus)"
    );
    promtool(&["check", "rules", "tsusen-alerts.yml"]);
    promtool(&["test", "rules", "tsusen-alerts.test.yml"]);
}

/// promtool passes a test file that leaves an alert out: every alert must be
/// tested both firing and quiet.
#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let rules = yaml("tsusen-alerts.yml");
    let alerts: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    for wanted in [
        "TsusenTuplesEvicted",
        "TsusenInsertFailures",
        "TsusenRowsPending",
        "TsusenNoSuccessfulWrite",
        "TsusenPacketsStopped",
    ] {
        assert!(alerts.contains(wanted), "no {wanted} in {alerts:?}");
    }

    let tests = yaml("tsusen-alerts.test.yml");
    let (mut fire, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            match case["exp_alerts"].as_array() {
                Some(expected) if !expected.is_empty() => fire.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    assert_eq!(fire, alerts, "alerts tested firing");
    assert_eq!(quiet, alerts, "alerts tested quiet");
}
