#!/usr/bin/env python3
"""Turns one load tool's output (wrk, oha JSON, h2load) plus the proxy's CPU delta into one JSON line."""
import argparse
import json
import re

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def wrk(text):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        r["requests"] = int(m.group(1))
        r["bytes"] = float(m.group(4)) * SIZES.get(m.group(5), 1)
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else 0.0
    for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M):
        r[f"p{p}_ms"] = ms(v)
    errs = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errs += int(m.group(1))
    r["errors"] = errs
    return r


def oha(text):
    j = json.loads(text[text.index("{"):])
    s = j["summary"]
    codes = j.get("statusCodeDistribution", {})
    ok = sum(n for c, n in codes.items() if str(c).startswith(("2", "3")))
    # requests still in flight when the measurement window closes are not failures
    errs = sum(codes.values()) - ok + sum(n for k, n in j.get("errorDistribution", {}).items()
                                          if "deadline" not in k)
    lp = j.get("latencyPercentiles", {})
    r = {"requests": ok, "rps": s.get("requestsPerSec", 0.0), "errors": errs,
         "bytes": s.get("totalData", 0)}
    for k in ("p50", "p90", "p99", "p99.9"):
        if lp.get(k) is not None:
            r[k.replace(".", "_") + "_ms"] = lp[k] * 1e3
    return r


def h2load(text):
    r = {}
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    r["rps"] = float(m.group(2)) if m else 0.0
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    if m:
        r["requests"] = int(m.group(1))
        r["errors"] = int(m.group(2)) + int(m.group(3))
    m = re.search(r"status codes: (\d+) 2xx", text)
    if m and "requests" in r:
        r["errors"] += r["requests"] - int(m.group(1))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        r["mean_ms"] = ms(m.group(3))
    return r


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--tool")
    a.add_argument("--raw")
    a.add_argument("--peer")
    a.add_argument("--scenario")
    a.add_argument("--run", type=int)
    a.add_argument("--cpu-ticks", nargs=2, type=int, help="user and system clock ticks")
    a.add_argument("--hz", type=int)
    a.add_argument("--wall", nargs=2, type=float)
    a.add_argument("--cpu0", nargs=4, type=float)
    a.add_argument("--load", type=float)
    a.add_argument("--pss", type=int)
    a.add_argument("--counters", nargs=2, help="bench/counters.py JSON before and after")
    o = a.parse_args()
    text = open(o.raw).read()
    try:
        r = {"wrk": wrk, "oha": oha, "h2load": h2load}[o.tool](text)
    except Exception as e:  # a crashed or empty tool run is recorded, not fatal
        r = {"rps": 0.0, "requests": 0, "errors": -1, "parse_error": str(e)}
    b0, t0, b1, t1 = o.cpu0
    user_s, sys_s = o.cpu_ticks[0] / o.hz, o.cpu_ticks[1] / o.hz
    cpu_s = user_s + sys_s
    r.update({
        "run": o.run, "peer": o.peer, "scenario": o.scenario, "tool": o.tool,
        "cpu_s": cpu_s, "cpu_user_s": user_s, "cpu_sys_s": sys_s, "wall_s": o.wall[1] - o.wall[0],
        "cpu0_busy": (b1 - b0) / (t1 - t0) if t1 > t0 else None,
        "loadavg": o.load, "pss_kib": o.pss,
    })
    if o.counters:
        before, after = (json.loads(c) for c in o.counters)
        r.update({k: after[k] - before.get(k, 0) for k in after})
    if r.get("requests"):
        r["cpu_us_per_req"] = cpu_s / r["requests"] * 1e6
        r["user_us_per_req"] = user_s / r["requests"] * 1e6
        r["sys_us_per_req"] = sys_s / r["requests"] * 1e6
        if "vol_switches" in r:
            r["sleeps_per_kreq"] = r["vol_switches"] / r["requests"] * 1e3
            r["backend_sleeps_per_kreq"] = r["backend_vol_switches"] / r["requests"] * 1e3
            r["segs_per_req"] = r["tcp_out_segs"] / r["requests"]
    if r.get("bytes"):
        r["cpu_ms_per_gb"] = cpu_s * 1e3 / (r["bytes"] / 1e9)
        r["gbps"] = r["bytes"] / 1e9 / (o.wall[1] - o.wall[0])
    print(json.dumps(r))


if __name__ == "__main__":
    main()
