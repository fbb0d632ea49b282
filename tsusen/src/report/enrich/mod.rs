//! Who a source is, at report time (never in the sensor): ASN and
//! organisation, and country, from MaxMind-format databases
//! (`--asn-db`, `--country-db`: GeoLite2, DB-IP lite and ipinfo lite use the
//! format), read with the `maxminddb` crate; and labels from `CIDR label`
//! lists (`--labels`, see [`labels`]).
//!
//! [`Enricher`] holds the opened files; [`Enricher::enrich`] looks every
//! address of a window up once, into an [`Enrichment`] indexed by address id.
//! A file that is missing or unreadable costs one warning line and its column.
#![expect(
    clippy::cast_possible_truncation,
    reason = "address ids are u32 (see aggregate/day.rs)"
)]

pub mod labels;

use std::{net::IpAddr, path::PathBuf};

use maxminddb::Reader;
use rustc_hash::FxHashMap;
use serde::Deserialize;

pub use self::labels::Labels;

/// The enrichment flags both commands take.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EnrichArgs {
    /// MaxMind-format ASN database (GeoLite2-ASN, DB-IP ASN lite, ipinfo lite): each address's ASN and organisation.
    #[arg(long, value_name = "FILE.mmdb")]
    pub asn_db: Option<PathBuf>,
    /// MaxMind-format country database (GeoLite2-Country, DB-IP country lite, ipinfo lite): each address's country.
    #[arg(long, value_name = "FILE.mmdb")]
    pub country_db: Option<PathBuf>,
    /// Labels for networks, lines `CIDR label` with `#` comments (repeatable); an address gets every matching label, most specific first.
    #[arg(long = "labels", value_name = "FILE")]
    pub labels: Vec<PathBuf>,
}

/// Which columns the page and the JSON carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    pub asn: bool,
    pub country: bool,
    pub labels: bool,
}

/// The opened databases and lists.
#[derive(Default)]
pub struct Enricher {
    asn: Option<Reader<Vec<u8>>>,
    country: Option<Reader<Vec<u8>>>,
    labels: Labels,
    /// One line per file that could not be used.
    pub warnings: Vec<String>,
}

/// An ASN record: GeoLite2 and DB-IP fields, or ipinfo lite's.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
    /// ipinfo lite: "AS64500".
    #[serde(borrow)]
    asn: Option<&'a str>,
    #[serde(borrow)]
    as_name: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CountryPart<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

/// A country record: GeoLite2 and DB-IP (`country`, else
/// `registered_country`), or ipinfo lite's `country_code`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country: Option<CountryPart<'a>>,
    #[serde(borrow)]
    registered_country: Option<CountryPart<'a>>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

fn open_mmdb(flag: &str, path: &PathBuf, warnings: &mut Vec<String>) -> Option<Reader<Vec<u8>>> {
    match Reader::open_readfile(path) {
        Ok(r) => Some(r),
        Err(err) => {
            warnings.push(format!(
                "cannot read {flag} {}: {err}; the report has no {} column",
                path.display(),
                if flag == "--asn-db" { "ASN" } else { "country" }
            ));
            None
        }
    }
}

impl Enricher {
    /// Open what `args` names; each file that fails is logged (one line) and
    /// left out.
    pub fn load(args: &EnrichArgs) -> Enricher {
        let mut warnings = Vec::new();
        let asn = args
            .asn_db
            .as_ref()
            .and_then(|p| open_mmdb("--asn-db", p, &mut warnings));
        let country = args
            .country_db
            .as_ref()
            .and_then(|p| open_mmdb("--country-db", p, &mut warnings));
        let mut labels = Labels::default();
        for path in &args.labels {
            let mut one = labels.clone();
            match one.read(path) {
                Ok(()) => labels = one,
                Err(err) => warnings.push(format!("{err:#}; its labels are left out")),
            }
        }
        for w in &warnings {
            log::warn!("{w}");
        }
        Enricher {
            asn,
            country,
            labels,
            warnings,
        }
    }

    pub fn columns(&self) -> Columns {
        Columns {
            asn: self.asn.is_some(),
            country: self.country.is_some(),
            labels: !self.labels.is_empty(),
        }
    }

    fn asn_of(&self, ip: IpAddr) -> Option<(u32, Option<&str>)> {
        let record: AsnRecord<'_> = self.asn.as_ref()?.lookup(ip).ok()?.decode().ok()??;
        let number = record.autonomous_system_number.or_else(|| {
            record
                .asn
                .and_then(|a| a.strip_prefix("AS").unwrap_or(a).parse().ok())
        })?;
        Some((
            number,
            record.autonomous_system_organization.or(record.as_name),
        ))
    }

    fn country_of(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let record: CountryRecord<'_> = self.country.as_ref()?.lookup(ip).ok()?.decode().ok()??;
        let code = record
            .country
            .and_then(|c| c.iso_code)
            .or(record.registered_country.and_then(|c| c.iso_code))
            .or(record.country_code)?;
        match code.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        }
    }

    /// Look every address up once, on every core.
    pub fn enrich(&self, ips: &[IpAddr]) -> Enrichment {
        let columns = self.columns();
        let mut e = Enrichment {
            columns,
            label_names: self.labels.names.clone(),
            label_sets: vec![Vec::new()],
            ..Enrichment::default()
        };
        if columns == Columns::default() {
            return e;
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(ips.len() / 4096 + 1);
        let chunk = ips.len().div_ceil(workers).max(1);
        type Found<'a> = Vec<(Option<(u32, Option<&'a str>)>, Option<[u8; 2]>, Vec<u16>)>;
        let parts: Vec<Found<'_>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ips
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|&ip| {
                                (
                                    self.asn_of(ip),
                                    self.country_of(ip),
                                    if columns.labels {
                                        self.labels.of(ip)
                                    } else {
                                        Vec::new()
                                    },
                                )
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("enrichment thread"))
                .collect()
        });
        let mut sets: FxHashMap<Vec<u16>, u32> = FxHashMap::default();
        sets.insert(Vec::new(), 0);
        for (asn, country, labels) in parts.into_iter().flatten() {
            e.asn.push(asn.map_or(0, |(n, org)| {
                if let Some(org) = org {
                    e.orgs.entry(n).or_insert_with(|| org.to_owned());
                }
                n
            }));
            e.country.push(country.unwrap_or_default());
            let next = e.label_sets.len() as u32;
            let id = *sets.entry(labels.clone()).or_insert_with(|| {
                e.label_sets.push(labels);
                next
            });
            e.label_of.push(id);
        }
        e
    }
}

/// The most frequent ASNs and countries of a set of addresses, with how
/// many addresses each.
#[derive(Clone, Debug, Default)]
pub struct Tops<'a> {
    pub asns: Vec<(u32, usize)>,
    pub countries: Vec<(&'a str, usize)>,
}

/// Every address of a window, enriched, by address id.
#[derive(Clone, Debug, Default)]
pub struct Enrichment {
    pub columns: Columns,
    /// ASN by address id, 0 when unknown.
    asn: Vec<u32>,
    orgs: FxHashMap<u32, String>,
    /// ISO 3166 code by address id, zeros when unknown.
    country: Vec<[u8; 2]>,
    /// Label set by address id (index into `label_sets`; 0 is the empty set).
    label_of: Vec<u32>,
    label_sets: Vec<Vec<u16>>,
    pub label_names: Vec<String>,
}

impl Enrichment {
    pub fn asn(&self, id: u32) -> Option<u32> {
        self.asn.get(id as usize).copied().filter(|&n| n != 0)
    }

    pub fn org(&self, asn: u32) -> Option<&str> {
        self.orgs.get(&asn).map(String::as_str)
    }

    pub fn country(&self, id: u32) -> Option<&str> {
        self.country
            .get(id as usize)
            .filter(|c| c[0] != 0)
            .and_then(|c| std::str::from_utf8(c).ok())
    }

    /// Label ids of an address, most specific first.
    pub fn label_ids(&self, id: u32) -> &[u16] {
        self.label_of
            .get(id as usize)
            .map_or(&[], |&s| &self.label_sets[s as usize])
    }

    pub fn labels(&self, id: u32) -> impl Iterator<Item = &str> {
        self.label_ids(id)
            .iter()
            .map(|&l| self.label_names[usize::from(l)].as_str())
    }

    /// The id of a label name, if any list has it.
    pub fn label_id(&self, name: &str) -> Option<u16> {
        self.label_names
            .iter()
            .position(|l| l == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The most frequent ASNs and countries among `ids` (at most `n` each,
    /// most first): empty for a column that is off.
    pub fn top(&self, ids: &[u32], n: usize) -> Tops<'_> {
        let mut asns: FxHashMap<u32, usize> = FxHashMap::default();
        let mut countries: FxHashMap<&str, usize> = FxHashMap::default();
        for &id in ids {
            if let Some(a) = self.asn(id) {
                *asns.entry(a).or_default() += 1;
            }
            if let Some(c) = self.country(id) {
                *countries.entry(c).or_default() += 1;
            }
        }
        let mut asns: Vec<(u32, usize)> = asns.into_iter().collect();
        asns.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        asns.truncate(n);
        let mut countries: Vec<(&str, usize)> = countries.into_iter().collect();
        countries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        countries.truncate(n);
        Tops { asns, countries }
    }

    /// The JSON fields of one address: only the columns that are on.
    pub fn json_fields(&self, id: u32, into: &mut serde_json::Value) {
        if self.columns.asn {
            let asn = self.asn(id);
            into["asn"] = serde_json::json!(asn);
            into["org"] = serde_json::json!(asn.and_then(|n| self.org(n)));
        }
        if self.columns.country {
            into["country"] = serde_json::json!(self.country(id));
        }
        if self.columns.labels {
            into["labels"] = serde_json::json!(self.labels(id).collect::<Vec<_>>());
        }
    }
}
