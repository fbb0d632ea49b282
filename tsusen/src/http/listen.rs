//! Listen addresses for `--metrics` and `tsusen serve --listen`, and the rule
//! both follow: a listener other hosts can reach needs credentials.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs as _},
    str::FromStr,
};

use anyhow::{Context as _, Result, bail};

/// What a listen address may look like (the tail of every parse error).
pub const EXPECTED: &str = "expected ADDRESS:PORT, like 127.0.0.1:9339, [::1]:9339, \
     localhost:9339, or :9339 for every address";

/// `IP:PORT`, `[IPv6]:PORT`, `:PORT` (every address of the host) or
/// `NAME:PORT` (a host name such as `localhost`, resolved when binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Socket(SocketAddr),
    Any(u16),
    Name(String, u16),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenAddr::Socket(addr));
        }
        let bad = || format!("{text:?} is not a listen address: {EXPECTED}");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Ok(ListenAddr::Any(port));
        }
        // A host name: letters, digits, '-' and '.' (an IPv6 address needs brackets).
        let name_like = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name_like || host.parse::<IpAddr>().is_ok() {
            return Err(bad());
        }
        Ok(ListenAddr::Name(host.to_owned(), port))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Socket(addr) => write!(f, "{addr}"),
            ListenAddr::Any(port) => write!(f, ":{port}"),
            ListenAddr::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// Loopback, counting IPv4-mapped IPv6 loopback addresses too.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

impl ListenAddr {
    /// The addresses to try, in order. `:PORT` is IPv6's any address (which
    /// also takes IPv4 unless `net.ipv6.bindv6only` is set), else IPv4's; a
    /// name's IPv4 addresses come before its IPv6 ones.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>> {
        Ok(match self {
            ListenAddr::Socket(addr) => vec![*addr],
            ListenAddr::Any(port) => vec![
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), *port),
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port),
            ],
            ListenAddr::Name(name, port) => {
                let mut addrs: Vec<SocketAddr> = (name.as_str(), *port)
                    .to_socket_addrs()
                    .with_context(|| format!("cannot resolve {name:?}"))?
                    .collect();
                // IPv4 first, so `localhost:PORT` is 127.0.0.1 wherever IPv6 is off or on.
                addrs.sort_by_key(std::net::SocketAddr::is_ipv6);
                if addrs.is_empty() {
                    bail!("{name:?} resolves to no address");
                }
                addrs
            }
        })
    }

    /// Whether only this host can connect.
    pub fn is_loopback(&self) -> Result<bool> {
        Ok(self.resolve()?.iter().all(|a| is_loopback(a.ip())))
    }

    /// The addresses to bind, after refusing a listener other hosts could
    /// reach when requests need no credentials (see [`Self::bind`]).
    pub fn check(&self, flag: &str, has_auth: bool, how_to_auth: &str) -> Result<Vec<SocketAddr>> {
        let addrs = self
            .resolve()
            .with_context(|| format!("cannot listen on {flag} {self}"))?;
        if !has_auth && !addrs.iter().all(|a| is_loopback(a.ip())) {
            bail!(
                "refusing to listen on {self} (not loopback) without credentials: {how_to_auth}, or listen on loopback (127.0.0.1:PORT)"
            );
        }
        Ok(addrs)
    }

    /// Bind the first of [`Self::resolve`]'s addresses that binds, after
    /// refusing a listener other hosts could reach when requests need no
    /// credentials. `flag` names the setting in errors; `how_to_auth` says
    /// how to give credentials.
    pub fn bind(&self, flag: &str, has_auth: bool, how_to_auth: &str) -> Result<TcpListener> {
        let addrs = self.check(flag, has_auth, how_to_auth)?;
        let mut failure = None;
        for addr in addrs {
            match TcpListener::bind(addr) {
                Ok(listener) => return Ok(listener),
                Err(err) => failure = Some((addr, err)),
            }
        }
        let (addr, err) = failure.expect("resolve returns at least one address");
        Err(err).with_context(|| format!("cannot listen on {flag} {self} ({addr})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_a_listen_address_takes() {
        let parse = |s: &str| s.parse::<ListenAddr>();
        assert_eq!(
            parse("127.0.0.1:9339"),
            Ok(ListenAddr::Socket("127.0.0.1:9339".parse().unwrap()))
        );
        assert_eq!(
            parse("[::1]:9339"),
            Ok(ListenAddr::Socket("[::1]:9339".parse().unwrap()))
        );
        assert_eq!(parse(":9339"), Ok(ListenAddr::Any(9339)));
        assert_eq!(
            parse("localhost:9339"),
            Ok(ListenAddr::Name("localhost".into(), 9339))
        );
        for bad in [
            "localhost",
            "9339",
            "::1:9339",
            "127.0.0.1:99999",
            "a b:1",
            "host:",
            "",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("ADDRESS:PORT"), "{bad}: {err}");
        }
        assert_eq!(parse(":9339").unwrap().to_string(), ":9339");
    }

    #[test]
    fn localhost_is_loopback_and_every_address_is_not() {
        let localhost: ListenAddr = "localhost:0".parse().unwrap();
        assert!(localhost.is_loopback().unwrap());
        let listener = localhost
            .bind("--metrics", false, "give credentials")
            .unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        let any: ListenAddr = ":0".parse().unwrap();
        assert!(!any.is_loopback().unwrap());
        let err = any.bind("--metrics", false, "give X").unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing to listen on :0 (not loopback) without credentials: give X, or listen on loopback (127.0.0.1:PORT)"
        );
        assert!(any.bind("--metrics", true, "give X").is_ok());
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(is_loopback(mapped));
    }
}
