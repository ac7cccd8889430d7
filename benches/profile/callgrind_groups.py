#!/usr/bin/env python3
"""Where a callgrind profile's instructions go, per request, in disjoint groups.

usage: callgrind_groups.py CALLGRIND_OUT REQUESTS

Each function's own instructions, plus what it spends directly in the allocator and in
libc's mem* routines, go to the first group whose pattern matches its name; the rest is
"other". Inclusive costs are not used: the tower/axum futures recurse, and callgrind's
inclusive figures for recursive functions count the same instructions several times.
Also prints the top functions by their own instructions and the allocations per request.
Used by benches/profile/callgrind.sh; see docs/benchmarks.md, "Where the time goes".
"""

import collections
import re
import sys

GROUPS = [
    ("per-request clone and drop of the router's middleware stack",
     r"clone_box|as core::clone::Clone>::clone|^core::ptr::drop_in_place<(tower::|axum::|tower_http::"
     r"|bindery::http::AppState|bindery::worker::execute::Executor|bindery::broker|http::extensions"
     r"|alloc::sync::Arc)|Route<E>::oneshot_inner|Arc<T,A>::drop_slow"
     r"|^<tower::util::map_future::MapFuture<S,F> as tower_service::Service<R>>::call"
     r"|from_fn::FromFn<F,S,I,\(T1(,T2)?,?\)> as tower_service::Service<http::request::Request<axum_core::body::Body>>>::call$"),
    ("authentication: base64, SHA-256, constant-time compare",
     r"bindery::http::auth::|sha2::|base64::|subtle::|^<sha2|digest::"),
    ("tracing span per request (TraceLayer)",
     r"make_span|tracing_subscriber|tracing_core|^tracing::|^<tracing|tower_http::trace|sharded_slab|thread_local::|nu_ansi_term"),
    ("request id (UUID v4, header)", r"request_id|MakeRequestUuid|^uuid::|^<uuid|getrandom|rand::|chacha"),
    ("metrics (metrics::track)",
     r"bindery::http::metrics|metrics_exporter_prometheus|^metrics::|^<metrics|metrics_util|quanta"),
    ("hyper/httparse/http: request parse, response head, body into the write buffer",
     r"hyper::|httparse|^http::|^<http::|bytes::"),
    ("sqlx: pool, statement, protocol, row decode (incl. the ping on release)", r"sqlx|^<chrono|chrono::"),
    ("bindery: row mapping (store::row)", r"bindery::store::"),
    ("serde_json (jsonb decode, answer encode)", r"serde_json|serde::|serde_core::"),
    ("bindery: handlers, broker, middlewares' own code", r"bindery::|^<bindery::"),
    ("core::fmt (formatting)",
     r"core::fmt|^<str as core::fmt|^<alloc::string::String as core::fmt::Write>|^alloc::fmt"),
    ("axum/tower/futures polling glue", r"axum|tower|futures_util|futures_core"),
    ("tokio: scheduler, IO driver, timers", r"tokio|mio::"),
]
LEAF = re.compile(
    r"^(malloc|free|_int_malloc|_int_free|malloc_consolidate|realloc|_int_realloc|calloc|cfree"
    r"|_int_memalign|unlink_chunk.*|__rustc::__r.*|__mem(cpy|move|set|cmp)\w*|__bcmp\w*|arena.*|tcache.*)$"
)
ALLOC = {"__rustc::__rust_alloc", "__rustc::__rust_alloc_zeroed"}


def parse(path):
    """Own cost per function, and (caller, callee) -> (inclusive cost, calls)."""
    names, own = {}, collections.Counter()
    edges, calls = collections.Counter(), collections.Counter()
    fn = cfn = None
    pending = None

    def name(token):
        m = re.match(r"\((\d+)\)(?: (.*))?", token)
        if not m:
            return token
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), m.group(1))

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                fn = name(line[3:])
            elif line.startswith("cfn="):
                cfn = name(line[4:])
            elif line.startswith("calls="):
                pending = int(line[6:].split()[0])
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                try:
                    cost = int(parts[1])
                except ValueError:
                    continue
                if pending is not None:
                    edges[(fn, cfn)] += cost
                    calls[(fn, cfn)] += pending
                    pending = None
                else:
                    own[fn] += cost
    return own, edges, calls


def main():
    path, requests = sys.argv[1], int(sys.argv[2])
    own, edges, calls = parse(path)
    total = sum(own.values())
    group_of = {}
    for f in set(own) | {a for a, _ in edges}:
        if not LEAF.match(f):
            group_of[f] = next((g for g, rx in GROUPS if re.search(rx, f)), "other")
    cost = collections.Counter()
    for f, c in own.items():
        if f in group_of:
            cost[group_of[f]] += c
    for (a, b), c in edges.items():
        if LEAF.match(b) and a in group_of:
            cost[group_of[a]] += c
    allocations = sum(n for (a, b), n in calls.items() if b in ALLOC and not a.startswith("__rustc::"))
    allocator = sum(c for (a, b), c in edges.items()
                    if b.startswith("__rustc::__rust_") and not a.startswith("__rustc::"))
    print(f"{path}: {total:,} instructions, {total / requests:,.0f} per request; "
          f"{allocations / requests:.0f} allocations per request, allocator "
          f"{100 * allocator / total:.1f} % of the instructions")
    print("\n| share | instructions per request | where |\n|---:|---:|---|")
    for g, c in cost.most_common():
        print(f"| {100 * c / total:.1f} % | {c / requests:,.0f} | {g} |")
    print("\nTop functions by their own instructions:\n")
    for f, c in own.most_common(12):
        print(f"  {100 * c / total:5.1f} %  {f[:150]}")


if __name__ == "__main__":
    main()
