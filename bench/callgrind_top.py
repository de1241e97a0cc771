#!/usr/bin/env python3
"""Per-review instruction counts from callgrind_annotate output (bench/profile.sh).

  callgrind_top.py INCLUSIVE.txt SELF.txt REVIEWS > breakdown.txt

Inclusive costs of the functions that make up one review (ours and the ceiling), then the
top self costs. Recursive functions (serde's Value (de)serializers) are left out of the
inclusive list: callgrind_annotate counts each recursion level again.
"""
import re
import sys

INCLUSIVE = re.compile(
    r"(node_agent_webhook::|ceiling::(review|main)|axum::routing::route::RouteFuture"
    r"|Dispatcher<D,Bs,I,T>::poll_(read|write|flush)$|tracing_subscriber::fmt::Subscriber.*::event$"
    r"|prometheus_client::metrics::family::Family.*get_or_create$|serde_json::de::from_slice$"
    r"|drop_in_place<serde_json::value::Value>$|drop_in_place<node_agent_webhook|json_patch::patch$"
    r"|rustls::conn::ConnectionCore<Data>::process_new_packets$|base64::engine::Engine::encode"
    r"|axum::handler::Handler<.*>::call::\{\{closure\}\}$)"
)


def rows(path, reviews):
    for line in open(path):
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if not m:
            continue
        name = re.sub(r"\s*\[/.*\]$", "", m.group(2))
        name = re.sub(r"/root/\.cargo/registry/src/index\.crates\.io-[0-9a-f]+/", "", name)
        name = re.sub(r"/rustc/[0-9a-f]+/library/", "std/", name)
        yield int(m.group(1).replace(",", "")) / reviews, name


def main():
    inclusive, self_path, reviews = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("Inclusive instructions per review (file:function):")
    seen = set()
    for cost, name in rows(inclusive, reviews):
        function = name.split(":", 1)[-1]
        if "'" in function or not INCLUSIVE.search(function) or cost < 500:
            continue
        if name in seen:
            continue
        seen.add(name)
        print(f"{cost / 1000:9.1f}k  {name[:190]}")
    print("\nSelf instructions per review (top 25):")
    n = 0
    for cost, name in rows(self_path, reviews):
        if "PROGRAM TOTALS" in name or cost > 0.9 * 10**9:
            continue
        if any(s in name for s in ("clone.S:clone", "start_thread", "thread_start", "call_once{{vtable", "__rust_begin_short_backtrace", "blocking::pool::Inner::run", "task::raw::poll", "worker::run", "Scoped<T>::set")):
            continue
        print(f"{cost / 1000:9.1f}k  {name[:190]}")
        n += 1
        if n == 25:
            break


if __name__ == "__main__":
    main()
