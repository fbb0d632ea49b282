//! The test servers themselves (tsusen::testing::clickhouse): a node
//! answers, survives `kill -9` with its data, checks a password; a cluster
//! runs `ON CLUSTER` DDL on both replicas and copies an insert from one to
//! the other.

use std::time::Duration;

use tsusen::{
    skip_unless,
    testing::clickhouse::{CLUSTER, Cluster, Node, why_not_cluster, why_not_node},
};

#[test]
fn node_answers_and_keeps_its_data_across_kill9() {
    let why = why_not_node();
    skip_unless!(why.is_empty(), &why);
    let mut node = Node::start();
    assert_eq!(node.query("SELECT 1 + 1"), "2\n");
    node.query("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x");
    node.insert("INSERT INTO t FORMAT TSV", b"1\n2\n3\n")
        .unwrap();
    let pid = node.pid();
    node.kill9();
    assert!(!node.ping(), "a killed node must not answer");
    node.restart();
    assert_ne!(node.pid(), pid, "a new process");
    assert_eq!(node.count("SELECT count() FROM t"), 3);
}

#[test]
fn node_with_password_refuses_a_wrong_one() {
    let why = why_not_node();
    skip_unless!(why.is_empty(), &why);
    let node = Node::start_with_password("s3cret &<pw>");
    assert_eq!(node.query("SELECT 7"), "7\n");
    let other = Node::start();
    assert_ne!(node.url(), other.url(), "parallel nodes on their own ports");
    // The right server and user, a wrong password.
    let out = std::process::Command::new("clickhouse-client")
        .args([
            "--port",
            &node.ports.tcp.to_string(),
            "--password",
            "wrong",
            "--query",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong password must be refused");
    // 18.16 says "Wrong password", current releases "password is incorrect".
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Wrong password") || stderr.contains("password is incorrect"),
        "{stderr}"
    );
}

#[test]
fn cluster_replicates_an_insert_to_the_other_replica() {
    let why = why_not_cluster();
    skip_unless!(why.is_empty(), &why);
    let cluster = Cluster::start();
    let [first, second] = &cluster.nodes;
    first.query(&format!(
        "CREATE TABLE t ON CLUSTER {CLUSTER} (x UInt32) \
         ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/t', '{{replica}}') ORDER BY x"
    ));
    // The DDL ran on both nodes, each with its own replica name.
    for (node, replica) in [(first, "r1"), (second, "r2")] {
        assert_eq!(
            node.query("SELECT replica_name FROM system.replicas WHERE table = 't'"),
            format!("{replica}\n")
        );
    }
    first
        .insert("INSERT INTO t FORMAT TSV", b"1\n2\n3\n")
        .unwrap();
    cluster.wait_replicated("t", 3, Duration::from_secs(60));
    assert_eq!(second.query("SELECT sum(x) FROM t"), "6\n");
}

#[test]
fn a_node_without_merges_keeps_a_row_inserted_twice() {
    let why = why_not_node();
    skip_unless!(why.is_empty(), &why);
    for (node, stored) in [(Node::start(), 1), (Node::start_without_merges(), 2)] {
        node.query("CREATE TABLE t (x UInt32) ENGINE = ReplacingMergeTree ORDER BY x");
        for _ in 0..2 {
            node.insert("INSERT INTO t FORMAT TSV", b"1\n").unwrap();
        }
        // What a background merge would do, now.
        node.query("OPTIMIZE TABLE t");
        assert_eq!(node.count("SELECT count() FROM t"), stored);
        assert_eq!(node.count("SELECT count() FROM t FINAL"), 1);
    }
}

#[test]
fn a_frozen_node_holds_a_request_until_thawed() {
    let why = why_not_node();
    skip_unless!(why.is_empty(), &why);
    let node = Node::start();
    node.query("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x");
    node.freeze();
    std::thread::scope(|scope| {
        let insert = scope.spawn(|| node.insert("INSERT INTO t FORMAT TSV", b"1\n2\n"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while node.requests_waiting() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no request waiting at the frozen node"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!insert.is_finished(), "no answer while frozen");
        node.thaw();
        insert.join().unwrap().unwrap();
    });
    assert_eq!(node.requests_waiting(), 0);
    assert_eq!(node.count("SELECT count() FROM t"), 2);
}
