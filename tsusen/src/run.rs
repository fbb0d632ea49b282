//! `tsusen run`: the sensor daemon.

use anyhow::Result;
use log::info;
use tsusen_common::{Config, Stat};

use crate::{capture, cli::RunArgs};

pub fn run(args: RunArgs) -> Result<()> {
    for iface in &args.ifaces {
        capture::iface::require(iface)?;
    }
    capture::ensure_root_or_caps()?;
    capture::raise_memlock_limit();
    let mut ebpf = capture::load(&capture::LoadOptions::default())?;
    capture::set_config(
        &mut ebpf,
        &Config {
            wall_offset_ns: capture::clock::wall_offset_ns(),
            ..Config::default()
        },
    )?;
    for iface in &args.ifaces {
        let (_, mode) = capture::attach_xdp(&mut ebpf, iface, args.xdp_mode.unwrap_or(capture::XdpMode::Auto))?;
        info!("attached to {iface} ({mode:?} mode)");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    let stats = capture::read_stats(&ebpf)?;
                    info!("packets={} new_tuples={}", tsusen_common::stats::packets(&stats), stats[Stat::NewTuples as usize]);
                }
            }
        }
        anyhow::Ok(())
    })?;
    // Dropping the Ebpf detaches the programs.
    drop(ebpf);
    info!("detached; bye");
    Ok(())
}
