//! Log lines on stderr: env_logger's usual `[TIME LEVEL] message`, or,
//! when stderr is connected to the journal, each line prefixed with its
//! syslog priority (`<3>` err, `<4>` warning, `<6>` info, `<7>` debug) and
//! no timestamp of our own (journald stamps every entry itself).
//!
//! systemd tells a service its stderr goes to the journal with
//! `JOURNAL_STREAM=DEV:INODE`; as sd-daemon(3) advises, this is believed
//! only while stderr is still that stream (a child whose stderr was
//! redirected inherits the variable but not the journal).

use std::{
    io::{self, Write as _},
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    sync::OnceLock,
};

use log::Level;

/// syslog priority of the fatal error line and of usage errors.
const ERR: u8 = 3;

/// Set up the logger for this process (RUST_LOG filters, default `info`).
pub fn init() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format_target(false);
    if to_journal() {
        builder.format(|out, record| {
            let priority = priority(record.level());
            write_prefixed(out, priority, &record.args().to_string())
        });
    }
    builder.init();
}

/// Whether stderr is the journal stream systemd gave us.
pub fn to_journal() -> bool {
    static TO_JOURNAL: OnceLock<bool> = OnceLock::new();
    *TO_JOURNAL.get_or_init(|| {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
            return false;
        };
        match stderr_identity() {
            Some((my_dev, my_ino)) => dev.parse() == Ok(my_dev) && ino.parse() == Ok(my_ino),
            None => false,
        }
    })
}

/// Device and inode of stderr.
fn stderr_identity() -> Option<(u64, u64)> {
    let fd = io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The syslog priority of a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => ERR,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Write `text` with `<priority>` before each of its lines, so a message
/// that spans lines stays at its priority in the journal (blank lines would
/// only be empty entries there).
fn write_prefixed(out: &mut impl io::Write, priority: u8, text: &str) -> io::Result<()> {
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        writeln!(out, "<{priority}>{line}")?;
    }
    Ok(())
}

/// Print the error a command ends with: `tsusen: error: ...` on one line,
/// at priority err under the journal.
pub fn fatal(err: &anyhow::Error) {
    // The chain of causes, joined: one line a person can act on.
    print_error(&format!("tsusen: error: {err:#}"));
}

/// Print a usage error as clap renders it (the error, its tips, the usage
/// line), its first line as `tsusen: error: ...` like every other error.
pub fn usage_error(err: &clap::Error) {
    let text = err.render().to_string();
    print_error(&format!("tsusen: {}", text.trim_end()));
}

fn print_error(text: &str) {
    let mut stderr = io::stderr().lock();
    let _ = if to_journal() {
        write_prefixed(&mut stderr, ERR, text)
    } else {
        writeln!(stderr, "{text}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_message_carries_its_priority() {
        let mut out = Vec::new();
        write_prefixed(&mut out, priority(Level::Warn), "one\n\ntwo").unwrap();
        assert_eq!(out, b"<4>one\n<4>two\n");
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
    }
}
