//! Day files made up for tests, the benchmark and the README screenshot:
//! deterministic for a seed, and only benchmarking (198.18.0.0/15) and
//! documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)
//! addresses.
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "made-up days, ports and addresses are drawn within their ranges"
)]

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, ensure};
use rustc_hash::FxHashSet;

use super::aggregate::ProtoPort;
use crate::dayfile::{HEADER, Row, SECS_PER_DAY, day_from_name, day_path};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub first_day: u16,
    pub days: u16,
    pub rows_per_day: usize,
    pub seed: u64,
    /// A protocol/port that gets many more sources on the last day.
    pub spike: Option<ProtoPort>,
}

impl Spec {
    /// The benchmark's data: `days` days ending 2026-01-30, a spike on TCP 5555.
    pub fn bench(days: u16, rows_per_day: usize) -> Self {
        let last = day_from_name("2026-01-30").expect("a valid date");
        Spec {
            first_day: last + 1 - days,
            days,
            rows_per_day,
            seed: 1,
            spike: Some(ProtoPort {
                proto: 6,
                port: 5555,
            }),
        }
    }
}

/// Generate the benchmark's day files into `dir` (see [`Spec::bench`]).
pub fn bench_inputs(dir: &Path, days: u16, rows_per_day: usize) -> Result<Vec<PathBuf>> {
    generate(dir, &Spec::bench(days, rows_per_day))
}

/// Write one day file in our format, with its header.
pub fn write_day(dir: &Path, day: u16, rows: &[Row]) -> Result<PathBuf> {
    let path = day_path(dir, day);
    let mut out = BufWriter::new(
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(out, "{HEADER}")?;
    for row in rows {
        writeln!(out, "{row}")?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Generate `spec.days` day files into `dir`, two at a time.
pub fn generate(dir: &Path, spec: &Spec) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let days: Vec<u16> = (0..spec.days).map(|i| spec.first_day + i).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(days.len().max(1));
    let results: Vec<Result<PathBuf>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let days = &days;
                scope.spawn(move || {
                    days.iter()
                        .skip(w)
                        .step_by(workers)
                        .map(|&day| write_day(dir, day, &day_rows(spec, day)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("generator thread"))
            .collect()
    });
    let mut paths = results.into_iter().collect::<Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

/// splitmix64: small, fast and good enough for made-up traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The usual suspects, with relative weights.
const SERVICES: &[(u8, u16, u32)] = &[
    (6, 23, 300),
    (6, 22, 200),
    (6, 445, 120),
    (6, 80, 150),
    (6, 443, 100),
    (6, 3389, 80),
    (6, 8080, 70),
    (6, 2323, 40),
    (6, 1433, 40),
    (6, 3306, 35),
    (6, 5900, 30),
    (6, 6379, 30),
    (6, 7547, 30),
    (6, 21, 25),
    (6, 25, 25),
    (6, 5555, 15),
    (6, 81, 15),
    (6, 8443, 15),
    (17, 5060, 40),
    (17, 53, 30),
    (17, 123, 30),
    (17, 1900, 20),
    (17, 161, 20),
    (17, 11211, 10),
    (1, 0, 50),
    (58, 0, 10),
];

/// Weight of random high ports (the long tail), relative to [`SERVICES`].
const TAIL_WEIGHT: u32 = 150;
/// Destinations: the three IPv4 documentation /24s.
const DESTINATIONS: u64 = 768;

fn destination(i: u64, v6: bool) -> IpAddr {
    if v6 {
        return IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, i as u16 + 1));
    }
    let nets = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let [a, b, c] = nets[(i / 256) as usize];
    IpAddr::V4(Ipv4Addr::new(a, b, c, (i % 256) as u8))
}

/// Source `i` of the pool: 198.18.0.0/15, and every 20th one IPv6.
fn source(i: u64) -> IpAddr {
    if i % 20 == 19 {
        return IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            5,
            (i >> 32) as u16,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        ));
    }
    let n = (i % (1 << 17)) as u32;
    IpAddr::V4(Ipv4Addr::from(0xc612_0000 | n))
}

fn day_rows(spec: &Spec, day: u16) -> Vec<Row> {
    let mut rng = Rng(spec.seed ^ (u64::from(day) << 32) ^ 0x7473_7573_656e);
    let last_day = spec.first_day + spec.days - 1;
    let pool = (spec.rows_per_day as u64 / 4).clamp(1_000, 1 << 17);
    // A weekly wave per service, so the chart has trends to show.
    let phase = |i: usize| f64::from(day) / 7.0 + i as f64;
    let mut weights: Vec<f64> = SERVICES
        .iter()
        .enumerate()
        .map(|(i, &(proto, port, w))| {
            let spiking = spec.spike == Some(ProtoPort { proto, port }) && day == last_day;
            f64::from(w) * (1.0 + 0.3 * phase(i).sin()) * if spiking { 20.0 } else { 1.0 }
        })
        .collect();
    weights.push(f64::from(TAIL_WEIGHT));
    let total: f64 = weights.iter().sum();

    let day_start = i64::from(day) * SECS_PER_DAY;
    let mut seen = FxHashSet::default();
    let mut rows = Vec::with_capacity(spec.rows_per_day);
    while rows.len() < spec.rows_per_day {
        let mut pick = rng.unit() * total;
        let which = weights
            .iter()
            .position(|&w| {
                pick -= w;
                pick < 0.0
            })
            .unwrap_or(weights.len() - 1);
        let (proto, port) = match SERVICES.get(which) {
            Some(&(proto, port, _)) => (proto, port),
            None => (6, 1024 + rng.below(64_511) as u16),
        };
        // Few sources are busy, most are seen a little: skew towards 0.
        let src_index = (rng.unit().powi(3) * pool as f64) as u64;
        let src = source(src_index);
        let v6 = src.is_ipv6();
        let proto = match (proto, v6) {
            (1, true) => 58,
            (58, false) => 1,
            (p, _) => p,
        };
        // Mostly a few hosts, sometimes a sweep of the whole range.
        let width = match rng.below(100) {
            0..60 => 1 + rng.below(4),
            60..95 => 5 + rng.below(60),
            _ => DESTINATIONS,
        };
        let start = rng.below(DESTINATIONS);
        for j in 0..width {
            if rows.len() == spec.rows_per_day {
                break;
            }
            let d = (start + j) % DESTINATIONS;
            let tuple = (u64::from(proto) << 56) | (u64::from(port) << 40) | (src_index << 10) | d;
            if !seen.insert(tuple) {
                continue;
            }
            rows.push(Row {
                proto,
                dst_port: port,
                src_ip: src,
                dst_ip: destination(d, v6),
                timestamp: day_start + rng.below(SECS_PER_DAY as u64).cast_signed(),
            });
        }
    }
    rows
}

/// Enrichment over [`generate`]'s sources (198.18.0.0-198.18.39.255 and some
/// IPv6), as the input of [`write_mmdb`]: ASN for two /19s and an IPv6 /48;
/// country NL, DE, and DE as the registered country only.
pub const ASN_NETWORKS: &str = r#"198.18.0.0/19 {"autonomous_system_number":64500,"autonomous_system_organization":"Bench Scanners"}
198.18.32.0/19 {"autonomous_system_number":64501,"autonomous_system_organization":"Other Net, Inc."}
2001:db8:5::/48 {"autonomous_system_number":64502,"autonomous_system_organization":"Six"}
"#;
pub const COUNTRY_NETWORKS: &str = r#"198.18.0.0/20 {"country":{"iso_code":"NL","names":{"en":"Netherlands"}}}
198.18.16.0/20 {"country":{"iso_code":"DE","names":{"en":"Germany"}}}
198.18.32.0/19 {"registered_country":{"iso_code":"DE","names":{"en":"Germany"}}}
"#;
/// A `--labels` list: a research scanner /24 inside a partner /16, and our
/// own destination range.
pub const LABELS: &str = "# known research scanners\n198.18.0.0/24 research\n198.18.0.0/16 partner # a partner's range\n192.0.2.0/24 ours\n";

/// Write a MaxMind DB of `kind` (`GeoLite2-ASN`, `GeoLite2-Country`, ...)
/// from `networks` (`CIDR JSON` lines) with `tests/data/mmdb_write.pl`,
/// which needs Debian's libmaxmind-db-writer-perl; perl's complaint is the error.
pub fn write_mmdb(path: &Path, kind: &str, networks: &str) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mmdb_write.pl");
    let mut child = Command::new("perl")
        .arg(script)
        .arg(path)
        .arg(kind)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start perl (libmaxmind-db-writer-perl writes the databases)")?;
    child
        .stdin
        .take()
        .context("perl's stdin")?
        .write_all(networks.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "mmdb_write.pl {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
