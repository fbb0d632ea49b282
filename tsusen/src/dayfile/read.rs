//! The one reader of day files, for the store and the report alike: it finds
//! a file's [`Format`] (its header, or its first row), parses each line, and
//! skips what is not a row, counting it and naming the first
//! [`NAMED_BAD_LINES`] of each read in a warning, the rest in one line. Lines
//! are split without copying, 1 MiB of the file at a time.

use std::{
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context as _, Result};

use super::{Format, Row, day_of_name};

/// The warning for a last line without its newline. On the newest day this is
/// usually the sensor mid-write, so callers may drop it there.
pub const INCOMPLETE_LAST_LINE: &str = "incomplete last line (no newline)";

/// Bad lines named one by one in each read of a file; the rest are counted.
pub const NAMED_BAD_LINES: u64 = 5;

/// Longest line read as a line; a row is under 100 bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// Most columns split out of a line; more means a bad line either way.
const MAX_COLUMNS: usize = 8;

/// A `YYYY-MM-DD.csv` file in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayFile {
    pub day: u16,
    pub path: PathBuf,
    /// Size and modification time when listed: a change means "read again".
    pub len: u64,
    pub modified: Option<SystemTime>,
}

/// What was skipped, one line per problem, each naming the file (and line).
#[derive(Clone, Debug, Default)]
pub struct Warnings {
    pub lines: Vec<String>,
}

impl Warnings {
    pub fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    /// Log every warning (once per read, by the caller's choice).
    pub fn log(&self) {
        for line in &self.lines {
            log::warn!("{line}");
        }
    }
}

/// The day files in `dir`, oldest first. Other entries are named in a warning
/// and never opened, except tsusen's own (`.tsusen*`), passed over quietly.
pub fn list_day_files(dir: &Path, warnings: &mut Warnings) -> Result<Vec<DayFile>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        // tsusen's own files (the out-dir lock, the shipper's cursors).
        if name.as_encoded_bytes().starts_with(b".tsusen") {
            continue;
        }
        let day = name
            .to_str()
            .and_then(|n| n.strip_suffix(".csv"))
            .and_then(day_of_name);
        let meta = entry.metadata();
        match (day, meta) {
            (Some(day), Ok(meta)) if meta.is_file() => files.push(DayFile {
                day,
                path,
                len: meta.len(),
                modified: meta.modified().ok(),
            }),
            _ => warnings.push(format!(
                "{}: skipped: not a day file (YYYY-MM-DD.csv)",
                path.display()
            )),
        }
    }
    files.sort_by_key(|f| f.day);
    Ok(files)
}

/// What a read does with a file whose first line is neither a header nor a
/// row (or is not text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Foreign {
    /// Skip the file with one warning: the report, which only reads.
    SkipFile,
    /// Skip the line as a bad one and read on: the store, which must know
    /// every row in a file it appends to (its own rows may follow such a
    /// line), or it would write them twice.
    SkipLine,
}

/// Counts of one read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub rows: u64,
    pub bad_lines: u64,
}

/// One read of a day file, from the start or from where an earlier read of
/// it stopped.
#[derive(Clone, Copy, Debug)]
pub struct Reading<'a> {
    /// The file, as warnings name it.
    pub path: &'a Path,
    /// Its format: `None` until a header or a first row says.
    pub format: Option<Format>,
    /// Lines before what this read is given; after it, the lines read.
    pub line_no: u64,
    pub foreign: Foreign,
}

/// Read a whole day file, calling `each` for every good row: the report's
/// read. Bad lines, an incomplete last line and foreign files become
/// warnings, never errors; only failing to open or read the file is an error.
pub fn read_day_file(
    path: &Path,
    warnings: &mut Warnings,
    each: impl FnMut(&Row),
) -> Result<Counts> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reading = Reading {
        path,
        format: None,
        line_no: 0,
        foreign: Foreign::SkipFile,
    };
    reading
        .read(file, warnings, each)
        .with_context(|| format!("cannot read {}", path.display()))
}

impl Reading<'_> {
    /// Read the lines of `input` (the file from `line_no` on), calling `each`
    /// for every row; what is skipped goes to `warnings`.
    pub fn read(
        &mut self,
        input: impl Read,
        warnings: &mut Warnings,
        mut each: impl FnMut(&Row),
    ) -> io::Result<Counts> {
        let Reading {
            path,
            ref mut format,
            foreign,
            ..
        } = *self;
        let mut counts = Counts::default();
        let mut protos = ProtoMemo::default();
        let bad = |counts: &mut Counts, warnings: &mut Warnings, line_no: u64, why: &str| {
            counts.bad_lines += 1;
            if counts.bad_lines <= NAMED_BAD_LINES {
                warnings.push(format!("{}:{line_no}: skipped line: {why}", path.display()));
            }
        };
        self.line_no = for_each_line(input, self.line_no, |line_no, line| {
            let (text, columns) = match line {
                Line::Text(text, columns) => (text, columns),
                Line::Incomplete => {
                    // The sensor may be mid-write: a line is whole only with
                    // its newline.
                    bad(&mut counts, warnings, line_no, INCOMPLETE_LAST_LINE);
                    return Flow::Stop;
                }
                Line::TooLong => {
                    let why = format!("longer than {MAX_LINE} bytes");
                    bad(&mut counts, warnings, line_no, &why);
                    return Flow::Next;
                }
                Line::NotUtf8 if format.is_none() && foreign == Foreign::SkipFile => {
                    warnings.push(format!("{}: skipped: not a text file", path.display()));
                    return Flow::Stop;
                }
                Line::NotUtf8 => {
                    bad(&mut counts, warnings, line_no, "not UTF-8");
                    return Flow::Next;
                }
            };
            if text.trim().is_empty() {
                return Flow::Next;
            }
            // A header again (files joined with `cat`) is no bad line.
            if let Some(header) = Format::of_header(text)
                && format.is_none_or(|f| f == header)
            {
                *format = Some(header);
                return Flow::Next;
            }
            let current = match *format {
                Some(current) => current,
                None => match Format::of_row(columns) {
                    Some(guess) => {
                        warnings.push(format!(
                            "{}: no header line; reading it as the {} format ({} columns)",
                            path.display(),
                            guess.name(),
                            columns.len()
                        ));
                        *format = Some(guess);
                        guess
                    }
                    None if foreign == Foreign::SkipFile => {
                        warnings.push(format!(
                            "{}: skipped: not a day file (first line is neither a header nor \
                             a row)",
                            path.display()
                        ));
                        return Flow::Stop;
                    }
                    None => {
                        bad(&mut counts, warnings, line_no, "neither a header nor a row");
                        return Flow::Next;
                    }
                },
            };
            if let Some(first) = columns.first_mut() {
                *first = protos.number(first);
            }
            match current.parse(columns) {
                Ok(row) => {
                    counts.rows += 1;
                    each(&row);
                }
                Err(err) => bad(&mut counts, warnings, line_no, &format!("{err:#}")),
            }
            Flow::Next
        })?;
        if counts.bad_lines > NAMED_BAD_LINES {
            warnings.push(format!(
                "{}: {} more bad lines skipped",
                path.display(),
                counts.bad_lines - NAMED_BAD_LINES
            ));
        }
        Ok(counts)
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
}

/// One line as [`for_each_line`] hands it over.
enum Line<'a, 'b> {
    /// The line without its newline (and `\r`), and its space-separated
    /// columns; `MAX_COLUMNS` of them when there are that many or more.
    Text(&'a str, &'b mut [&'a str]),
    NotUtf8,
    /// A line longer than [`MAX_LINE`].
    TooLong,
    /// A last line without a newline.
    Incomplete,
}

/// Call `each` for every line of `input` (numbered on from `line_no`),
/// reading 1 MiB at a time and never copying a line: one vectorised pass per
/// chunk finds newlines and spaces, and UTF-8 is checked once per chunk (per
/// line only if that fails). Returns the number of the last line.
fn for_each_line(
    mut input: impl Read,
    mut line_no: u64,
    mut each: impl FnMut(u64, Line<'_, '_>) -> Flow,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    // Inside a line longer than MAX_LINE, whose start was dropped.
    let mut too_long = false;
    loop {
        let n = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if filled > 0 || too_long {
                line_no += 1;
                each(line_no, Line::Incomplete);
            }
            return Ok(line_no);
        }
        filled += n;
        let Some(last_newline) = memchr::memrchr(b'\n', &buf[..filled]) else {
            if filled > MAX_LINE {
                too_long = true;
                filled = 0;
            }
            continue;
        };
        let mut from = 0;
        if too_long {
            // The rest of the long line ends at the first newline.
            from = memchr::memchr(b'\n', &buf[..filled]).expect("there is a last one") + 1;
            too_long = false;
            line_no += 1;
            if each(line_no, Line::TooLong) == Flow::Stop {
                return Ok(line_no);
            }
        }
        let whole = &buf[from..=last_newline];
        let flow = match std::str::from_utf8(whole) {
            Ok(text) => text_lines(text, &mut line_no, &mut each),
            Err(_) => mixed_lines(whole, &mut line_no, &mut each),
        };
        if flow == Flow::Stop {
            return Ok(line_no);
        }
        buf.copy_within(last_newline + 1..filled, 0);
        filled -= last_newline + 1;
        if filled > MAX_LINE {
            too_long = true;
            filled = 0;
        }
    }
}

/// Lines of valid text, each ending in a newline.
fn text_lines(
    text: &str,
    line_no: &mut u64,
    each: &mut impl FnMut(u64, Line<'_, '_>) -> Flow,
) -> Flow {
    let bytes = text.as_bytes();
    let (mut line_start, mut column_start) = (0, 0);
    let mut columns = [""; MAX_COLUMNS];
    let mut count = 0;
    for at in memchr::memchr2_iter(b' ', b'\n', bytes) {
        if bytes[at] == b' ' {
            if count < MAX_COLUMNS {
                columns[count] = &text[column_start..at];
                count += 1;
            }
            column_start = at + 1;
            continue;
        }
        let end = if at > line_start && bytes[at - 1] == b'\r' {
            at - 1
        } else {
            at
        };
        if count < MAX_COLUMNS {
            columns[count] = &text[column_start.min(end)..end];
            count += 1;
        }
        *line_no += 1;
        let line = if end - line_start > MAX_LINE {
            Line::TooLong
        } else {
            Line::Text(&text[line_start..end], &mut columns[..count])
        };
        if each(*line_no, line) == Flow::Stop {
            return Flow::Stop;
        }
        count = 0;
        line_start = at + 1;
        column_start = at + 1;
    }
    Flow::Next
}

/// Lines of which some are not UTF-8: checked one by one.
fn mixed_lines(
    bytes: &[u8],
    line_no: &mut u64,
    each: &mut impl FnMut(u64, Line<'_, '_>) -> Flow,
) -> Flow {
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let flow = if let Ok(text) = std::str::from_utf8(line) {
            text_lines(text, line_no, each)
        } else {
            *line_no += 1;
            each(*line_no, Line::NotUtf8)
        };
        if flow == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Next
}

/// Day files repeat a handful of protocol keywords millions of times; look
/// each up once with [`tsusen_common::proto::from_column`] and hand
/// [`Row::parse_columns`] its number, which it reads without a table scan.
#[derive(Default)]
struct ProtoMemo {
    seen: Vec<(String, &'static str)>,
}

impl ProtoMemo {
    fn number<'a>(&mut self, column: &'a str) -> &'a str {
        if let Some((_, n)) = self.seen.iter().find(|(k, _)| k == column) {
            return n;
        }
        let Some(proto) = tsusen_common::proto::from_column(column) else {
            return column; // let the row parser name the problem
        };
        let n = DECIMAL[usize::from(proto)];
        if self.seen.len() < 16 {
            self.seen.push((column.to_owned(), n));
        }
        n
    }
}

/// "0" to "255".
static DECIMAL: [&str; 256] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
    "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47", "48",
    "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63", "64",
    "65", "66", "67", "68", "69", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79", "80",
    "81", "82", "83", "84", "85", "86", "87", "88", "89", "90", "91", "92", "93", "94", "95", "96",
    "97", "98", "99", "100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "110",
    "111", "112", "113", "114", "115", "116", "117", "118", "119", "120", "121", "122", "123",
    "124", "125", "126", "127", "128", "129", "130", "131", "132", "133", "134", "135", "136",
    "137", "138", "139", "140", "141", "142", "143", "144", "145", "146", "147", "148", "149",
    "150", "151", "152", "153", "154", "155", "156", "157", "158", "159", "160", "161", "162",
    "163", "164", "165", "166", "167", "168", "169", "170", "171", "172", "173", "174", "175",
    "176", "177", "178", "179", "180", "181", "182", "183", "184", "185", "186", "187", "188",
    "189", "190", "191", "192", "193", "194", "195", "196", "197", "198", "199", "200", "201",
    "202", "203", "204", "205", "206", "207", "208", "209", "210", "211", "212", "213", "214",
    "215", "216", "217", "218", "219", "220", "221", "222", "223", "224", "225", "226", "227",
    "228", "229", "230", "231", "232", "233", "234", "235", "236", "237", "238", "239", "240",
    "241", "242", "243", "244", "245", "246", "247", "248", "249", "250", "251", "252", "253",
    "254", "255",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dayfile::{HEADER, ORIGINAL_FIRST_HEADER, ORIGINAL_LATER_HEADER};

    const ROW: &str = "TCP 23 198.51.100.1 192.0.2.1 1764000000";

    /// Read `text` as one read of a file: the rows, the counts and warnings.
    fn read(text: &[u8], reading: &mut Reading<'_>) -> (Vec<Row>, Counts, Vec<String>) {
        let mut rows = Vec::new();
        let mut warnings = Warnings::default();
        let counts = reading
            .read(text, &mut warnings, |r| rows.push(*r))
            .unwrap();
        (rows, counts, warnings.lines)
    }

    fn reading(foreign: Foreign) -> Reading<'static> {
        Reading {
            path: Path::new("d.csv"),
            format: None,
            line_no: 0,
            foreign,
        }
    }

    #[test]
    fn every_format_is_read_by_its_header() {
        let row: Row = ROW.parse().unwrap();
        for (header, line) in [
            (HEADER, ROW.to_owned()),
            (ORIGINAL_FIRST_HEADER, ROW.to_owned()),
            (
                ORIGINAL_LATER_HEADER,
                "TCP 23 192.0.2.1 198.51.100.1 1764000000 1764000100 7".to_owned(),
            ),
        ] {
            let mut r = reading(Foreign::SkipFile);
            let text = format!("{header}\n{line}\r\n\n");
            let (rows, counts, warnings) = read(text.as_bytes(), &mut r);
            assert_eq!(rows, [row], "{header}");
            assert_eq!(
                counts,
                Counts {
                    rows: 1,
                    bad_lines: 0
                }
            );
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(r.format, Format::of_header(header));
            assert_eq!(r.line_no, 3);
        }
    }

    #[test]
    fn five_bad_lines_are_named_and_the_rest_counted_in_one_line() {
        let mut text = format!("{HEADER}\n");
        for i in 0..8 {
            text = format!("{text}bad {i}\n{ROW}\n");
        }
        let (rows, counts, warnings) = read(text.as_bytes(), &mut reading(Foreign::SkipFile));
        assert_eq!(rows.len(), 8);
        assert_eq!(counts.bad_lines, 8);
        assert_eq!(warnings.len(), 6, "{warnings:?}");
        assert_eq!(
            warnings[0],
            "d.csv:2: skipped line: expected 5 columns, found 2"
        );
        assert!(
            warnings[4].starts_with("d.csv:10: skipped line"),
            "{warnings:?}"
        );
        assert_eq!(warnings[5], "d.csv: 3 more bad lines skipped");
    }

    #[test]
    fn a_foreign_first_line_skips_the_file_for_the_report_and_the_line_for_the_store() {
        let text = format!("hello world\n{ROW}\n");
        let (rows, _, warnings) = read(text.as_bytes(), &mut reading(Foreign::SkipFile));
        assert!(rows.is_empty());
        assert_eq!(
            warnings,
            ["d.csv: skipped: not a day file (first line is neither a header nor a row)"]
        );
        let mut store = reading(Foreign::SkipLine);
        let (rows, counts, warnings) = read(text.as_bytes(), &mut store);
        assert_eq!(rows.len(), 1);
        assert_eq!(counts.bad_lines, 1);
        assert_eq!(
            warnings[0],
            "d.csv:1: skipped line: neither a header nor a row"
        );
        assert!(warnings[1].contains("no header line"), "{warnings:?}");
        assert_eq!(store.format, Some(Format::Tsusen));
        // Not text at all.
        let binary = b"\xff\xfe\x00\n";
        let (_, _, warnings) = read(binary, &mut reading(Foreign::SkipFile));
        assert_eq!(warnings, ["d.csv: skipped: not a text file"]);
        let (_, counts, _) = read(binary, &mut reading(Foreign::SkipLine));
        assert_eq!(counts.bad_lines, 1);
    }

    #[test]
    fn a_read_goes_on_where_the_last_one_stopped() {
        let first = format!("{ORIGINAL_FIRST_HEADER}\n{ROW}\n");
        let mut r = reading(Foreign::SkipLine);
        read(first.as_bytes(), &mut r);
        assert_eq!((r.format, r.line_no), (Some(Format::OriginalFirst), 2));
        // The format carries over: a header of another format is a bad line
        // there, and lines are numbered on.
        let more = format!("{ORIGINAL_LATER_HEADER}\n{ORIGINAL_FIRST_HEADER}\n{ROW}\n");
        let (rows, counts, warnings) = read(more.as_bytes(), &mut r);
        assert_eq!(rows.len(), 1);
        assert_eq!(counts.bad_lines, 1);
        assert!(
            warnings[0].starts_with("d.csv:3: skipped line"),
            "{warnings:?}"
        );
        assert_eq!(r.line_no, 5);
    }

    #[test]
    fn a_line_too_long_is_one_bad_line_and_the_rows_after_it_are_read() {
        for long in [MAX_LINE + 1, 3 << 20] {
            let text = format!("{HEADER}\n{}\n{ROW}\n", "x".repeat(long));
            let mut r = reading(Foreign::SkipFile);
            let (rows, counts, warnings) = read(text.as_bytes(), &mut r);
            assert_eq!(rows.len(), 1, "{long}");
            assert_eq!(counts.bad_lines, 1);
            assert_eq!(
                warnings,
                [format!(
                    "d.csv:2: skipped line: longer than {MAX_LINE} bytes"
                )]
            );
            assert_eq!(r.line_no, 3);
        }
    }

    #[test]
    fn an_incomplete_last_line_is_named() {
        let text = format!("{HEADER}\n{ROW}\nTCP 23 198.51");
        let (rows, counts, warnings) = read(text.as_bytes(), &mut reading(Foreign::SkipFile));
        assert_eq!(rows.len(), 1);
        assert_eq!(counts.bad_lines, 1);
        assert_eq!(
            warnings,
            [format!("d.csv:3: skipped line: {INCOMPLETE_LAST_LINE}")]
        );
    }
}
