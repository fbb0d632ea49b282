//! `tsusen run --clickhouse`: the shipper in a thread of its own, woken
//! after each flush, so recording and flushing never wait for ClickHouse.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender},
    },
    thread,
};

use anyhow::Result;
use log::{error, warn};

use super::{STOP_GRACE, Shipper, Stop};

/// The running shipping thread of a daemon.
pub struct Background {
    /// Wakes the thread after a flush; dropped to stop it.
    wake: Option<SyncSender<()>>,
    /// The shipper's stop flag: no new batch once set.
    stop: Arc<AtomicBool>,
    /// Word from the thread that it ended.
    ended: mpsc::Receiver<()>,
}

impl Background {
    pub fn spawn(mut shipper: Shipper) -> Result<Background> {
        let (wake, woken) = mpsc::sync_channel(1);
        let (ended_tx, ended) = mpsc::channel();
        let stop = shipper.stop_flag();
        thread::Builder::new().name("ship".into()).spawn(move || {
            match shipper.follow(Some(&woken), false) {
                Stop::Asked | Stop::Refused(_) => {}
                Stop::Local(err) => {
                    error!(
                        "shipping stopped: {err:#}; recording goes on, rows stay in the day files"
                    );
                }
            }
            let _ = ended_tx.send(());
        })?;
        Ok(Background {
            wake: Some(wake),
            stop,
            ended,
        })
    }

    /// After a flush. Never waits: a wake-up already pending covers this
    /// flush too.
    pub fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// At shutdown, before the sensor's last drains: start no new batch.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake = None;
    }

    /// After them: wait up to [`STOP_GRACE`] for the thread to end (the batch
    /// in flight acknowledged, or not: then its range stays in the cursor
    /// and the next start sends it again).
    pub fn wait(self) {
        if let Err(RecvTimeoutError::Timeout) = self.ended.recv_timeout(STOP_GRACE) {
            warn!(
                "ClickHouse did not acknowledge within {STOP_GRACE:?}: the batch in flight is \
                 abandoned; the next start sends it again (rows sent twice are stored once)"
            );
        }
    }
}
