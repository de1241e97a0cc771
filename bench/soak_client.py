#!/usr/bin/env python3
"""Steady-rate HTTPS client for bench/soak.sh (standard library only).

Sends reviews at a fixed total rate over CONNS kept-alive HTTP/1.1 connections, each
verifying the server certificate against the CA and reconnecting every RECONNECT seconds
(so certificate rotation is exercised by real handshakes). Latency is measured from each
request's scheduled send time, so a stalled server shows up in the percentiles instead of
silently lowering the rate. Every INTERVAL seconds it prints one line: requests, failures,
p50/p99/max latency, the server's RSS, and the certificate serials seen on new connections.

soak_client.py --url-base https://localhost:PORT --ca ca.crt --pid PID --duration 300 \
  --rate 200 --conns 4 --interval 10 --reconnect 5 --warmup 5 mutate.json validate.json
"""
import argparse
import hashlib
import http.client
import json
import os
import ssl
import sys
import threading
import time
from urllib.parse import urlparse


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentile(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    rank = max(1, -(-int(q * len(values)) // 100))
    return values[min(rank, len(values)) - 1]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []  # seconds, this interval
        self.failures = []  # messages, this interval
        self.serials = set()  # certificate fingerprints seen this interval
        self.total = 0
        self.total_failed = 0
        self.all_serials = []  # in order of first appearance

    def record(self, latency, failure=None):
        with self.lock:
            self.total += 1
            self.latencies.append(latency)
            if failure:
                self.total_failed += 1
                self.failures.append(failure)

    def saw_certificate(self, fingerprint):
        with self.lock:
            self.serials.add(fingerprint)
            if fingerprint not in self.all_serials:
                self.all_serials.append(fingerprint)

    def take(self):
        with self.lock:
            out = (self.latencies, self.failures, self.serials)
            self.latencies, self.failures, self.serials = [], [], set()
            return out


def worker(index, args, bodies, stats, start, stop_at, counting_from):
    host = urlparse(args.url_base)
    context = ssl.create_default_context(cafile=args.ca)
    period = args.conns / args.rate
    next_send = start + index * period / args.conns
    connection, connected_at = None, 0.0
    n = index
    while next_send < stop_at:
        now = time.monotonic()
        if next_send > now:
            time.sleep(next_send - now)
        scheduled = next_send
        next_send += period
        path, body, uid = bodies[n % len(bodies)]
        n += 1
        failure = None
        try:
            if connection is None or time.monotonic() - connected_at > args.reconnect:
                if connection is not None:
                    connection.close()
                connection = http.client.HTTPSConnection(host.hostname, host.port, context=context, timeout=10)
                connection.connect()
                connected_at = time.monotonic()
                der = connection.sock.getpeercert(binary_form=True)
                stats.saw_certificate(hashlib.sha256(der).hexdigest()[:12])
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                failure = f"{path}: HTTP {response.status}: {data[:200]!r}"
            else:
                answer = json.loads(data)["response"]
                if answer.get("uid") != uid:
                    failure = f"{path}: uid not echoed"
                elif answer.get("allowed") is not True:
                    failure = f"{path}: not allowed: {answer}"
                elif path == "/mutate" and "patch" not in answer:
                    failure = f"{path}: no patch"
        except Exception as err:  # noqa: BLE001 - every error is a failed request
            failure = f"{path}: {type(err).__name__}: {err}"
            if connection is not None:
                connection.close()
            connection = None
        if scheduled >= counting_from:
            stats.record(time.monotonic() - scheduled, failure)
    if connection is not None:
        connection.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url-base", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--reconnect", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--summary", help="write the summary JSON here")
    parser.add_argument("reviews", nargs="+", help="review files; the path is /<name without .json>")
    args = parser.parse_args()

    bodies = []
    for path in args.reviews:
        with open(path, "rb") as f:
            body = f.read()
        uid = json.loads(body)["request"]["uid"]
        bodies.append(("/" + os.path.basename(path).rsplit(".", 1)[0], body, uid))

    stats = Stats()
    start = time.monotonic() + 0.2
    counting_from = start + args.warmup
    stop_at = counting_from + args.duration
    threads = [
        threading.Thread(target=worker, args=(i, args, bodies, stats, start, stop_at, counting_from), daemon=True)
        for i in range(args.conns)
    ]
    for t in threads:
        t.start()

    time.sleep(max(0.0, counting_from - time.monotonic()))
    stats.take()
    rss_start = rss_kib(args.pid)
    intervals = []
    print(f"{'t(s)':>6} {'reqs':>6} {'fail':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'RSS MiB':>8}  certs", flush=True)
    tick = counting_from
    while tick < stop_at - 1e-6:
        tick = min(tick + args.interval, stop_at)
        time.sleep(max(0.0, tick - time.monotonic()))
        latencies, failures, serials = stats.take()
        rss = rss_kib(args.pid)
        row = {
            "t": round(tick - counting_from, 1),
            "requests": len(latencies),
            "failed": len(failures),
            "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "max_ms": round(max(latencies, default=0) * 1000, 2),
            "rss_kib": rss,
            "certs": sorted(serials),
        }
        intervals.append(row)
        print(f"{row['t']:>6} {row['requests']:>6} {row['failed']:>5} {row['p50_ms']:>7} {row['p99_ms']:>7} "
              f"{row['max_ms']:>7} {rss / 1024:>8.1f}  {','.join(row['certs'])}", flush=True)
        for failure in failures[:5]:
            print(f"       failure: {failure}", flush=True)
    for t in threads:
        t.join(timeout=15)
    rss_end = rss_kib(args.pid)
    summary = {
        "requests": stats.total,
        "failed": stats.total_failed,
        "rate_target": args.rate,
        "rate_achieved": round(stats.total / args.duration, 1),
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_pct": round((rss_end - rss_start) * 100 / rss_start, 1) if rss_start else None,
        "rss_max_kib": max([rss_start, rss_end] + [r["rss_kib"] for r in intervals]),
        "certificates_seen": stats.all_serials,
        "p99_ms_by_interval": [r["p99_ms"] for r in intervals],
        "intervals": intervals,
    }
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=1)
    ok = summary["failed"] == 0 and (summary["rss_growth_pct"] or 0) < 10
    print(f"requests {summary['requests']} ({summary['rate_achieved']}/s), failed {summary['failed']}, "
          f"RSS {rss_start / 1024:.1f} -> {rss_end / 1024:.1f} MiB ({summary['rss_growth_pct']}%), "
          f"certificates seen: {len(stats.all_serials)}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
