#!/usr/bin/env python3
"""The drill-down and per-destination views computed independently of
tsusen, straight from the day files: `who_expected.py DIR DAY PROTO PORT
[--asn-db F] [--country-db F] [--labels F ...]` prints JSON:

  drill: {src: {first_seen, destinations: [...], ports: [...], asn, org,
          country, labels}} for PROTO PORT ("-" for none) on DAY;
  destinations: {dst: {probes, ports: {"TCP 23": n}}} over every day file;
  wave: sources of PROTO PORT on DAY seen on no other day for it;
  details_in_dst: with --dst-net CIDR, the (protocol, port, source) over
          every day file that hit an address in it, and details_in_dst_rows
          each one's days, distinct destinations in it, and first seen on
          those days (its first probe of the day, to any destination);
  series_in_dst: with --dst-net, {day: {"TCP 23": distinct sources that
          hit an address in it}}.

ASN and country come from the python3-maxminddb reader, labels from the
lists (every matching label, most specific first).
"""
import argparse
import glob
import ipaddress
import json
import os

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("day")
p.add_argument("proto")
p.add_argument("port")
p.add_argument("--asn-db")
p.add_argument("--country-db")
p.add_argument("--labels", action="append", default=[])
p.add_argument("--dst-net")
a = p.parse_args()


def rows(path):
    with open(path) as f:
        header = f.readline()
        assert header.split() == ["proto", "dst_port", "src_ip", "dst_ip", "timestamp"], header
        for line in f:
            proto, port, src, dst, ts = line.split()
            yield proto, port, src, dst, int(ts)


def service(proto, port):
    return proto if port == "-" else f"{proto} {port}"


dst_net = a.dst_net and ipaddress.ip_network(a.dst_net)
details_in_dst = {}
# First probe of each (day, protocol/port, source), to any destination: the
# day files' aggregate keeps one first-seen per day and key.
day_first = {}
series_in_dst = {}
drill = {}
ports_that_day = {}
destinations = {}
other_days = set()
for path in sorted(glob.glob(os.path.join(a.dir, "*.csv"))):
    day = os.path.basename(path)[:-4]
    for proto, port, src, dst, ts in rows(path):
        s = service(proto, port)
        k = (day, s, src)
        day_first[k] = min(day_first.get(k, ts), ts)
        d = destinations.setdefault(dst, {"probes": 0, "ports": {}, "keys": set()})
        key = (day, s, src)
        if key not in d["keys"]:
            d["keys"].add(key)
            d["probes"] += 1
            d["ports"][s] = d["ports"].get(s, 0) + 1
        if dst_net and ipaddress.ip_address(dst) in dst_net:
            r = details_in_dst.setdefault(f"{s} {src}", {"days": set(), "destinations": set(), "src": src, "s": s})
            r["days"].add(day)
            r["destinations"].add(dst)
            series_in_dst.setdefault(day, {}).setdefault(s, set()).add(src)
        target = proto == a.proto and port == a.port
        if day == a.day:
            ports_that_day.setdefault(src, set()).add(s)
            if target:
                e = drill.setdefault(src, {"first_seen": ts, "destinations": set()})
                e["first_seen"] = min(e["first_seen"], ts)
                e["destinations"].add(dst)
        elif target:
            other_days.add(src)

asn_db = country_db = None
if a.asn_db or a.country_db:
    import maxminddb

    asn_db = a.asn_db and maxminddb.open_database(a.asn_db)
    country_db = a.country_db and maxminddb.open_database(a.country_db)
labels = []
for path in a.labels:
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                net, label = line.split(None, 1)
                labels.append((ipaddress.ip_network(net, strict=False), label.strip()))

for src, e in drill.items():
    e["destinations"] = sorted(e["destinations"])
    e["ports"] = sorted(ports_that_day[src])
    if asn_db:
        r = asn_db.get(src) or {}
        e["asn"] = r.get("autonomous_system_number")
        e["org"] = r.get("autonomous_system_organization")
    if country_db:
        r = country_db.get(src) or {}
        # The country, else the registered country (GeoLite2, DB-IP), else
        # ipinfo lite's country_code.
        e["country"] = (
            (r.get("country") or {}).get("iso_code")
            or (r.get("registered_country") or {}).get("iso_code")
            or r.get("country_code")
        )
    if labels:
        ip = ipaddress.ip_address(src)
        found = sorted(
            ((n.prefixlen, l) for n, l in labels if n.version == ip.version and ip in n),
            key=lambda t: -t[0],
        )
        e["labels"] = list(dict.fromkeys(l for _, l in found))

for d in destinations.values():
    del d["keys"]

print(json.dumps({
    "drill": drill,
    "destinations": destinations,
    "wave": sorted(set(drill) - other_days),
    "details_in_dst": len(details_in_dst),
    "details_in_dst_rows": {
        k: {
            "days": len(r["days"]),
            "destinations": len(r["destinations"]),
            "first_seen": min(day_first[(d, r["s"], r["src"])] for d in r["days"]),
        }
        for k, r in details_in_dst.items()
    },
    "series_in_dst": {
        day: {s: len(srcs) for s, srcs in services.items()}
        for day, services in series_in_dst.items()
    },
}))
