//! `/bin/vm-udp` of the `cargo xtask vm-test` initramfs: the UDP that busybox
//! cannot send (its `nc` has no `-u`, and it has no UDP server).
//!
//! Not a module of xtask: `vm.rs` compiles this one file with `rustc` into a
//! static binary for the VM. Standard library only.
//!
//! - `vm-udp send FROM TO`: send one datagram from the address:port FROM to
//!   TO, and exit 0 at once (a probe: nothing need answer).
//! - `vm-udp query FROM TO`: the same, then wait up to 3 s for the answer;
//!   exit 0 only if one came (a query and its reply).
//! - `vm-udp serve ADDR SECONDS`: answer every datagram to ADDR with the same
//!   bytes, for SECONDS at most.

use std::{net::UdpSocket, process::exit, time::Duration, time::Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["send", from, to] => send(from, to, false),
        ["query", from, to] => send(from, to, true),
        ["serve", addr, seconds] => serve(addr, seconds),
        _ => Err("usage: vm-udp send|query FROM TO, or vm-udp serve ADDR SECONDS".into()),
    };
    if let Err(err) = result {
        eprintln!("vm-udp: {err}");
        exit(1);
    }
}

fn send(from: &str, to: &str, wait: bool) -> Result<(), String> {
    let socket = UdpSocket::bind(from).map_err(|e| format!("bind {from}: {e}"))?;
    socket
        .send_to(b"tsusen vm-test", to)
        .map_err(|e| format!("send to {to}: {e}"))?;
    if !wait {
        return Ok(());
    }
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let (_, peer) = socket
        .recv_from(&mut buf)
        .map_err(|e| format!("no reply from {to}: {e}"))?;
    println!("reply from {peer}");
    Ok(())
}

fn serve(addr: &str, seconds: &str) -> Result<(), String> {
    let seconds: u64 = seconds.parse().map_err(|_| "SECONDS: a number")?;
    let socket = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut buf = [0u8; 512];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    }
    Ok(())
}
