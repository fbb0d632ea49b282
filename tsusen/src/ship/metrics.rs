//! The shipper's metrics, in `run`'s `--metrics` registry: rows shipped,
//! rows behind, the last successful ship, and errors by cause.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::clickhouse::{Cause, Failovers};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

/// Handles on the metrics (clones share the values).
#[derive(Clone, Debug, Default)]
pub struct ShipMetrics {
    pub rows_shipped: Counter,
    pub rows_behind: Gauge,
    pub last_success: Gauge,
    pub errors: Family<CauseLabel, Counter>,
    pub cursor_resets: Counter,
    /// The client's: requests moved on from a replica to the next.
    pub failovers: Failovers,
}

impl ShipMetrics {
    /// Register them (under the registry's `tsusen_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ship_rows",
            "Rows ClickHouse acknowledged (a batch sent again after a crash counts again)",
            self.rows_shipped.clone(),
        );
        registry.register(
            "ship_rows_behind",
            "Rows in the day files not shipped yet (as of the last look at them)",
            self.rows_behind.clone(),
        );
        registry.register_with_unit(
            "ship_last_success_timestamp",
            "Unix time ClickHouse last acknowledged a batch, or found nothing to ship",
            Unit::Seconds,
            self.last_success.clone(),
        );
        registry.register(
            "ship_errors",
            "Failed requests to ClickHouse, by cause (unreachable, tls, auth, unknown_table, schema, unknown_setting, unhealthy, server)",
            self.errors.clone(),
        );
        registry.register(
            "ship_cursor_resets",
            "Day files found truncated or replaced under the shipper (shipped again from their start)",
            self.cursor_resets.clone(),
        );
        registry.register(
            "ship_failovers",
            "Requests moved on from a --clickhouse replica (url) to the next: it could not be reached or said it cannot take rows",
            self.failovers.clone(),
        );
        // Every cause from the start, so a rate() has a series before the first error.
        for cause in Cause::ALL {
            let _ = self.errors.get_or_create(&CauseLabel {
                cause: cause.label(),
            });
        }
    }

    pub fn error(&self, cause: Cause) {
        self.errors
            .get_or_create(&CauseLabel {
                cause: cause.label(),
            })
            .inc();
    }
}
