#!/usr/bin/env python3
"""What `tsusen serve` must answer for "what changed", computed independently
from the day files (tests/report_changes.rs compares).

Usage: report_changes.py DIR DAYS SPIKE_K SPIKE_MIN HOURS...
where each HOURS is DATE/PROTO/PORT (PORT "-" for protocols without ports).
Prints JSON: {"spikes": [...], "series": {label: {...}}, "hours": {query: [24 counts]}}.
"""
import datetime
import json
import os
import sys

BASELINE_DAYS = 28
MIN_BASELINE_DAYS = 7
PROTO_NUMBERS = {"ICMP": 1, "TCP": 6, "UDP": 17, "ICMPV6": 58}


def day_number(name):
    return (datetime.date.fromisoformat(name) - datetime.date(1970, 1, 1)).days


def day_name(number):
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=number)).isoformat()


def read(directory):
    """{day: {(proto, port): {src: first timestamp}}} from our day-file format."""
    days = {}
    for name in os.listdir(directory):
        if not name.endswith(".csv"):
            continue
        per_service = {}
        with open(os.path.join(directory, name)) as f:
            assert f.readline().split() == ["proto", "dst_port", "src_ip", "dst_ip", "timestamp"]
            for line in f:
                proto, port, src, _dst, ts = line.split()
                sources = per_service.setdefault((proto, port), {})
                ts = int(ts)
                if src not in sources or ts < sources[src]:
                    sources[src] = ts
        days[day_number(name[:-4])] = per_service
    return days


def quantile(values, q):
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = int(pos // 1), -int(-pos // 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def label(service):
    proto, port = service
    return proto if port == "-" else f"{proto} {port}"


def main():
    directory, days, k, spike_min = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    data = read(directory)
    last = max(data)
    first = last - days + 1
    counts = {d: {s: len(srcs) for s, srcs in per.items()} for d, per in data.items()}
    services = {s for d in range(first, last + 1) for s in counts.get(d, {})}

    def count(service, d):
        return counts[d].get(service, 0) if d in counts else None

    spikes = []
    series = {}
    for service in services:
        for d in range(first, last + 1):
            n = count(service, d)
            if n is None or n < spike_min:
                continue
            history = [count(service, b) for b in range(d - BASELINE_DAYS, d) if b in counts]
            if len(history) < MIN_BASELINE_DAYS:
                continue
            mean = sum(history) / len(history)
            sd = (sum((x - mean) ** 2 for x in history) / len(history)) ** 0.5
            median = quantile(history, 0.5)
            iqr = quantile(history, 0.75) - quantile(history, 0.25)
            threshold = max(median + k * iqr, mean + k * sd)
            if n > threshold:
                spikes.append({
                    "date": day_name(d), "label": label(service), "count": n,
                    "threshold": threshold, "ratio": n / max(threshold, 1.0),
                    "new": all(x == 0 for x in history),
                    "_key": (PROTO_NUMBERS[service[0]], 0 if service[1] == "-" else int(service[1])),
                    "_day": d,
                })

        def change(back):
            before = count(service, last - back)
            if before is None:
                return None
            now = count(service, last)
            return {"before": before, "now": now, "delta": now - before,
                    "percent": (now - before) * 100 / before if before else None}

        points = [(d - first, count(service, d)) for d in range(first, last + 1) if d in counts]
        trend = None
        if len(points) >= 2:
            mx = sum(x for x, _ in points) / len(points)
            my = sum(y for _, y in points) / len(points)
            trend = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
        series[label(service)] = {
            "sources": count(service, last),
            "vs_yesterday": change(1),
            "vs_last_week": change(7),
            "trend": trend,
        }

    # Largest ratio first, then count, newer day, protocol/port.
    spikes.sort(key=lambda s: (-s["ratio"], -s["count"], -s["_day"], s["_key"]))
    for s in spikes:
        del s["_key"], s["_day"]

    hours = {}
    for query in sys.argv[5:]:
        date, proto, port = query.split("/")
        d = day_number(date)
        per_hour = [0] * 24
        for ts in data.get(d, {}).get((proto, port), {}).values():
            per_hour[min(23, max(0, (ts - d * 86400) // 3600))] += 1
        hours[query] = per_hour

    json.dump({"spikes": spikes, "series": series, "hours": hours}, sys.stdout)


main()
