//! How `tsusen` exits: 0 on success, 2 when what the user told us is wrong
//! (the command line, the `--config` file, an interface that does not
//! exist, missing privileges, an out-dir or pin directory it may not use),
//! 1 for a failure at run time (an interface that vanished, a full disk, a
//! port in use).
//!
//! The line matters under systemd: `RestartPreventExitStatus=2` stops a
//! restart loop that cannot fix a misconfiguration, while a transient
//! failure (1) is worth a restart. Code that finds a mistake in the user's
//! input marks its error with [`config`] (or [`ResultExt::config_error`]);
//! `main` asks [`code`]. The mark survives any `.context(...)` added later;
//! inside a step marked as a whole, [`runtime`] marks the exception (the
//! mark nearest the cause decides).

use std::{fmt, io, process::ExitCode};

/// Exit status of a usage or configuration error.
pub const CONFIG: u8 = 2;
/// Exit status of a failure at run time.
pub const RUNTIME: u8 = 1;

/// An error caused by what the user told us, not by the system. It shows
/// exactly as the error it wraps (message and causes).
pub struct ConfigError(anyhow::Error);

/// An error that a restart may cure, inside a step whose errors are
/// otherwise configuration errors (no default route yet at boot).
pub struct RuntimeError(anyhow::Error);

/// Display as the wrapped error at this level (its causes follow through
/// `source`), so a mark changes no text.
macro_rules! transparent {
    ($marker:ident) => {
        impl fmt::Display for $marker {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $marker {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::error::Error for $marker {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.0.source()
            }
        }
    };
}

transparent!(ConfigError);
transparent!(RuntimeError);

/// Mark `err` as a usage or configuration error (exit status 2).
pub fn config(err: impl Into<anyhow::Error>) -> anyhow::Error {
    let err = err.into();
    if marked(&err) {
        return err;
    }
    anyhow::Error::new(ConfigError(err))
}

/// Whether `err` carries a mark already: the mark nearest the cause
/// decides, so a later one would change nothing (and a marker wrapping a
/// marker would hide the inner one from the chain).
fn marked(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.is::<ConfigError>() || cause.is::<RuntimeError>())
}

/// Mark `err` as a run-time error (exit status 1) even inside a step marked
/// as configuration: the mark nearest the cause decides.
pub fn runtime(err: impl Into<anyhow::Error>) -> anyhow::Error {
    let err = err.into();
    if marked(&err) {
        return err;
    }
    anyhow::Error::new(RuntimeError(err))
}

/// Mark `err` as a configuration error when it comes from the file system
/// refusing for good (permission denied, read-only, not a directory), so
/// a restart cannot help; otherwise (a full disk, an I/O error) leave it a
/// run-time error.
pub fn config_if_refused(err: anyhow::Error) -> anyhow::Error {
    let refused = err.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::PermissionDenied
                    | io::ErrorKind::ReadOnlyFilesystem
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::IsADirectory
                    | io::ErrorKind::AlreadyExists
                    | io::ErrorKind::InvalidFilename
            )
        })
    });
    if refused { config(err) } else { err }
}

/// Whether `err` is marked as a configuration error: of the marks in its
/// chain, the one nearest the cause decides (the code that found the
/// problem knows best); no mark is a run-time error.
pub fn is_config(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| {
            if cause.is::<ConfigError>() {
                Some(true)
            } else if cause.is::<RuntimeError>() {
                Some(false)
            } else {
                None
            }
        })
        .last()
        .unwrap_or(false)
}

/// The exit status for `err`: [`CONFIG`] or [`RUNTIME`].
pub fn code(err: &anyhow::Error) -> ExitCode {
    ExitCode::from(if is_config(err) { CONFIG } else { RUNTIME })
}

/// `.config_error()` on any result: mark its error as a configuration error.
pub trait ResultExt<T> {
    fn config_error(self) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn config_error(self) -> anyhow::Result<T> {
        self.map_err(config)
    }
}

/// `bail!` for configuration errors: return a marked error made from a
/// format string.
#[macro_export]
macro_rules! config_bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::exit::config(::anyhow::anyhow!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use anyhow::{Context as _, anyhow};

    use super::*;

    fn io_err(kind: io::ErrorKind) -> anyhow::Error {
        anyhow::Error::new(io::Error::from(kind)).context("cannot create out-dir /x")
    }

    #[test]
    fn the_mark_survives_context_and_changes_no_text() {
        let inner = Err::<(), _>(io::Error::from(io::ErrorKind::NotFound))
            .context("cannot read config file /etc/tsusen/tsusen.toml");
        let plain = format!("{:#}", inner.as_ref().unwrap_err());
        let marked = inner.config_error().context("starting").unwrap_err();
        assert!(is_config(&marked));
        assert_eq!(format!("{marked:#}"), format!("starting: {plain}"));
        assert!(!is_config(&anyhow!("attach failed")));
    }

    #[test]
    fn only_a_lasting_refusal_of_the_file_system_is_a_config_error() {
        assert!(is_config(&config_if_refused(io_err(
            io::ErrorKind::PermissionDenied
        ))));
        assert!(is_config(&config_if_refused(io_err(
            io::ErrorKind::NotADirectory
        ))));
        assert!(!is_config(&config_if_refused(io_err(
            io::ErrorKind::StorageFull
        ))));
        assert!(!is_config(&config_if_refused(anyhow!("no io error"))));
    }

    #[test]
    fn the_mark_nearest_the_cause_decides() {
        let err = config(runtime(anyhow!("no default route")).context("settings"));
        assert!(!is_config(&err));
        assert_eq!(format!("{err:#}"), "settings: no default route");
        assert!(is_config(&runtime(config(anyhow!("bad key")))));
    }

    #[test]
    fn config_bail_marks() {
        fn f() -> anyhow::Result<()> {
            config_bail!("map-size {} is below the 1024 minimum", 12);
        }
        let err = f().unwrap_err();
        assert!(is_config(&err));
        assert_eq!(err.to_string(), "map-size 12 is below the 1024 minimum");
    }
}
