//! tsusen: who is scanning your hosts, on which ports, and when that changes.
//!
//! The data path, one module per step:
//! [`capture`] (the XDP program and its maps) -> [`drain`] (kernel map to rows)
//! -> [`store`] (daily CSV files) -> [`report`] (trends and spikes).
//! [`dayfile`] is the format of those files, read by the store and the report.
//! [`replay`] feeds pcap files through the same rules on the host.

pub mod capture;
pub mod check;
pub mod cli;
pub mod clickhouse;
pub mod config;
pub mod dayfile;
pub mod drain;
pub mod exit;
pub mod http;
pub mod lock;
pub mod logging;
pub mod named_file;
pub mod replay;
pub mod report;
pub mod run;
pub mod ship;
pub mod store;
pub mod sys;
pub mod tables;
/// The test harness: only for this package's tests and benches (the
/// `test-helpers` feature, which its dev-dependencies turn on).
#[cfg(any(test, feature = "test-helpers"))]
#[doc(hidden)]
pub mod testing;
