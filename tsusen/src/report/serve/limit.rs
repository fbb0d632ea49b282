//! The rate limit: a token bucket per client.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

/// Whom the rate limit counts as one client: every loopback address is one
/// (127.0.0.2, 127.0.0.3, ... and ::1 are the same host), an IPv6 client is
/// its /64 (the usual smallest prefix a host gets), an IPv4 client its address
/// (IPv4-mapped IPv6 included).
fn client_key(ip: IpAddr) -> IpAddr {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0u128 << 64)),
    }
}

/// A token bucket per client ([`client_key`]).
pub(super) struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Limiter {
    pub(super) fn new(per_second: u32) -> Self {
        Limiter {
            per_second: f64::from(per_second),
            burst: f64::from(per_second) * 2.0,
            buckets: HashMap::new(),
        }
    }

    pub(super) fn allow(&mut self, client: IpAddr) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let now = Instant::now();
        if self.buckets.len() > 4096 {
            // Forget clients whose buckets have refilled.
            let (rate, burst) = (self.per_second, self.burst);
            self.buckets
                .retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = self
            .buckets
            .entry(client_key(client))
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_loopback_addresses_share_one_bucket() {
        let mut l = Limiter::new(2);
        let clients: Vec<IpAddr> = [
            "127.0.0.1",
            "127.0.0.2",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.9",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert!((0..4).all(|i| l.allow(clients[i % clients.len()])));
        for client in &clients {
            assert!(!l.allow(*client), "{client} escaped the loopback bucket");
        }
        // One IPv6 /64 is one client; another /64 and an IPv4 client are not.
        let mut l = Limiter::new(1);
        assert!(l.allow("2001:db8::1".parse().unwrap()));
        assert!(l.allow("2001:db8::2".parse().unwrap()));
        assert!(!l.allow("2001:db8::ffff:1".parse().unwrap()));
        assert!(l.allow("2001:db8:0:1::1".parse().unwrap()));
        assert!(l.allow("192.0.2.1".parse().unwrap()));
        assert!(l.allow("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn limiter_allows_a_burst_then_refuses() {
        let mut l = Limiter::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..4).all(|_| l.allow(ip)));
        assert!(!l.allow(ip));
        assert!(Limiter::new(0).allow(ip), "0 turns the limit off");
    }
}
