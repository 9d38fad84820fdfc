#!/usr/bin/env python3
"""Groups a callgrind profile's exclusive cost per request by the crate (or library) of the
function that executes it: `callgrind_groups.py REQUESTS callgrind.out...` prints one Markdown
table per profile. Code inlined into a function counts for that function's crate, so
`core::ptr` code inside a hyper function counts as hyper."""
import re
import subprocess
import sys
from collections import defaultdict

GROUPS = [
    ("allocator (malloc/free)", r"malloc\.c|/mimalloc|libmimalloc|alloc-aligned|arena\.c|free\.c"),
    ("memcpy/memmove", r"memmove|memcpy|memset"),
    ("hyper (HTTP/1 and HTTP/2 state machines)", r"/hyper-1\.|/h2-0\."),
    ("hyper-util (server auto, legacy client)", r"/hyper-util-"),
    ("http (HeaderMap, Uri)", r"/http-1\.|/http-body"),
    ("httparse", r"/httparse-"),
    ("tokio (I/O driver, scheduler, timers)", r"/tokio-1\.|/tokio-util-"),
    ("SipHash (HashMap keys)", r"hash/sip\.rs"),
    ("portcullis (proxy, routes, telemetry)", r"/work/main/src/|/portcullis/src/"),
    ("prometheus-client", r"/prometheus-client-"),
    ("rustls / aws-lc", r"/rustls-|aws-lc|/tokio-rustls"),
    ("nginx / haproxy", r"/nginx|haproxy|src/http/|src/event/|src/core/|src/os/"),
    ("libc (other)", r"libc\.so|/glibc|sysdeps|\./string/|\./nptl|\./io/|\./socket/|\./misc/"),
    ("Rust std/core (other)", r"/rustc/"),
]


CRATES = [
    ("hyper_util::", "hyper-util (server auto, legacy client)"),
    ("hyper::", "hyper (HTTP/1 and HTTP/2 state machines)"),
    ("h2::", "hyper (HTTP/1 and HTTP/2 state machines)"),
    ("tokio::", "tokio (I/O driver, scheduler, timers)"),
    ("tokio_util::", "tokio (I/O driver, scheduler, timers)"),
    ("httparse::", "httparse"),
    ("http::", "http (HeaderMap, Uri)"),
    ("http_body_util::", "http (HeaderMap, Uri)"),
    ("portcullis::", "portcullis (proxy, routes, telemetry)"),
    ("prometheus_client::", "prometheus-client"),
    ("core::hash::sip", "SipHash (HashMap keys)"),
    ("rustls::", "rustls / aws-lc"),
    ("mimalloc", "allocator (malloc/free)"),
    ("mi_", "allocator (malloc/free)"),
    ("_mi_", "allocator (malloc/free)"),
]


def classify(ob, fl, fn):
    """The group of a function: libc allocator/memcpy by file, else the crate whose path occurs
    first in the function's name, else by file and object."""
    for g, rx in GROUPS[:2]:
        if re.search(rx, fl):
            return g
    hits = [(fn.find(tok), g) for tok, g in CRATES if tok in fn]
    if hits:
        return min(hits)[1]
    for g, rx in GROUPS:
        if re.search(rx, f"{fl} {fn}"):
            return g
    return next((g for g, rx in GROUPS if re.search(rx, ob)), "other")


def self_costs(path):
    """Exclusive Ir per (object, source file, function), read from the callgrind format
    directly (the inclusive cost line after each `calls=` line is skipped)."""
    names = {"fl": {}, "fn": {}, "ob": {}}
    cur = {"ob": "", "fl": "", "fi": None, "fn": ""}
    costs = defaultdict(int)
    skip_next = False
    total = 0

    def name(kind, v):
        m = re.match(r"\((\d+)\)(?: (.*))?", v)
        if not m:
            return v
        table = names["fl" if kind in ("fl", "fi", "fe", "cfi", "cfl") else "fn" if kind in ("fn", "cfn") else "ob"]
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        c = line[0]
        if c.isdigit() or c in "+-*":
            parts = line.split()
            if skip_next:
                skip_next = False
                continue
            if len(parts) >= 2:
                ir = int(parts[1])
                costs[(cur["ob"], cur["fi"] or cur["fl"], cur["fn"])] += ir
                total += ir
            continue
        key, _, val = line.partition("=")
        if key in ("ob", "fl", "fn"):
            cur[key] = name(key, val)
            if key in ("fl", "fn"):
                cur["fi"] = None
        elif key in ("fi", "fe"):
            cur["fi"] = name(key, val)
        elif key in ("cob", "cfi", "cfl", "cfn"):
            name(key, val)
        elif key == "calls":
            skip_next = True
    return costs, total


def main():
    n = int(sys.argv[1])
    for path in sys.argv[2:]:
        costs, total = self_costs(path)
        groups = defaultdict(int)
        for (ob, fl, fn), ir in costs.items():
            groups[classify(ob, fl, fn)] += ir
        print(f"\n{path}: {total / n:,.0f} Ir/request")
        print("| where | Ir/request | share |\n|---|---|---|")
        for g, ir in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f"| {g} | {ir / n:,.0f} | {100 * ir / total:.1f}% |")
        if "-v" in sys.argv[1:2]:
            pass


if __name__ == "__main__":
    main()
