//! Traffic from the peer namespace: kernel sockets (TCP SYNs, UDP queries)
//! and masscan sweeps, with the interface counters that tell when a sweep
//! has left.

use std::{
    collections::HashSet,
    fs, io,
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::Tuple;
use crate::testing::{Netns, TestNet, unique_name};

/// Run `f` on a thread inside `ns` (sockets it opens live there).
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter_this_thread();
                f()
            })
            .join()
            .unwrap()
    })
}

/// A TCP connection attempt from `ns`: the kernel sends a real SYN. The
/// result is the connect's (refused when the target answers with RST).
pub fn connect_from(ns: &Netns, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    in_netns(ns, || TcpStream::connect_timeout(&to, timeout))
}

/// SYNs from `ns` to each of `ports` on `ip`; the target must answer (RST
/// or SYN-ACK), so each port gets exactly one SYN.
pub fn syns_from(ns: &Netns, ip: &str, ports: &[u16]) {
    let ip: IpAddr = ip.parse().unwrap();
    in_netns(ns, || {
        for &port in ports {
            match TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => panic!("SYN to {ip}:{port}: {e} (expected an answer)"),
            }
        }
    });
}

/// A UDP exchange from `ns`: send `payload` to `to` from an ephemeral port,
/// wait for the reply.
pub fn udp_query_from(ns: &Netns, bind: &str, to: SocketAddr) -> io::Result<Vec<u8>> {
    let bind: IpAddr = bind.parse().unwrap();
    in_netns(ns, || {
        let socket = UdpSocket::bind(SocketAddr::new(bind, 0))?;
        socket.set_read_timeout(Some(Duration::from_secs(3)))?;
        socket.send_to(b"tsusen-test query", to)?;
        let mut buf = [0u8; 1500];
        let (n, _) = socket.recv_from(&mut buf)?;
        Ok(buf[..n].to_vec())
    })
}

/// A child process killed (and reaped) when dropped: traffic tools.
pub struct ChildGuard {
    pub name: String,
    pub child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A masscan SYN sweep running in the peer namespace (see [`masscan`]).
pub struct Masscan<'a> {
    net: &'a TestNet,
    guard: ChildGuard,
    probes: u64,
    tx_before: u64,
    started: Instant,
    log: PathBuf,
}

/// What a finished sweep sent.
#[derive(Debug)]
pub struct Sweep {
    /// Frames that left the peer's interface during the sweep.
    pub frames: u64,
    /// From masscan's start to its first frame (`None` when the sweep had
    /// begun before [`Masscan::finish`] started watching) and its last.
    pub first_frame: Option<Duration>,
    pub last_frame: Duration,
    /// masscan's own status output.
    pub log: String,
}

impl Sweep {
    /// The achieved send rate, first frame to last.
    pub fn pps(&self) -> f64 {
        let first = self.first_frame.unwrap_or_default();
        let secs = self.last_frame.checked_sub(first).unwrap().as_secs_f64();
        if secs > 0.0 {
            self.frames as f64 / secs
        } else {
            f64::NAN
        }
    }
}

/// Start a masscan SYN sweep from the peer to `targets` x `ports` (`probes`
/// frames in all) at `rate` pps, framed for the sensor's MAC, from
/// `source_ip` (an address of neither namespace: nothing answers, so each
/// probe is sent exactly once). Its status output goes to a file in
/// `scratch` (which is also its working directory, for `paused.conf`).
pub fn masscan<'a>(
    net: &'a TestNet,
    targets: &str,
    ports: &str,
    probes: u64,
    rate: u32,
    source_ip: &str,
    scratch: &Path,
) -> Masscan<'a> {
    let mac = net.sensor_mac();
    let rate = rate.to_string();
    let args = [
        targets,
        "-p",
        ports,
        "--rate",
        &rate,
        "--router-mac",
        &mac,
        "-e",
        &net.peer_if,
        "--source-ip",
        source_ip,
        "--wait",
        "0",
    ];
    eprintln!("$ masscan {}", args.join(" "));
    let log = scratch.join(format!("{}.log", unique_name("masscan")));
    let tx_before = if_counters(&net.peer, &net.peer_if).tx_packets;
    let child = net
        .peer
        .command("masscan")
        .args(args)
        .current_dir(scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("masscan: {e}"));
    Masscan {
        net,
        guard: ChildGuard {
            name: "masscan".into(),
            child,
        },
        probes,
        tx_before,
        started: Instant::now(),
        log,
    }
}

impl Masscan<'_> {
    /// Wait until every probe has left the peer's interface (its TX counter
    /// grew by at least the probe count, then stood still for 300 ms), then
    /// stop masscan. masscan 1.3.2 often does not exit by itself after a
    /// sweep (`waiting -N-secs`, counting down past zero for tens of
    /// seconds) while its receive thread waits for a packet that never
    /// comes, so its exit is no signal that the sweep is done.
    pub fn finish(mut self, timeout: Duration) -> Sweep {
        let (net, probes, before, started) = (self.net, self.probes, self.tx_before, self.started);
        let child = &mut self.guard.child;
        let (frames, first_frame, last_frame) = in_netns(&net.peer, || {
            let deadline = started + timeout;
            let (mut last, mut first_at, mut last_at) = (0, None, started.elapsed());
            // Only a sweep seen from before its first frame has a known start.
            let watched_from_start = read_counters(&net.peer_if).tx_packets == before;
            let mut still_since = Instant::now();
            loop {
                let sent = read_counters(&net.peer_if).tx_packets - before;
                let now = Instant::now();
                if sent != last {
                    if watched_from_start {
                        first_at.get_or_insert(now - started);
                    }
                    last_at = now - started;
                    last = sent;
                    still_since = now;
                }
                if sent >= probes && now - still_since >= Duration::from_millis(300) {
                    return (sent, first_at, last_at);
                }
                if let Ok(Some(status)) = child.try_wait()
                    && !status.success()
                {
                    return (sent, first_at, last_at);
                }
                assert!(
                    now < deadline,
                    "masscan sent {sent} of {probes} frames within {timeout:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
        });
        let exited = child.try_wait().ok().flatten();
        drop(self.guard);
        let log = fs::read_to_string(&self.log)
            .unwrap_or_default()
            .replace('\r', "\n");
        if let Some(status) = exited {
            assert!(status.success(), "masscan: {status}: {log}");
        }
        assert!(
            frames >= probes,
            "masscan sent {frames} of {probes} frames: {log}"
        );
        let sweep = Sweep {
            frames,
            first_frame,
            last_frame,
            log,
        };
        eprintln!(
            "masscan: {} frames, first at {:?}, last at {:.2?}: {:.0} pps",
            sweep.frames,
            sweep.first_frame,
            sweep.last_frame,
            sweep.pps()
        );
        sweep
    }
}

/// Packet counters of one interface.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

/// The counters of `ifname` in `ns` (from /proc/thread-self/net/dev on a
/// thread inside the namespace: no process to spawn, cheap to poll).
pub fn if_counters(ns: &Netns, ifname: &str) -> Counters {
    in_netns(ns, || read_counters(ifname))
}

/// The counters of `ifname` in the calling thread's namespace.
fn read_counters(ifname: &str) -> Counters {
    let text = fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    for line in text.lines() {
        let Some((name, numbers)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != ifname {
            continue;
        }
        let n: Vec<u64> = numbers
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        return Counters {
            rx_packets: n[1],
            rx_dropped: n[3],
            tx_packets: n[9],
            tx_dropped: n[11],
        };
    }
    panic!("no interface {ifname} in /proc/thread-self/net/dev:\n{text}");
}

/// Every (dst, port) of a masscan-style sweep of `net24` (a /24 given as
/// "a.b.c") x `ports`, as TCP tuples from `src`.
pub fn sweep_tuples(
    net24: &str,
    ports: std::ops::RangeInclusive<u16>,
    src: &str,
) -> HashSet<Tuple> {
    let src: IpAddr = src.parse().unwrap();
    let mut all = HashSet::new();
    for host in 0..=255u8 {
        let dst: IpAddr = format!("{net24}.{host}").parse().unwrap();
        for port in ports.clone() {
            all.insert(("TCP".to_owned(), Some(port), src, dst));
        }
    }
    all
}
