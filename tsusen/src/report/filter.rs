//! The filters every view shares (details, drill-down, per-destination,
//! export), as they come in the URL query so a view can be shared: several
//! addresses, CIDRs or ranges (`a.b.c.d-e.f.g.h`) as source or destination,
//! ports, protocols, ASNs, countries, labels (and labels to hide), sensors.
//! Lists are comma-separated. [`Filter::selection`] resolves them, with the
//! enrichment, to the address ids an aggregate [`Selection`] keeps.

use std::{fmt::Write as _, net::IpAddr};

use anyhow::{Context as _, Result, anyhow, bail};
use ipnet::IpNet;
use serde::Deserialize;
use tsusen_common::proto;

use super::{
    aggregate::{Selection, Window},
    enrich::Enrichment,
};

/// The filter part of a query, as given.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FilterQuery {
    pub src: Option<String>,
    /// The details form's older name for `src`.
    pub ip: Option<String>,
    pub dst: Option<String>,
    pub port: Option<String>,
    pub proto: Option<String>,
    pub asn: Option<String>,
    pub country: Option<String>,
    pub label: Option<String>,
    /// Labels whose sources are hidden ("hide known research scanners").
    pub nolabel: Option<String>,
    pub sensor: Option<String>,
}

impl FilterQuery {
    /// `(name, value)` of the given ones, in a fixed order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("src", &self.src),
            ("ip", &self.ip),
            ("dst", &self.dst),
            ("port", &self.port),
            ("proto", &self.proto),
            ("asn", &self.asn),
            ("country", &self.country),
            ("label", &self.label),
            ("nolabel", &self.nolabel),
            ("sensor", &self.sensor),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| (k, v))
        })
        .collect()
    }

    /// Whether any filter that narrows a view is given (`sensor=` alone
    /// does not, over day files).
    pub fn narrows(&self) -> bool {
        self.pairs().iter().any(|(k, _)| *k != "sensor")
    }

    /// The given ones as a URL query (without `?`).
    pub fn to_query(&self) -> String {
        encode(&self.pairs())
    }
}

/// `k=v&...`, values percent-encoded.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~:/,".contains(&b) {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// An address range, both ends included, of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl AddrRange {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4() && self.first <= *ip && *ip <= self.last
    }

    /// An address, a CIDR, or `first-last`.
    pub fn parse(v: &str, what: &str) -> Result<Self> {
        let bad = || {
            anyhow!(
                "bad address filter {v:?} ({what}): expected an address, a CIDR like 198.51.100.0/24 or a range like 198.51.100.1-198.51.100.9"
            )
        };
        if let Some((a, b)) = v.split_once('-') {
            let first: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let last: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if first.is_ipv4() != last.is_ipv4() {
                bail!(
                    "bad address filter {v:?} ({what}): the range's ends are of different families"
                );
            }
            if first > last {
                bail!("bad address filter {v:?} ({what}): the range ends before it starts");
            }
            return Ok(AddrRange { first, last });
        }
        let net: IpNet = v
            .parse()
            .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| bad())?;
        Ok(AddrRange {
            first: net.network(),
            last: net.broadcast(),
        })
    }
}

/// The parsed filters; empty lists match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub src: Vec<AddrRange>,
    pub dst: Vec<AddrRange>,
    pub ports: Vec<u16>,
    pub protos: Vec<u8>,
    pub asns: Vec<u32>,
    /// ISO 3166 codes, upper case.
    pub countries: Vec<String>,
    pub labels: Vec<String>,
    pub nolabels: Vec<String>,
    /// Passed through to sources that know sensors; day files are one
    /// sensor's, so over them it narrows nothing.
    pub sensors: Vec<String>,
}

fn items(v: Option<&String>) -> impl Iterator<Item = &str> {
    v.map_or("", String::as_str)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Filter {
    /// Parse a query; the error is one line naming the bad value.
    pub fn parse(q: &FilterQuery) -> Result<Filter> {
        let mut f = Filter::default();
        for v in items(q.src.as_ref()).chain(items(q.ip.as_ref())) {
            f.src.push(AddrRange::parse(v, "source")?);
        }
        for v in items(q.dst.as_ref()) {
            f.dst.push(AddrRange::parse(v, "destination")?);
        }
        for v in items(q.port.as_ref()) {
            f.ports.push(
                v.parse()
                    .with_context(|| format!("bad port filter {v:?}: expected 0-65535"))?,
            );
        }
        for v in items(q.proto.as_ref()) {
            f.protos.push(proto::from_column(v).ok_or_else(|| {
                anyhow!("bad protocol filter {v:?}: expected a name like TCP or a number")
            })?);
        }
        for v in items(q.asn.as_ref()) {
            let digits = v
                .strip_prefix("AS")
                .or_else(|| v.strip_prefix("as"))
                .unwrap_or(v);
            f.asns.push(digits.parse().with_context(|| {
                format!("bad ASN filter {v:?}: expected a number like 64500 or AS64500")
            })?);
        }
        for v in items(q.country.as_ref()) {
            if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
                bail!("bad country filter {v:?}: expected a two-letter code like NL");
            }
            f.countries.push(v.to_ascii_uppercase());
        }
        f.labels = items(q.label.as_ref()).map(str::to_owned).collect();
        f.nolabels = items(q.nolabel.as_ref()).map(str::to_owned).collect();
        f.sensors = items(q.sensor.as_ref()).map(str::to_owned).collect();
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether a source must be tested address by address.
    fn has_source_part(&self) -> bool {
        !(self.src.is_empty()
            && self.asns.is_empty()
            && self.countries.is_empty()
            && self.labels.is_empty()
            && self.nolabels.is_empty())
    }

    /// The address ids each part keeps. A filter on a column whose file was
    /// not given (or a label no list has) is an error, not an empty answer.
    pub fn selection(&self, window: &Window, e: &Enrichment) -> Result<Selection> {
        if !self.asns.is_empty() && !e.columns.asn {
            bail!("cannot filter by ASN: no --asn-db was read");
        }
        if !self.countries.is_empty() && !e.columns.country {
            bail!("cannot filter by country: no --country-db was read");
        }
        let label_ids = |names: &[String]| -> Result<Vec<u16>> {
            names
                .iter()
                .map(|n| {
                    e.label_id(n).ok_or_else(|| {
                        anyhow!(
                            "unknown label {n:?}: the --labels lists have {}",
                            if e.label_names.is_empty() {
                                "none".to_owned()
                            } else {
                                e.label_names.join(", ")
                            }
                        )
                    })
                })
                .collect()
        };
        let labels = label_ids(&self.labels)?;
        let nolabels = label_ids(&self.nolabels)?;
        let ips = window.addresses();
        let src = self.has_source_part().then(|| {
            (0..ips.len())
                .map(|i| {
                    #[expect(clippy::cast_possible_truncation, reason = "address ids are u32")]
                    let id = i as u32;
                    let ip = &ips[i];
                    (self.src.is_empty() || self.src.iter().any(|r| r.contains(ip)))
                        && (self.asns.is_empty()
                            || e.asn(id).is_some_and(|a| self.asns.contains(&a)))
                        && (self.countries.is_empty()
                            || e.country(id)
                                .is_some_and(|c| self.countries.iter().any(|x| x == c)))
                        && (labels.is_empty() || e.label_ids(id).iter().any(|l| labels.contains(l)))
                        && !e.label_ids(id).iter().any(|l| nolabels.contains(l))
                })
                .collect()
        });
        let dst = (!self.dst.is_empty()).then(|| {
            ips.iter()
                .map(|ip| self.dst.iter().any(|r| r.contains(ip)))
                .collect()
        });
        Ok(Selection {
            src,
            dst,
            protos: self.protos.clone(),
            ports: self.ports.clone(),
        })
    }
}
