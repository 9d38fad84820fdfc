#!/usr/bin/env python3
"""Summarises a bench/run.sh result directory: medians (min–max) per peer and scenario,
Portcullis ÷ nginx and ÷ HAProxy ratios, target checks, and an SVG chart.

  report.py DIR   writes DIR/summary.md, DIR/summary.json, DIR/chart.svg
"""
import json
import os
import statistics
import sys
from collections import defaultdict

PEERS = ["portcullis", "nginx", "haproxy", "direct"]
COLORS = {"portcullis": "#2b6cb0", "nginx": "#38a169", "haproxy": "#dd6b20"}
# scenario -> (label, primary metric, lower is better)
SCEN = [
    ("S1-c16", "S1 small GET, keep-alive, c16", "cpu_us_per_req"),
    ("S1-c64", "S1 small GET, keep-alive, c64", "cpu_us_per_req"),
    ("S1-c256", "S1 small GET, keep-alive, c256", "cpu_us_per_req"),
    ("S1-rate", "S1 at 50% of nginx's peak (oha, fixed rate)", "cpu_us_per_req"),
    ("S1-1k", "S1 1 KiB file", "cpu_us_per_req"),
    ("S2", "S2 new connection per request", "cpu_us_per_req"),
    ("S3", "S3 TLS 1.3 full handshake (ECDSA P-256), wrk max", "cpu_us_per_req"),
    ("S3-rate", "S3 TLS 1.3 full handshake at 1,000/s (oha)", "cpu_us_per_req"),
    ("S4", "S4 TLS keep-alive", "cpu_us_per_req"),
    ("S5", "S5 HTTP/2 over TLS, h2load -c16 -m32", "cpu_us_per_req"),
    ("S5-c1m128", "S5 HTTP/2 over TLS, h2load -c1 -m128", "cpu_us_per_req"),
    ("S6-down", "S6 1 MiB download, c16", "cpu_ms_per_gb"),
    ("S6-up", "S6 1 MiB upload, c16", "cpu_us_per_req"),
    ("S7-S1", "S7 baseline: S1 with the 10,000-host table loaded", "cpu_us_per_req"),
    ("S7", "S7 random Host over 10,000 hosts (90% hit)", "cpu_us_per_req"),
]
METRICS = ["rps", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req", "cpu_ms_per_gb", "gbps", "p50_ms", "p99_ms", "p99_9_ms", "errors", "cpu0_busy", "pss_kib", "loadavg",
           "sleeps_per_kreq", "backend_sleeps_per_kreq", "tcp_retrans"]


def med(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def main():
    d = sys.argv[1]
    rows = [json.loads(l) for l in open(os.path.join(d, "results.jsonl")) if l.strip()]
    env = json.load(open(os.path.join(d, "env.json")))
    cal = json.load(open(os.path.join(d, "calibration.json")))["calibration"] if os.path.exists(os.path.join(d, "calibration.json")) else {}
    by = defaultdict(list)
    for r in rows:
        by[(r["scenario"], r["peer"])].append(r)
    summ = {}
    for (s, p), rs in by.items():
        summ.setdefault(s, {})[p] = {m: med([r.get(m) for r in rs]) for m in METRICS}
    s8 = json.load(open(os.path.join(d, "s8.json"))) if os.path.exists(os.path.join(d, "s8.json")) else None
    s9 = json.load(open(os.path.join(d, "s9.json"))) if os.path.exists(os.path.join(d, "s9.json")) else None

    def m(s, p, k):
        v = summ.get(s, {}).get(p, {}).get(k)
        return v["median"] if v else None

    def ratio(s, k, other):
        a, b = m(s, "portcullis", k), m(s, other, k)
        return a / b if a is not None and b else None

    out = [f"Run: {env.get('date')}; {env.get('cpu')}; {env.get('cores')} cores; kernel {env.get('kernel')}",
           f"Versions: {env.get('portcullis')} ({env.get('git')}, {env.get('rustc')}); {env.get('nginx')}; "
           f"{env.get('haproxy')}; {env.get('openssl')}; {env.get('wrk')}; {env.get('h2load')}; {env.get('oha')}",
           f"Load average at start: {env.get('loadavg_start')}. nginx S1 peak (calibration): {cal.get('nginx_s1_peak')} rps; fixed rate {cal.get('rate')} rps.",
           "",
           "| Scenario | Peer | rps median (min–max) | % of R0 | CPU µs/req median (min–max) | user + sys µs/req | p99 ms | errors | CPU0 busy | sleeps /1k req: proxy, backend | TCP retrans. (max) | Portcullis ÷ this (CPU/req) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    r0 = m("S1-c64", "direct", "rps")
    for s, label, key in SCEN:
        if s not in summ:
            continue
        for p in PEERS:
            v = summ[s].get(p)
            if not v:
                continue
            rps, cpu = v["rps"], v[key]
            unit = "ms/GB" if key == "cpu_ms_per_gb" else ""
            rr = ratio(s, key, p) if p in ("nginx", "haproxy") else None
            pct = f"{100 * rps['median'] / r0:.0f}%" if r0 and rps and s.startswith("S1") else ""
            out.append(f"| {label} | {p} | "
                       f"{fmt(rps['median'], 0) if rps else '–'} ({fmt(rps['min'], 0) if rps else ''}–{fmt(rps['max'], 0) if rps else ''}) | {pct} | "
                       f"{fmt(cpu['median'], 2) if cpu else '–'}{unit} ({fmt(cpu['min'], 2) if cpu else ''}–{fmt(cpu['max'], 2) if cpu else ''}) | "
                       f"{fmt(v['user_us_per_req']['median'], 2) + ' + ' + fmt(v['sys_us_per_req']['median'], 2) if v['user_us_per_req'] and key != 'cpu_ms_per_gb' else ''} | "
                       f"{fmt(v['p99_ms']['median'], 2) if v['p99_ms'] else '–'} | "
                       f"{fmt(v['errors']['max'], 0) if v['errors'] else '–'} | "
                       f"{fmt(100 * v['cpu0_busy']['median'], 0) + '%' if v['cpu0_busy'] else '–'} | "
                       f"{fmt(v['sleeps_per_kreq']['median'], 1) if v['sleeps_per_kreq'] and p != 'direct' else '–'}, "
                       f"{fmt(v['backend_sleeps_per_kreq']['median'], 1) if v['backend_sleeps_per_kreq'] else '–'} | "
                       f"{fmt(v['tcp_retrans']['max'], 0) if v['tcp_retrans'] else '–'} | {fmt(rr, 2) if rr else ''} |")
    # targets
    t = []

    def check(name, val, limit, less=True):
        ok = val is not None and (val <= limit if less else val >= limit)
        t.append({"target": name, "value": val, "limit": limit, "holds": ok})

    check("S1 CPU µs/req ≤ 0.83× nginx (≡ 1.2× throughput), c64", ratio("S1-c64", "cpu_us_per_req", "nginx"), 1 / 1.2)
    check("S1 CPU µs/req ≤ 1.0× HAProxy, c64", ratio("S1-c64", "cpu_us_per_req", "haproxy"), 1.0)
    check("S1 rps ≥ 1.2× nginx (c64; load-limited, see CPU)", ratio("S1-c64", "rps", "nginx"), 1.2, less=False)
    check("S1 rps ≥ 1.0× HAProxy (c64)", ratio("S1-c64", "rps", "haproxy"), 1.0, less=False)
    check("S1 p99 at 50% of nginx's peak ≤ nginx", ratio("S1-rate", "p99_ms", "nginx"), 1.0)
    check("S3 CPU µs/handshake ≤ nginx ÷ 1.5 (≡ 1.5× handshakes/s)", ratio("S3", "cpu_us_per_req", "nginx"), 1 / 1.5)
    check("S5 CPU µs/req ≤ nginx (≡ ≥ 1.0× throughput)", ratio("S5", "cpu_us_per_req", "nginx"), 1.0)
    check("S6 CPU ms/GB ≤ nginx (≡ ≥ 1.0× throughput), download", ratio("S6-down", "cpu_ms_per_gb", "nginx"), 1.0)
    s7, s7b = m("S7", "portcullis", "cpu_us_per_req"), m("S7-S1", "portcullis", "cpu_us_per_req")
    if s7 and s7b:
        out_s7 = f"S7 routing overhead: CPU µs/req {s7:.2f} vs {s7b:.2f} with one host ({s7 / s7b:.2f}×)"
    else:
        out_s7 = None
    if s8:
        check("S8 failed requests = 0", s8["failed"], 0)
        check("S8 WebSockets dropped = 0", s8["ws_dropped"], 0)
    if s9:
        check("S9 PSS ≤ 256 MiB (10k Ingresses, 50k endpoints), MiB", s9["pss_table_kib"] / 1024, 256)
    out += ["", "| Target | Measured | Limit | Holds |", "|---|---|---|---|"]
    for x in t:
        out.append(f"| {x['target']} | {fmt(x['value'], 2)} | {fmt(x['limit'], 2)} | {'yes' if x['holds'] else '**no**'} |")
    if out_s7:
        out += ["", out_s7]
    if s8:
        out += ["", f"S8: {json.dumps({k: s8[k] for k in ('secs', 'rate', 'endpoint_changes', 'host_changes', 'failed', 'ws_dropped', 'ws_messages_echoed', 'idle_reused_ok', 'time_to_effect_ms', 'pss_kib')})}",
                f"S8 p99 before/during churn: {fmt(s8['before']['p99_ms'], 2)} / {fmt(s8['during']['p99_ms'], 2)} ms; p99.9 {fmt(s8['before']['p99_9_ms'], 2)} / {fmt(s8['during']['p99_9_ms'], 2)} ms"]
    if s9:
        out += ["", f"S9: {json.dumps({k: v for k, v in s9.items() if k not in ('s10', 'log_tail', 'load_log')})}",
                f"S10: {json.dumps(s9.get('s10'))}"]
    open(os.path.join(d, "summary.md"), "w").write("\n".join(out) + "\n")
    json.dump({"summary": summ, "targets": t, "env": env, "calibration": cal, "s8": s8, "s9": s9},
              open(os.path.join(d, "summary.json"), "w"), indent=1)
    chart(d, summ)
    print("\n".join(out))


def chart(d, summ):
    """Horizontal grouped bars: CPU per request (or per GB) relative to nginx = 1.0, lower is better."""
    items = []
    for s, label, key in SCEN:
        n = summ.get(s, {}).get("nginx", {}).get(key)
        if not n or not n["median"]:
            continue
        vals = {}
        for p in ("portcullis", "nginx", "haproxy"):
            v = summ[s].get(p, {}).get(key)
            if v:
                vals[p] = (v["median"] / n["median"], v["min"] / n["median"], v["max"] / n["median"])
        items.append((label, vals))
    bar, gap, left, width = 11, 14, 330, 420
    h = 70 + len(items) * (3 * bar + gap) + 40
    xmax = max([2.0] + [v[2] for _, vals in items for v in vals.values()])
    xmax = min(xmax, 4.0)
    sx = lambda v: left + width * min(v, xmax) / xmax
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{h}" font-family="sans-serif" font-size="11">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="10" y="20" font-size="14" font-weight="bold">Proxy CPU per request relative to nginx (= 1.0); lower is better</text>',
         f'<text x="10" y="38" fill="#555">median of interleaved runs; whiskers min–max; one worker each, pinned to CPU1 (S6 download: CPU per GB)</text>']
    for i in range(int(xmax * 2) + 1):
        v = i / 2
        x = sx(v)
        o.append(f'<line x1="{x:.1f}" y1="50" x2="{x:.1f}" y2="{h - 35}" stroke="{"#999" if v == 1 else "#eee"}"/>')
        o.append(f'<text x="{x:.1f}" y="{h - 22}" text-anchor="middle" fill="#555">{v:g}×</text>')
    y = 58
    for label, vals in items:
        o.append(f'<text x="{left - 8}" y="{y + 1.5 * bar + 4}" text-anchor="end">{label}</text>')
        for p in ("portcullis", "nginx", "haproxy"):
            if p in vals:
                m, lo, hi = vals[p]
                o.append(f'<rect x="{left}" y="{y}" width="{sx(m) - left:.1f}" height="{bar - 2}" fill="{COLORS[p]}"/>')
                o.append(f'<line x1="{sx(lo):.1f}" y1="{y + bar / 2 - 1}" x2="{sx(hi):.1f}" y2="{y + bar / 2 - 1}" stroke="#222"/>')
                o.append(f'<text x="{sx(max(m, hi)) + 4:.1f}" y="{y + bar - 3}" fill="#333">{m:.2f}</text>')
            y += bar
        y += gap
    lx = 10
    for p in ("portcullis", "nginx", "haproxy"):
        o.append(f'<rect x="{lx}" y="{h - 14}" width="10" height="10" fill="{COLORS[p]}"/><text x="{lx + 14}" y="{h - 5}">{p}</text>')
        lx += 90
    o.append("</svg>")
    open(os.path.join(d, "chart.svg"), "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
