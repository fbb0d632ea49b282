//! Real ClickHouse servers for tests: one node, or ZooKeeper plus two
//! replicas of one shard, each a plain child process on 127.0.0.1 with free
//! ports and its own temporary directory (config, data, logs), stopped and
//! removed on drop. A node can be `kill -9`ed and started again on the same
//! ports and data, as a crashed server comes back.
//!
//! The configs are what ClickHouse 18.16 (Debian 12) reads (`<yandex>` root)
//! and what current releases still accept. Parallel tests never collide:
//! every directory is unique, every port is picked free, and a server that
//! lost a port race is started again on new ports.
//!
//! ```ignore
//! let why = tsusen::testing::clickhouse::why_not_cluster();
//! tsusen::skip_unless!(why.is_empty(), &why);
//! let cluster = Cluster::start();
//! cluster.nodes[0].query(&format!("CREATE TABLE t ON CLUSTER {CLUSTER} ..."));
//! ```

use std::{
    collections::HashSet,
    fmt::Write as _,
    fs,
    io::{self, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use super::{have_program, unique_name};

/// The name of the test cluster in every node's `remote_servers`.
pub const CLUSTER: &str = "fleet";

/// How long a server may take to answer its first `/ping` (or ZooKeeper its
/// to serve sessions): generous, the test machine is shared.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// ZooKeeper's jar and the directory with its log configuration (Debian's
/// `zookeeper` package).
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
const ZOOKEEPER_CONF: &str = "/etc/zookeeper/conf";
/// A logger binding (libslf4j-java, a dependency of zookeeper), so that
/// ZooKeeper's log lands in its `zookeeper.log` instead of nowhere.
const SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";

/// Why a single-node test cannot run here ("" when it can).
pub fn why_not_node() -> String {
    if have_program("clickhouse-server") {
        String::new()
    } else {
        "needs clickhouse-server (apt-get install clickhouse-server clickhouse-client)".into()
    }
}

/// Why a cluster test cannot run here ("" when it can): ClickHouse, and
/// ZooKeeper with a Java runtime.
pub fn why_not_cluster() -> String {
    let node = why_not_node();
    if !node.is_empty() {
        return node;
    }
    if !have_program("java") || !Path::new(ZOOKEEPER_JAR).exists() {
        return format!("needs java and {ZOOKEEPER_JAR} (apt-get install zookeeper)");
    }
    String::new()
}

/// A TCP port on 127.0.0.1 that nothing listens on now and that this process
/// has not handed out before. Another process may still take it before the
/// server binds it: callers start again on new ports when a bind fails.
fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A fresh directory under the system's temp dir, unique to this call.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsusen-{}", unique_name(tag)));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The last lines of a log file, for panic messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Spawn `command` in `dir`, its stdout and stderr to the file `log` there.
fn spawn_in(dir: &Path, log: &str, command: &mut Command) -> Child {
    let out = fs::File::create(dir.join(log)).unwrap();
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// Kill a child with SIGKILL and reap it.
fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The ports one ClickHouse node listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub http: u16,
    /// The native protocol (clickhouse-client, `remote_servers`).
    pub tcp: u16,
    /// Replicas fetch parts from each other here.
    pub interserver: u16,
}

impl Ports {
    fn free() -> Self {
        Ports {
            http: free_port(),
            tcp: free_port(),
            interserver: free_port(),
        }
    }
}

/// What makes a node a replica of the test cluster.
#[derive(Clone, Debug)]
struct Replication {
    zookeeper_port: u16,
    /// The native ports of both replicas, in `remote_servers` order.
    replica_tcp_ports: [u16; 2],
    /// The `{replica}` macro: unique per node.
    replica: String,
}

/// One ClickHouse server as a child process.
pub struct Node {
    /// Config, users, data and logs; removed on drop.
    pub dir: PathBuf,
    pub ports: Ports,
    /// The `default` user's password ("" for none).
    password: String,
    replication: Option<Replication>,
    /// Whether background merges run (see [`Node::start_without_merges`]).
    merges: bool,
    child: Option<Child>,
}

/// Why a start failed: a port another process took first (try new ports),
/// or anything else (panic with the log).
enum StartError {
    PortTaken,
    Failed(String),
}

impl Node {
    /// A node whose `default` user has no password.
    pub fn start() -> Node {
        Node::start_with_password("")
    }

    /// A node whose `default` user needs `password` (auth tests).
    pub fn start_with_password(password: &str) -> Node {
        Node::start_new(password, true)
    }

    /// A node that never merges parts: a `ReplacingMergeTree` then keeps
    /// every row inserted twice, so a test sees duplicates a shipper stored
    /// (`count()` against `count()` with `FINAL`) instead of a background
    /// merge hiding them at a random moment.
    pub fn start_without_merges() -> Node {
        Node::start_new("", false)
    }

    fn start_new(password: &str, merges: bool) -> Node {
        let mut node = Node {
            dir: temp_dir("ch"),
            ports: Ports::free(),
            password: password.to_owned(),
            replication: None,
            merges,
            child: None,
        };
        for _ in 0..5 {
            match node.try_start() {
                Ok(()) => return node,
                Err(StartError::PortTaken) => node.ports = Ports::free(),
                Err(StartError::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("clickhouse-server: no free ports after 5 tries");
    }

    /// Write the config for the current ports and spawn the server.
    fn spawn(&mut self) {
        self.write_config();
        let mut command = Command::new("clickhouse-server");
        command.arg(format!(
            "--config-file={}",
            self.dir.join("config.xml").display()
        ));
        let child = spawn_in(&self.dir, "stdout.log", &mut command);
        self.child = Some(child);
    }

    fn try_start(&mut self) -> Result<(), StartError> {
        self.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ping() {
                return Ok(());
            }
            let child = self.child.as_mut().unwrap();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = format!(
                    "{}\n{}",
                    tail(&self.dir.join("stdout.log"), 20),
                    tail(&self.dir.join("server.err.log"), 20)
                );
                if log.contains("Address already in use") {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Failed(format!(
                    "clickhouse-server in {} exited ({status}) before answering /ping:\n{log}",
                    self.dir.display()
                )));
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(StartError::Failed(format!(
                    "clickhouse-server in {} did not answer /ping within {START_TIMEOUT:?}:\n{}",
                    self.dir.display(),
                    tail(&self.dir.join("server.err.log"), 20)
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `/ping` answers `Ok.` now.
    pub fn ping(&self) -> bool {
        http(self.ports.http, "GET", "/ping", b"")
            .is_ok_and(|(code, body)| code == 200 && body == "Ok.\n")
    }

    /// `http://127.0.0.1:PORT` (no user, no password: tests add them).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// The `default` user's password ("" for none).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Run one statement as `default`; its output (TSV). Panics with the
    /// server's error.
    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// [`Node::query`], returning the server's error instead of panicking.
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        self.request(&self.auth_query(), sql.as_bytes())
    }

    /// An `INSERT ... FORMAT X` statement with `data` as its body.
    pub fn insert(&self, sql: &str, data: &[u8]) -> Result<String, String> {
        let path = format!("{}&query={}", self.auth_query(), percent_encode(sql));
        self.request(&path, data)
    }

    /// `/?user=default[&password=...]`.
    fn auth_query(&self) -> String {
        let mut path = "/?user=default".to_owned();
        if !self.password.is_empty() {
            let _ = write!(path, "&password={}", percent_encode(&self.password));
        }
        path
    }

    fn request(&self, path: &str, body: &[u8]) -> Result<String, String> {
        match http(self.ports.http, "POST", path, body) {
            Ok((200, body)) => Ok(body),
            Ok((code, body)) => Err(format!("HTTP {code}: {}", body.trim_end())),
            Err(e) => Err(format!("{}: {e}", self.url())),
        }
    }

    /// Create `table` as the shipper does and store every row of the day
    /// files in `dir` as `sensor`'s, one block per day, as the shipper
    /// writes them: the same days for a test of the ClickHouse source as
    /// for one of the files. Returns the number of rows stored.
    pub fn store_day_files(&self, dir: &Path, table: &str, sensor: &str) -> u64 {
        use crate::{
            clickhouse::schema::{DayCache, Table, write_tsv_row},
            dayfile::{self, Warnings},
        };
        for statement in Table::new(table, None).unwrap().ddl() {
            self.query(&statement);
        }
        let mut warnings = Warnings::default();
        let mut stored = 0;
        for file in dayfile::list_day_files(dir, &mut warnings).unwrap() {
            let (mut tsv, mut days) = (Vec::new(), DayCache::default());
            dayfile::read_day_file(&file.path, &mut warnings, |row| {
                write_tsv_row(row, sensor, &mut days, &mut tsv);
                stored += 1;
            })
            .unwrap();
            self.insert(&format!("INSERT INTO {table} FORMAT TabSeparated"), &tsv)
                .unwrap();
        }
        assert!(warnings.lines.is_empty(), "{:?}", warnings.lines);
        stored
    }

    /// A query whose answer is one number.
    pub fn count(&self, sql: &str) -> u64 {
        let out = self.query(sql);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: {out:?}: {e}"))
    }

    /// `kill -9` the server: no shutdown, parts in flight are whatever the
    /// disk has. The ports and data stay for [`Node::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill9(&mut child);
        }
    }

    /// Freeze the server (SIGSTOP): connections are still accepted and
    /// requests land in its sockets, but nothing is answered until
    /// [`Node::thaw`]. A request sent now is in flight for as long as the
    /// test wants. Keep it short: ZooKeeper ends a frozen replica's session
    /// after 30 s.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        // kill(2) returns before the threads stop: on a busy machine one may
        // still accept and read a request for a while. Frozen is when every
        // thread's state in /proc is T (stopped).
        let tasks = format!("/proc/{}/task", self.pid().expect("the server runs"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stopped = fs::read_dir(&tasks).unwrap().flatten().all(|task| {
                fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                    // The state follows the command name in parentheses.
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
            });
            if stopped {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server not stopped 30 s after SIGSTOP"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Let a [`Node::freeze`]d server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.pid().expect("the server runs");
        // SAFETY: kill(2) on our own child, not reaped yet (so its pid is
        // not reused).
        let rc = unsafe { libc::kill(pid.cast_signed(), signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Connections to the HTTP port holding bytes the server has not read:
    /// requests in flight at a [`Node::freeze`]d server (`ss`).
    pub fn requests_waiting(&self) -> usize {
        let out = super::run(
            "ss",
            &[
                "-tnH",
                "state",
                "established",
                &format!("( sport = :{} )", self.ports.http),
            ],
        );
        out.lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .and_then(|q| q.parse::<u64>().ok())
                    .is_some_and(|recv_q| recv_q > 0)
            })
            .count()
    }

    /// Start the server again on the same ports, config and data (after
    /// [`Node::kill9`]); waits for `/ping`.
    pub fn restart(&mut self) {
        self.kill9();
        // The old listening sockets are gone with the process; a bind can
        // still fail for a moment while the kernel releases them.
        for _ in 0..20 {
            match self.try_start() {
                Ok(()) => return,
                Err(StartError::PortTaken) => thread::sleep(Duration::from_millis(500)),
                Err(StartError::Failed(why)) => panic!("restart: {why}"),
            }
        }
        panic!(
            "restart: the ports of {} stayed taken: {:?}",
            self.dir.display(),
            self.ports
        );
    }

    fn write_config(&self) {
        let dir = self.dir.display();
        let Ports {
            http,
            tcp,
            interserver,
        } = self.ports;
        let mut config = format!(
            r"<?xml version='1.0'?>
<yandex>
    <logger>
        <level>information</level>
        <log>{dir}/server.log</log>
        <errorlog>{dir}/server.err.log</errorlog>
        <console>false</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{interserver}</interserver_http_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>5368709120</mark_cache_size>
    <mlock_executable>false</mlock_executable>
"
        );
        if !self.merges {
            // No part is small enough to merge; and as every insert stays a
            // part of its own, many parts must not slow or refuse inserts.
            config.push_str(
                r"    <merge_tree>
        <max_bytes_to_merge_at_max_space_in_pool>1</max_bytes_to_merge_at_max_space_in_pool>
        <max_bytes_to_merge_at_min_space_in_pool>1</max_bytes_to_merge_at_min_space_in_pool>
        <parts_to_delay_insert>100000</parts_to_delay_insert>
        <parts_to_throw_insert>100000</parts_to_throw_insert>
    </merge_tree>
",
            );
        }
        if let Some(r) = &self.replication {
            let [tcp1, tcp2] = r.replica_tcp_ports;
            let _ = write!(
                config,
                r"    <remote_servers>
        <{CLUSTER}>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>{tcp1}</port></replica>
                <replica><host>127.0.0.1</host><port>{tcp2}</port></replica>
            </shard>
        </{CLUSTER}>
    </remote_servers>
    <zookeeper>
        <node><host>127.0.0.1</host><port>{zk}</port></node>
    </zookeeper>
    <macros>
        <shard>01</shard>
        <replica>{replica}</replica>
    </macros>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
",
                zk = r.zookeeper_port,
                replica = r.replica,
            );
        }
        config.push_str("</yandex>\n");
        fs::write(self.dir.join("config.xml"), config).unwrap();
        let users = format!(
            r"<?xml version='1.0'?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password>{password}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
",
            password = xml_escape(&self.password)
        );
        fs::write(self.dir.join("users.xml"), users).unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// ZooKeeper as a plain Java process (what replicated tables and
/// `ON CLUSTER` DDL coordinate through).
pub struct ZooKeeper {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        let mut zk = ZooKeeper {
            dir: temp_dir("zk"),
            port: free_port(),
            child: None,
        };
        for _ in 0..5 {
            if zk.try_start() {
                return zk;
            }
            zk.port = free_port();
        }
        panic!("zookeeper: no free port after 5 tries");
    }

    /// Spawn and wait until it is [`ZooKeeper::ready`]; false when the port was taken.
    fn try_start(&mut self) -> bool {
        let dir = self.dir.display();
        fs::create_dir_all(self.dir.join("data")).unwrap();
        fs::write(
            self.dir.join("zoo.cfg"),
            format!(
                "tickTime=2000\ndataDir={dir}/data\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,stat\n",
                port = self.port
            ),
        )
        .unwrap();
        let log = self.dir.join("zookeeper.log");
        let mut command = Command::new("java");
        command.args([
            "-Xmx256m",
            &format!("-Dzookeeper.log.dir={dir}"),
            "-cp",
            &format!("{ZOOKEEPER_CONF}:{ZOOKEEPER_JAR}:{SLF4J_SIMPLE}"),
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            &format!("{dir}/zoo.cfg"),
        ]);
        let child = spawn_in(&self.dir, "zookeeper.log", &mut command);
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ready() {
                return true;
            }
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                let log = tail(&log, 30);
                if log.contains("Address already in use") {
                    return false;
                }
                panic!("zookeeper in {dir} exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "zookeeper in {dir} was not ready within {START_TIMEOUT:?}:\n{}",
                tail(&log, 30)
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether ZooKeeper serves sessions: `ruok` gets `imok` (the process
    /// listens) and `stat` does not say "not currently serving requests"
    /// (it answers `imok` a moment before it accepts sessions; ClickHouse
    /// 18.16 connecting then gives up on it, and its DDL worker crashes).
    pub fn ready(&self) -> bool {
        self.four_letter_word("ruok").is_ok_and(|a| a == "imok")
            && self
                .four_letter_word("stat")
                .is_ok_and(|a| a.contains("Mode: standalone"))
    }

    fn four_letter_word(&self, word: &str) -> io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(word.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill9(&mut child);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// ZooKeeper and two ClickHouse nodes: one shard ([`CLUSTER`]) with two
/// replicas (`internal_replication`: a `Distributed` table writes to one
/// replica, the replicated table copies to the other), macros `{shard}`
/// (`01`) and `{replica}` (`r1`, `r2`), and the distributed DDL queue, so
/// `CREATE ... ON CLUSTER fleet` runs on both.
pub struct Cluster {
    /// Dropped first: no server outlives its ZooKeeper's removal.
    pub nodes: [Node; 2],
    pub zookeeper: ZooKeeper,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_new(true)
    }

    /// A cluster whose nodes never merge parts (see
    /// [`Node::start_without_merges`]).
    pub fn start_without_merges() -> Cluster {
        Cluster::start_new(false)
    }

    fn start_new(merges: bool) -> Cluster {
        let zookeeper = ZooKeeper::start();
        for _ in 0..5 {
            let ports = [Ports::free(), Ports::free()];
            let mut nodes = [0, 1].map(|i| Node {
                dir: temp_dir(&format!("ch{}", i + 1)),
                ports: ports[i],
                password: String::new(),
                replication: Some(Replication {
                    zookeeper_port: zookeeper.port,
                    replica_tcp_ports: [ports[0].tcp, ports[1].tcp],
                    replica: format!("r{}", i + 1),
                }),
                merges,
                child: None,
            });
            let mut taken = false;
            for node in &mut nodes {
                match node.try_start() {
                    Ok(()) => {}
                    Err(StartError::PortTaken) => taken = true,
                    Err(StartError::Failed(why)) => panic!("{why}"),
                }
            }
            if !taken {
                return Cluster { nodes, zookeeper };
            }
        }
        panic!("cluster: no free ports after 5 tries");
    }

    /// Both nodes' HTTP URLs (what a shipper is given as replicas).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Wait until both replicas of `table` (a `Replicated*` table in
    /// `default`) hold `rows` rows, for the copy between them to finish.
    pub fn wait_replicated(&self, table: &str, rows: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let counts: Vec<Result<String, String>> = self
                .nodes
                .iter()
                .map(|n| n.try_query(&format!("SELECT count() FROM {table}")))
                .collect();
            if counts
                .iter()
                .all(|c| c.as_deref().is_ok_and(|c| c.trim() == rows.to_string()))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{table}: replicas hold {counts:?}, not {rows} each, after {timeout:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One HTTP/1.0 request to 127.0.0.1:`port` (the server closes the
/// connection after the answer): status code and body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no HTTP header end in {answer:?}")))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((code, body.to_owned()))
}

/// `s` as a URL query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
