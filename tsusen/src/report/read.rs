//! Reading day files: ours (`proto dst_port src_ip dst_ip timestamp`) and the
//! original tsusen's later format (`proto dst_port dst_ip src_ip first_seen
//! last_seen count`). Rows are parsed by [`Row::parse_columns`]; this module
//! only finds files, splits lines without allocating, and reports what it skips.

use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context as _, Result};

use crate::store::row::{HEADER, Row, day_from_name, day_name};

pub use crate::store::row::ORIGINAL_HEADER;

/// The warning for a last line without its newline. On the newest day this is
/// usually the sensor mid-write, so callers may drop it there.
pub const INCOMPLETE_LAST_LINE: &str = "incomplete last line (no newline)";

/// Bad lines named one by one per file; the rest are only counted.
const NAMED_BAD_LINES: u64 = 5;

/// A `YYYY-MM-DD.csv` file in the report's directory.
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
/// and never opened.
pub fn list_day_files(dir: &Path, warnings: &mut Warnings) -> Result<Vec<DayFile>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let day = name
            .to_str()
            .and_then(|n| n.strip_suffix(".csv"))
            // Only the canonical spelling, so one day has exactly one file.
            .and_then(|stem| day_from_name(stem).filter(|&d| day_name(d) == stem));
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

/// Which columns a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `proto dst_port src_ip dst_ip timestamp` (ours, and the original's first format).
    Tsusen,
    /// `proto dst_port dst_ip src_ip first_seen last_seen count`.
    Original,
}

/// Counts for one file read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub rows: u64,
    pub bad_lines: u64,
}

/// Read one day file, calling `each` for every good row. Bad lines, an
/// incomplete last line and foreign files become warnings, never errors; only
/// failing to open or read the file is an error.
pub fn read_day_file(
    path: &Path,
    warnings: &mut Warnings,
    mut each: impl FnMut(&Row),
) -> Result<FileStats> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut stats = FileStats::default();
    let mut format = None;
    let mut protos = ProtoMemo::default();
    let bad = |stats: &mut FileStats, warnings: &mut Warnings, line_no: u64, why: &str| {
        stats.bad_lines += 1;
        if stats.bad_lines <= NAMED_BAD_LINES {
            warnings.push(format!("{}:{line_no}: skipped line: {why}", path.display()));
        }
    };
    for_each_line(&mut file, |line_no, line| {
        let (line, columns) = match line {
            Line::Text(line, columns) => (line, columns),
            Line::Incomplete => {
                // The sensor may be mid-write: a line is whole only with its newline.
                bad(&mut stats, warnings, line_no, INCOMPLETE_LAST_LINE);
                return Flow::Stop;
            }
            Line::NotUtf8 if format.is_none() => {
                warnings.push(format!("{}: skipped: not a text file", path.display()));
                return Flow::Stop;
            }
            Line::NotUtf8 => {
                bad(&mut stats, warnings, line_no, "not UTF-8");
                return Flow::Next;
            }
        };
        if line.trim().is_empty() {
            return Flow::Next;
        }
        let count = columns.len();
        let format = match format {
            Some(f) => f,
            None if line == HEADER => {
                format = Some(Format::Tsusen);
                return Flow::Next;
            }
            None if line == ORIGINAL_HEADER => {
                format = Some(Format::Original);
                return Flow::Next;
            }
            None => {
                // No header: guess by column count, and only if the line is a row.
                let guess = match count {
                    5 => Some(Format::Tsusen),
                    7 => Some(Format::Original),
                    _ => None,
                };
                let Some(guess) = guess.filter(|&g| parse(g, columns).is_ok()) else {
                    warnings.push(format!(
                        "{}: skipped: not a day file (first line is neither a header nor a row)",
                        path.display()
                    ));
                    return Flow::Stop;
                };
                warnings.push(format!(
                    "{}: no header line; reading it as the {} format ({count} columns)",
                    path.display(),
                    match guess {
                        Format::Tsusen => "tsusen",
                        Format::Original => "original tsusen",
                    }
                ));
                format = Some(guess);
                guess
            }
        };
        if let Some(first) = columns.first_mut() {
            *first = protos.number(first);
        }
        match parse(format, columns) {
            Ok(row) => {
                stats.rows += 1;
                each(&row);
            }
            Err(err) => bad(&mut stats, warnings, line_no, &format!("{err:#}")),
        }
        Flow::Next
    })
    .with_context(|| format!("cannot read {}", path.display()))?;
    if stats.bad_lines > NAMED_BAD_LINES {
        warnings.push(format!(
            "{}: {} more bad lines skipped",
            path.display(),
            stats.bad_lines - NAMED_BAD_LINES
        ));
    }
    Ok(stats)
}

#[derive(PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
}

/// Longest line accepted; a day-file line is under 100 bytes.
const MAX_LINE: usize = 64 * 1024;
/// Most columns split out of a line; more means a bad line either way.
const MAX_COLUMNS: usize = 8;

/// One line as [`for_each_line`] hands it over.
enum Line<'a, 'b> {
    /// The line without its newline (and `\r`), and its space-separated
    /// columns; `MAX_COLUMNS` of them when there are that many or more.
    Text(&'a str, &'b mut [&'a str]),
    NotUtf8,
    /// A last line without a newline (or one over [`MAX_LINE`]).
    Incomplete,
}

/// Call `each` for every line of `file`, reading 1 MiB at a time and never
/// copying a line: one vectorised pass per chunk finds newlines and spaces,
/// and UTF-8 is checked once per chunk (per line only if that fails).
fn for_each_line(
    file: &mut impl Read,
    mut each: impl FnMut(u64, Line<'_, '_>) -> Flow,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut filled, mut line_no) = (0, 0u64);
    loop {
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if filled > 0 {
                each(line_no + 1, Line::Incomplete);
            }
            return Ok(());
        }
        filled += n;
        let Some(last_newline) = memchr::memrchr(b'\n', &buf[..filled]) else {
            if filled > MAX_LINE {
                each(line_no + 1, Line::Incomplete);
                return Ok(());
            }
            continue;
        };
        let whole = &buf[..=last_newline];
        let flow = match std::str::from_utf8(whole) {
            Ok(text) => text_lines(text, &mut line_no, &mut each),
            Err(_) => mixed_lines(whole, &mut line_no, &mut each),
        };
        if flow == Flow::Stop {
            return Ok(());
        }
        buf.copy_within(last_newline + 1..filled, 0);
        filled -= last_newline + 1;
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
        let line = Line::Text(&text[line_start..end], &mut columns[..count]);
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

fn parse(format: Format, c: &[&str]) -> Result<Row> {
    match format {
        Format::Tsusen => Row::parse_columns(c),
        Format::Original => crate::store::row::Format::Original.parse(c),
    }
}
