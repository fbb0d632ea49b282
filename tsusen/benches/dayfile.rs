//! `cargo xtask bench`: the day-file format, hand-written against the `csv`
//! crate (space delimiter, byte records), side by side in one run, where its
//! speed matters:
//!
//! 1. writing: the daemon's and replay's per-row write path
//!    (`Row::write_line_as` into the flush buffer), 1,000,000 rows;
//! 2. reading: the report's load of 30 days x 1,000,000 rows (one generated
//!    file read 30 times from the page cache: the parse, not the disk).
//!
//! The hand-written code is what tsusen uses; the `csv` side does the same
//! work (the same fields, the same row parser, the same protocol memo) with
//! the crate splitting and joining the fields. Best of 3 rounds each (the
//! machine is shared and noisy). `TSUSEN_DAYFILE_BENCH_DAYS` sets the days
//! read (default 30).
#![expect(
    clippy::cast_possible_wrap,
    reason = "row numbers of a generated million-row file fit i64"
)]

use std::{
    fs,
    hint::black_box,
    io::Write as _,
    net::IpAddr,
    time::{Duration, Instant},
};

use tsusen::dayfile::{Format, HEADER, Row, Warnings, read_day_file};
use tsusen_common::{classify::has_ports, proto};

const ROWS: usize = 1_000_000;
const ROUNDS: usize = 3;

/// Rows as a busy sensor writes them: mostly IPv4 TCP, some UDP, ICMP and
/// IPv6, in time order.
fn rows() -> Vec<Row> {
    let day_start = 1_764_028_800; // 2025-11-25 00:00:00 UTC
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..ROWS)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            let (proto, dst_port) = match b[0] % 100 {
                0..80 => (6, u16::from_le_bytes([b[1], b[2]])),
                80..95 => (17, u16::from_le_bytes([b[1], b[2]])),
                95..99 => (1, 0),
                _ => (58, 0),
            };
            let (src_ip, dst_ip) = if proto == 58 {
                (
                    IpAddr::from([0x2001, 0xdb8, 0xbad, 0, 0, 0, u16::from(b[3]), 7]),
                    IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]),
                )
            } else {
                (
                    IpAddr::from([198, 18 + (b[3] & 1), b[4], b[5]]),
                    IpAddr::from([192, 0, 2, b[6]]),
                )
            };
            Row {
                proto,
                dst_port,
                src_ip,
                dst_ip,
                timestamp: day_start + (i as i64 * 86_399 / ROWS as i64),
            }
        })
        .collect()
}

fn best(mut run: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        out = black_box(run());
        best = best.min(t.elapsed());
    }
    (best, out)
}

fn write_hand(rows: &[Row]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(rows.len() * 48 + 64);
    for row in rows {
        row.write_line_as(Format::Tsusen, &mut buf);
    }
    buf
}

/// The same fields, joined by `csv::Writer`.
fn write_csv(rows: &[Row]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b' ')
        .quote_style(csv::QuoteStyle::Never)
        .terminator(csv::Terminator::Any(b'\n'))
        .has_headers(false)
        .from_writer(Vec::with_capacity(rows.len() * 48 + 64));
    let mut record = csv::ByteRecord::new();
    let (mut num, mut src, mut dst) = (itoa::Buffer::new(), Vec::new(), Vec::new());
    for row in rows {
        record.clear();
        match proto::keyword(row.proto) {
            Some(keyword) => record.push_field(keyword.as_bytes()),
            None => record.push_field(num.format(row.proto).as_bytes()),
        }
        if has_ports(row.proto) {
            record.push_field(num.format(row.dst_port).as_bytes());
        } else {
            record.push_field(b"-");
        }
        ip_field(&mut src, row.src_ip);
        ip_field(&mut dst, row.dst_ip);
        record.push_field(&src);
        record.push_field(&dst);
        record.push_field(num.format(row.timestamp).as_bytes());
        writer.write_byte_record(&record).expect("writing to a Vec");
    }
    writer.into_inner().expect("a Vec")
}

fn ip_field(out: &mut Vec<u8>, ip: IpAddr) {
    out.clear();
    match ip {
        IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(num.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => write!(out, "{v6}").expect("writing to a Vec"),
    }
}

fn read_hand(path: &std::path::Path, days: usize) -> usize {
    let mut rows = 0;
    for _ in 0..days {
        let mut warnings = Warnings::default();
        read_day_file(path, &mut warnings, |row| {
            black_box(row);
            rows += 1;
        })
        .expect("read the day file");
        assert!(warnings.lines.is_empty(), "{:?}", warnings.lines);
    }
    rows
}

/// The same file split by `csv::Reader` into byte records, each checked as
/// UTF-8 and parsed by the same row parser, protocols looked up once.
fn read_csv(path: &std::path::Path, days: usize) -> usize {
    let mut rows = 0;
    for _ in 0..days {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b' ')
            .has_headers(false)
            .flexible(true)
            .quoting(false)
            .buffer_capacity(1 << 20)
            .from_path(path)
            .expect("open the day file");
        let mut record = csv::ByteRecord::new();
        let mut format = None;
        let mut memo: Vec<(Vec<u8>, String)> = Vec::new();
        while reader
            .read_byte_record(&mut record)
            .expect("read the day file")
        {
            let mut columns = [""; 8];
            let mut count = 0;
            for field in record.iter().take(columns.len()) {
                columns[count] = std::str::from_utf8(field).expect("text");
                count += 1;
            }
            let columns = &mut columns[..count];
            let Some(format) = format else {
                format = Format::of_header(&columns.join(" "));
                continue;
            };
            let known = memo.iter().position(|(k, _)| k == columns[0].as_bytes());
            let at = known.unwrap_or_else(|| {
                let n = proto::from_column(columns[0]).expect("a protocol");
                memo.push((columns[0].as_bytes().to_vec(), n.to_string()));
                memo.len() - 1
            });
            columns[0] = &memo[at].1;
            let row: Row = Format::parse(format, columns).expect("a row");
            black_box(&row);
            rows += 1;
        }
    }
    rows
}

fn line(what: &str, hand: Duration, csv: Duration, rows: usize) {
    let per_row = |d: Duration| d.as_secs_f64() * 1e9 / rows as f64;
    println!(
        "{what:<34} {:>9.2?} {:>6.1} ns/row | {:>9.2?} {:>6.1} ns/row | csv/hand {:.2}",
        hand,
        per_row(hand),
        csv,
        per_row(csv),
        csv.as_secs_f64() / hand.as_secs_f64()
    );
}

fn main() {
    let days: usize = std::env::var("TSUSEN_DAYFILE_BENCH_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let rows = rows();
    println!(
        "day file, {ROWS} rows ({ROUNDS} rounds, best)  {:<26} | {:<26} |",
        "hand-written", "csv crate"
    );

    let (hand, hand_len) = best(|| write_hand(&rows).len());
    let (csv, csv_len) = best(|| write_csv(&rows).len());
    assert_eq!(write_hand(&rows), write_csv(&rows), "the same bytes");
    assert_eq!(hand_len, csv_len);
    line("write (flush buffer)", hand, csv, ROWS);

    let path =
        std::env::temp_dir().join(format!("tsusen-dayfile-bench-{}.csv", std::process::id()));
    let mut text = format!("{HEADER}\n").into_bytes();
    text.extend_from_slice(&write_hand(&rows));
    fs::write(&path, &text).expect("write the day file");
    let (hand, hand_rows) = best(|| read_hand(&path, days));
    let (csv, csv_rows) = best(|| read_csv(&path, days));
    assert_eq!(hand_rows, days * ROWS);
    assert_eq!(csv_rows, days * ROWS);
    line(
        &format!("read ({days} days, report load)"),
        hand,
        csv,
        days * ROWS,
    );
    let _ = fs::remove_file(&path);
}
