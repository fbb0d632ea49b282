//! The store against day files on disk: each test is one scenario on its own
//! temp out-dir (see [`Fixture`]).

use super::*;
use crate::dayfile::{HEADER, ORIGINAL_FIRST_HEADER, ORIGINAL_LATER_HEADER};

const T0: i64 = 1_764_000_000; // 2025-11-24 16:00:00 UTC
/// T0's day file, and the next day's.
const DAY: &str = "2025-11-24.csv";
const NEXT_DAY: &str = "2025-11-25.csv";

fn row(text: &str) -> Row {
    text.parse().unwrap()
}

/// A TCP row's line in our format: from 198.51.100.1 to 192.0.2.1, port `port`.
fn line(port: u16, ts: i64) -> String {
    format!("TCP {port} 198.51.100.1 192.0.2.1 {ts}")
}

fn tcp(port: u16, ts: i64) -> Row {
    row(&line(port, ts))
}

/// One TCP row a port, all at `ts`.
fn rows(ports: std::ops::RangeInclusive<u16>, ts: i64) -> Vec<Row> {
    ports.map(|port| tcp(port, ts)).collect()
}

fn record_all(store: &mut DayStore, rows: &[Row]) {
    for row in rows {
        store.record(*row).unwrap();
    }
}

/// The rows the report reads in a day file, which it must read without
/// a warning.
fn rows_the_report_reads(path: &Path) -> usize {
    let mut warnings = crate::dayfile::Warnings::default();
    let mut rows = 0;
    crate::dayfile::read_day_file(path, &mut warnings, |_| rows += 1).unwrap();
    assert!(warnings.lines.is_empty(), "{:?}", warnings.lines);
    rows
}

/// A fresh out-dir's name (not created).
fn tmp() -> PathBuf {
    let dir = std::env::temp_dir().join(crate::testing::unique_name("store"));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// A store on its own temp out-dir; the dir is removed when the test ends,
/// pass or fail.
struct Fixture {
    dir: PathBuf,
    store: DayStore,
}

impl Fixture {
    /// An empty out-dir, which the store creates.
    fn new() -> Self {
        Self::with_max_pending(1000)
    }

    fn with_max_pending(max_pending: usize) -> Self {
        let dir = tmp();
        let store = DayStore::open(&dir, max_pending).unwrap();
        Fixture { dir, store }
    }

    /// An out-dir where T0's day file holds `contents` before the store opens.
    fn with_day_file(contents: impl AsRef<[u8]>) -> Self {
        let dir = tmp();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(DAY), contents).unwrap();
        let store = DayStore::open(&dir, 1000).unwrap();
        Fixture { dir, store }
    }

    /// Another store on the same out-dir: a second writer.
    fn another_store(&self) -> DayStore {
        DayStore::open(&self.dir, 1000).unwrap()
    }

    /// Stop this store and start a new one on the same out-dir.
    fn restart(&mut self) {
        self.store = self.another_store();
    }

    /// T0's day file.
    fn day_file(&self) -> PathBuf {
        self.dir.join(DAY)
    }

    /// T0's day file, opened as another program would to change it behind
    /// the store's back.
    fn open_day_file(&self, options: &fs::OpenOptions) -> File {
        options.open(self.day_file()).unwrap()
    }

    fn text(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap()
    }

    /// Record one row: whether it was queued.
    fn record(&mut self, row: Row) -> bool {
        self.store.record(row).unwrap()
    }

    fn record_all(&mut self, rows: &[Row]) {
        record_all(&mut self.store, rows);
    }

    /// Record the rows and flush: the rows written.
    fn write(&mut self, rows: &[Row]) -> usize {
        self.record_all(rows);
        self.store.flush().unwrap()
    }

    /// T0's day file is our header and these lines.
    fn expect_day_file(&self, lines: &[String]) {
        let mut expected = format!("{HEADER}\n");
        for line in lines {
            expected.push_str(line);
            expected.push('\n');
        }
        assert_eq!(self.text(DAY), expected);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn writes_header_then_rows_once_per_day_sorted_by_time() {
    let mut fx = Fixture::new();
    assert!(fx.record(tcp(22, T0 + 5)));
    assert!(fx.record(row(&format!("UDP 53 198.51.100.1 192.0.2.1 {T0}"))));
    // Same tuple later that day: not a new row.
    assert!(!fx.record(tcp(22, T0 + 60)));
    // Same tuple the next day: a row in the next day's file.
    assert!(fx.record(tcp(22, T0 + 86_400)));
    assert_eq!(fx.store.flush().unwrap(), 3);
    fx.expect_day_file(&[
        format!("UDP 53 198.51.100.1 192.0.2.1 {T0}"),
        line(22, T0 + 5),
    ]);
    assert_eq!(fx.text(NEXT_DAY).lines().count(), 2);
}

#[test]
fn an_append_of_many_pieces_is_whole_in_order_and_known_after_a_restart() {
    // About 2.5 MB of rows: three writes of a megabyte or less.
    let mut fx = Fixture::new();
    let all: Vec<Row> = (0..60_000u32)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            row(&format!(
                "TCP 443 198.18.{a}.{b} 192.0.2.{c} {}",
                T0 + 59 - i64::from(c % 60)
            ))
        })
        .collect();
    record_all(&mut fx.store, &all);
    assert_eq!(fx.store.flush().unwrap(), all.len());
    let mut sorted = all.clone();
    sorted.sort_unstable_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.cmp(b)));
    let lines: Vec<String> = sorted.iter().map(ToString::to_string).collect();
    fx.expect_day_file(&lines);
    fx.restart();
    assert!(!fx.record(all[12_345]), "every row was read back");
    assert_eq!(fx.store.tuples(all[0].day()).unwrap(), all.len());
}

#[test]
fn a_restart_continues_the_file_without_duplicates() {
    let mut fx = Fixture::new();
    fx.write(&[tcp(22, T0)]);
    fx.restart();
    assert!(!fx.record(tcp(22, T0 + 9)));
    assert!(fx.record(tcp(23, T0 + 9)));
    fx.store.flush().unwrap();
    let text = fx.text(DAY);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(text.matches(HEADER).count(), 1);
}

#[test]
fn a_torn_last_line_is_cut_and_its_tuple_written_again() {
    let mut fx = Fixture::with_day_file(format!("{HEADER}\n{}\nTCP 23 198.51.1", line(22, T0)));
    assert!(!fx.record(tcp(22, T0)));
    assert!(fx.record(tcp(23, T0)));
    fx.store.flush().unwrap();
    assert_eq!(fx.store.stats.repaired_lines, 1);
    fx.expect_day_file(&[line(22, T0), line(23, T0)]);
}

#[test]
fn foreign_lines_are_skipped_not_fatal() {
    let mut fx = Fixture::with_day_file(format!("{HEADER}\nnot a row\n{}\n", line(22, T0)));
    assert!(!fx.record(tcp(22, T0)));
}

#[test]
fn max_pending_caps_nothing_while_writes_succeed() {
    let mut fx = Fixture::with_max_pending(2);
    fx.record_all(&rows(1..=5, T0));
    assert_eq!(fx.store.pending(), 5);
    assert_eq!(fx.store.flush().unwrap(), 5);
    assert_eq!(fx.store.stats.pending_dropped, 0);
}

#[test]
fn max_pending_caps_what_waits_for_a_failing_file() {
    let mut fx = Fixture::with_max_pending(2);
    let path = fx.day_file();
    fx.record_all(&rows(1..=2, T0));
    // Loaded (no file yet), then a directory takes the file's place.
    fs::create_dir(&path).unwrap();
    assert!(fx.store.flush().is_err());
    assert_eq!(fx.store.stats.write_errors, 1);
    assert_eq!(fx.store.blocked_days(), 1);
    fx.record_all(&rows(3..=5, T0));
    assert_eq!(fx.store.pending(), 2);
    assert_eq!(fx.store.stats.pending_dropped, 3);
    for row in rows(1..=5, T0) {
        assert!(!fx.store.is_written(&row.key()), "{row}: not on disk");
    }
    // The file can be written again: the capped rows are queued when
    // drained again.
    fs::remove_dir(&path).unwrap();
    assert_eq!(fx.store.flush().unwrap(), 2);
    assert_eq!(fx.write(&rows(1..=5, T0)), 3);
    for row in rows(1..=5, T0) {
        assert!(fx.store.is_written(&row.key()), "{row}: on disk");
    }
    assert_eq!(fx.store.blocked_days(), 0);
    assert_eq!(fx.text(DAY).lines().count(), 6);
}

#[test]
fn a_line_that_is_not_utf8_is_skipped_and_counted() {
    let mut text = format!("{HEADER}\n{}\n", line(1, T0)).into_bytes();
    text.extend_from_slice(b"TCP 2 198.51.100.1 192.0.2.1 \xff\xfe\n");
    text.extend_from_slice(format!("{}\n", line(3, T0)).as_bytes());
    let mut fx = Fixture::with_day_file(&text);
    fx.record_all(&rows(1..=4, T0));
    assert_eq!(fx.store.stats.bad_lines, 1);
    assert_eq!(fx.store.flush().unwrap(), 2, "ports 2 and 4");
    let after = fs::read(fx.day_file()).unwrap();
    assert_eq!(after[..text.len()], text[..], "nothing before is touched");
    assert_eq!(memchr::memchr_iter(b'\n', &after).count(), 6);
}

#[test]
fn thousands_of_bad_lines_are_counted_and_never_fatal() {
    let garbage = "garbage line\n".repeat(20_000);
    let mut fx = Fixture::with_day_file(format!("{HEADER}\n{garbage}"));
    assert_eq!(fx.write(&rows(1..=3, T0)), 3);
    assert_eq!(fx.store.stats.bad_lines, 20_000);
}

#[test]
fn an_unreadable_day_blocks_only_itself() {
    let mut fx = Fixture::new();
    let bad = fx.day_file();
    fs::create_dir(&bad).unwrap();
    let today = rows(1..=3, T0);
    let tomorrow = rows(1..=3, T0 + 86_400);
    fx.record_all(&today);
    fx.record_all(&tomorrow);
    assert!(fx.store.contains(&today[0].key()).is_err());
    assert_eq!(fx.store.flush().unwrap(), 3, "the next day is written");
    assert_eq!(fx.store.blocked_days(), 1);
    for row in &today {
        assert!(!fx.store.is_written(&row.key()), "{row}: kept for later");
    }
    for row in &tomorrow {
        assert!(fx.store.is_written(&row.key()), "{row}: on disk");
    }
    let problems = fx.store.problems().join("\n");
    assert!(problems.contains("a directory"), "{problems}");
    // Fixed: the next drain's rows go through.
    fs::remove_dir(&bad).unwrap();
    assert_eq!(fx.write(&today), 3);
    assert_eq!(fx.store.blocked_days(), 0);
    assert_eq!(fx.text(DAY).lines().count(), 4);
}

#[test]
fn an_immutable_file_is_read_and_its_rows_wait() {
    if !crate::testing::is_root() || !crate::testing::have_program("chattr") {
        crate::testing::skip(
            "an_immutable_file_is_read_and_its_rows_wait",
            "needs root and chattr",
        );
        return;
    }
    let mut fx = Fixture::with_day_file(format!("{HEADER}\n{}\n", line(1, T0)));
    let path = fx.day_file();
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+i") {
        // Not every filesystem has the flag (tmpfs before 6.0).
        eprintln!("SKIPPED an_immutable_file_is_read_and_its_rows_wait: no chattr +i here");
        return;
    }
    fx.record_all(&rows(1..=3, T0));
    let failed = fx.store.flush();
    assert!(chattr("-i"));
    assert_eq!(fx.store.pending(), 2, "port 1 was read from the file");
    assert!(failed.is_err());
    assert!(fx.store.is_written(&tcp(1, T0).key()));
    assert!(!fx.store.is_written(&tcp(2, T0).key()));
    assert_eq!(fx.store.flush().unwrap(), 2);
    assert_eq!(fx.text(DAY).lines().count(), 4);
}

#[test]
fn a_fifo_in_place_of_a_day_file_blocks_without_hanging() {
    let mut fx = Fixture::new();
    let c_path = std::ffi::CString::new(fx.day_file().to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    assert_eq!(fx.write(&rows(1..=2, T0)), 0);
    assert!(
        fx.store.problems()[0].contains("a FIFO"),
        "{:?}",
        fx.store.problems()
    );
    assert!(!fx.store.is_written(&tcp(1, T0).key()));
}

#[test]
fn another_writers_rows_are_kept_and_not_written_twice() {
    // The fixture's store is the first writer.
    let mut fx = Fixture::new();
    let mut second = fx.another_store();
    fx.write(&rows(1..=3, T0));
    // The second loads the file now, then the first writes more, some
    // of them tuples the second has waiting too.
    record_all(&mut second, &rows(3..=6, T0 + 1));
    fx.write(&rows(4..=5, T0 + 2));
    second.flush().unwrap();
    fx.write(&[tcp(7, T0 + 3)]);
    let text = fx.text(DAY);
    let ports: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(ports, ["1", "2", "3", "4", "5", "6", "7"], "{text}");
    assert_eq!(text.matches(HEADER).count(), 1);
}

#[test]
fn a_moved_or_deleted_file_is_started_anew_with_a_header() {
    let mut fx = Fixture::new();
    fx.write(&rows(1..=2, T0));
    let moved = fx.dir.join("moved.csv");
    fs::rename(fx.day_file(), &moved).unwrap();
    let before = fs::read(&moved).unwrap();
    assert_eq!(fx.write(&rows(1..=3, T0)), 1);
    assert_eq!(
        fs::read(&moved).unwrap(),
        before,
        "the moved file is left alone"
    );
    fx.expect_day_file(&[line(3, T0)]);
    fs::remove_file(fx.day_file()).unwrap();
    fx.write(&[tcp(4, T0)]);
    fx.expect_day_file(&[line(4, T0)]);
}

#[test]
fn a_file_cut_by_someone_else_is_not_refilled() {
    let mut fx = Fixture::new();
    fx.write(&rows(1..=2, T0));
    fx.open_day_file(fs::OpenOptions::new().write(true))
        .set_len(0)
        .unwrap();
    fx.write(&[tcp(3, T0)]);
    fx.expect_day_file(&[line(3, T0)]);
}

#[test]
fn another_writers_unfinished_line_is_ended_not_cut() {
    let mut fx = Fixture::new();
    fx.write(&[tcp(1, T0)]);
    fx.open_day_file(fs::OpenOptions::new().append(true))
        .write_all(b"TCP 9 198.51")
        .unwrap();
    fx.write(&[tcp(2, T0)]);
    fx.expect_day_file(&[line(1, T0), "TCP 9 198.51".to_owned(), line(2, T0)]);
}

#[test]
fn an_original_7_column_file_is_appended_to_in_its_own_format() {
    // The original's rows: destination before source.
    let mut fx = Fixture::with_day_file(format!(
        "{ORIGINAL_LATER_HEADER}\nTCP 1 192.0.2.1 198.51.100.1 {T0} {} 4\n",
        T0 + 30
    ));
    fx.record_all(&rows(1..=2, T0 + 5));
    fx.record(row(&format!("ICMP - 198.51.100.1 192.0.2.1 {}", T0 + 6)));
    assert_eq!(
        fx.store.flush().unwrap(),
        2,
        "port 1 was in the file already"
    );
    assert_eq!(
        fx.text(DAY),
        format!(
            "{ORIGINAL_LATER_HEADER}\nTCP 1 192.0.2.1 198.51.100.1 {T0} {} 4\n\
             TCP 2 192.0.2.1 198.51.100.1 {t} {t} 1\nICMP - 192.0.2.1 198.51.100.1 {u} {u} 1\n",
            T0 + 30,
            t = T0 + 5,
            u = T0 + 6,
        )
    );
    // The report reads every row of it.
    assert_eq!(rows_the_report_reads(&fx.day_file()), 3);
}

#[test]
fn a_file_is_continued_in_its_own_rows_after_a_first_line_not_ours() {
    // The original's first header (ending in `sec`; its rows are ours),
    // and a foreign line: the rows after either are known, not written
    // twice, and new rows follow in the same columns.
    for (first, bad_lines) in [(ORIGINAL_FIRST_HEADER, 0), ("something else", 1)] {
        let before = format!("{first}\n{}\n", line(1, T0));
        let mut fx = Fixture::with_day_file(&before);
        assert_eq!(
            fx.write(&rows(1..=2, T0 + 5)),
            1,
            "{first}: port 1 was there"
        );
        assert_eq!(fx.store.stats.bad_lines, bad_lines, "{first}");
        assert_eq!(fx.text(DAY), format!("{before}{}\n", line(2, T0 + 5)));
        if first == ORIGINAL_FIRST_HEADER {
            assert_eq!(rows_the_report_reads(&fx.day_file()), 2);
        }
    }
}

#[test]
fn an_unwritable_out_dir_is_refused_up_front() {
    let Err(err) = DayStore::open(Path::new("/proc/tsusen-nope"), 10) else {
        panic!("opened an out-dir under /proc");
    };
    assert!(
        format!("{err:#}").contains("out-dir /proc/tsusen-nope"),
        "{err:#}"
    );
}

#[test]
fn after_reopen_a_file_moved_away_starts_afresh_and_pending_rows_stay() {
    let mut fx = Fixture::new();
    fx.write(&[tcp(22, T0)]);
    // Waiting when the file is rotated: written to the new file.
    fx.record(tcp(23, T0 + 1));
    fs::rename(fx.day_file(), fx.dir.join("2025-11-24.csv.1")).unwrap();
    fx.store.reopen();
    assert_eq!(fx.store.pending(), 1);
    fx.record(tcp(24, T0 + 2));
    assert_eq!(fx.store.flush().unwrap(), 2);
    fx.expect_day_file(&[line(23, T0 + 1), line(24, T0 + 2)]);
    // A reopen of a file left in place changes nothing: no duplicates.
    fx.store.reopen();
    assert!(!fx.record(tcp(24, T0 + 3)));
}
