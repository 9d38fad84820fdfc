#!/usr/bin/env python3
"""S9 and S10: Portcullis with 10,000 Ingresses, 10,000 Services, 50,000 endpoints and 1,000
TLS Secrets (standalone mode), pinned to CPU1.

S9: time to the first loaded table, PSS with the table alone, peak PSS during a table swap,
    PSS per idle HTTP and TLS keep-alive connection.
S10: time from a manifest write to the first correct response, for a new host, an endpoint
    change (reachable <-> unreachable) and a Secret rotation.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import ssl
import subprocess
import tempfile
import time
import urllib.request


def pss(pid):
    try:
        return int(re.search(r"^Pss:\s+(\d+)", open(f"/proc/{pid}/smaps_rollup").read(), re.M).group(1))
    except (OSError, AttributeError):
        return 0


def ready():
    try:
        with urllib.request.urlopen("http://127.0.0.1:9090/readyz", timeout=1) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001
        return False


def get(host, path="/"):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=2)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        return r.status, r.read()
    except Exception:  # noqa: BLE001
        return 0, b""
    finally:
        c.close()


def cert_fp(host):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import socket
    with socket.create_connection(("127.0.0.1", 8443), timeout=2) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e3 if xs else None


async def hold(n, tls):
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    conns = []
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", 8443 if tls else 8080, ssl=ctx)
        w.write(b"GET /small HTTP/1.1\r\nHost: bench.test\r\n\r\n")
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        await r.readexactly(int(re.search(rb"content-length: (\d+)", head, re.I).group(1)))
        conns.append(w)
    return conns


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--bin")
    a.add_argument("--manifests")
    a.add_argument("--out")
    a.add_argument("--idle", type=int, default=10000)
    a.add_argument("--changes", type=int, default=100)
    o = a.parse_args()
    d = o.manifests
    sys_secret = open(os.path.join(d, "bench.yaml")).read()
    res = {}
    t0 = time.monotonic()
    log = open(o.out + ".log", "w")
    p = subprocess.Popen(["taskset", "-c", "1", o.bin, "serve", "--manifests", d, "--worker-threads", "1",
                          "--http-listen", "127.0.0.1:8080", "--https-listen", "127.0.0.1:8443",
                          "--admin-listen", "127.0.0.1:9090", "--default-certificate", "bench/bench-tls",
                          "--shutdown-drain-delay", "0s", "--shutdown-grace-period", "1s"],
                         stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="info,access=off,rustls=error"))
    try:
        peak = 0
        while not ready():
            peak = max(peak, pss(p.pid))
            time.sleep(0.02)
            if time.monotonic() - t0 > 120:
                raise SystemExit("not ready after 120 s")
        res["first_load_s"] = time.monotonic() - t0
        res["peak_pss_first_load_kib"] = peak
        time.sleep(1)
        m = re.findall(r"configuration loaded.*", open(o.out + ".log").read())
        res["load_log"] = m[-1][:300] if m else None
        res["pss_table_kib"] = pss(p.pid)
        # a swap: one small file changes, the whole table is recompiled and swapped
        peak, t1 = 0, time.monotonic()
        write(os.path.join(d, "swap.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
        write(os.path.join(d, "prop-host-0.yaml"),
              "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: swap, namespace: bench}\n"
              "spec:\n  ingressClassName: portcullis\n  rules:\n  - host: swap.bench.test\n    http:\n      paths:\n"
              "      - {path: /, pathType: Prefix, backend: {service: {name: ws, port: {number: 80}}}}\n")
        while time.monotonic() - t1 < 10:
            peak = max(peak, pss(p.pid))
            s, b = get("swap.bench.test")
            if s == 200 and b'"ws"' in b:
                break
            time.sleep(0.01)
        res["swap_s"] = time.monotonic() - t1
        for _ in range(20):
            peak = max(peak, pss(p.pid))
            time.sleep(0.02)
        res["peak_pss_swap_kib"] = peak
        res["log_tail"] = [l[:300] for l in re.findall(r"configuration loaded.*", open(o.out + ".log").read())[-3:]]

        # idle connections
        loop = asyncio.new_event_loop()
        for tls in (False, True):
            time.sleep(3)  # let the allocator return what the table swap freed
            before = pss(p.pid)
            conns = loop.run_until_complete(hold(o.idle, tls))
            time.sleep(0.5)
            after = pss(p.pid)
            res[f"idle_{'tls' if tls else 'http'}"] = {"n": len(conns), "pss_kib_before": before, "pss_kib_after": after,
                                                       "kib_per_conn": (after - before) / max(1, len(conns))}
            for w in conns:
                w.close()
            loop.run_until_complete(asyncio.sleep(1))
        res["pss_after_idle_kib"] = pss(p.pid)

        # S10 propagation
        new_host, endpoint, rotation = [], [], []
        for i in range(o.changes):
            host = f"new-{i}.bench.test"
            t1 = time.monotonic()
            write(os.path.join(d, f"prop-host-{i % 5}.yaml"),
                  f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: prop-{i % 5}, namespace: bench}}\n"
                  f"spec:\n  ingressClassName: portcullis\n  rules:\n  - host: {host}\n    http:\n      paths:\n"
                  "      - {path: /, pathType: Prefix, backend: {service: {name: ws, port: {number: 80}}}}\n")
            while time.monotonic() - t1 < 10:
                s, b = get(host)
                if s == 200 and b'"ws"' in b:
                    new_host.append(time.monotonic() - t1)
                    break
                time.sleep(0.005)
        # endpoint flips of Service ws between a live and a dead address (502 when dead)
        text = sys_secret
        probe = f"new-{max(i for i in range(o.changes) if i % 5 == 0)}.bench.test"  # routed to ws
        for i in range(o.changes):
            live = i % 2 == 1
            t1 = time.monotonic()
            cut = text.rindex('["127.0.0.1"]', 0, text.index("kind: Secret"))  # Service ws
            write(os.path.join(d, "bench.yaml"),
                  text[:cut] + f'["127.0.0.{1 if live else 4}"]' + text[cut + len('["127.0.0.1"]'):])
            while time.monotonic() - t1 < 10:
                s, _ = get(probe)
                if (s == 200) == live:
                    endpoint.append(time.monotonic() - t1)
                    break
                time.sleep(0.005)
        write(os.path.join(d, "bench.yaml"), text)
        # Secret rotation: tls-0 (host h0.bench.test) alternates between two certificates
        fps = []
        with tempfile.TemporaryDirectory() as td:
            pair = []
            for n in range(2):
                k, c = os.path.join(td, f"{n}.key"), os.path.join(td, f"{n}.crt")
                subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "30", "-subj", f"/CN=rot{n}", "-newkey", "ec",
                                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", k, "-out", c], capture_output=True, check=True)
                pair.append((open(c).read(), open(k).read()))
                fps.append(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pair[-1][0])).hexdigest())
            b64 = lambda s: base64.b64encode(s.encode()).decode()
            for i in range(o.changes):
                crt, key = pair[i % 2]
                t1 = time.monotonic()
                write(os.path.join(d, "rotate.yaml"),
                      "apiVersion: v1\nkind: Secret\nmetadata: {name: tls-0, namespace: bench}\ntype: kubernetes.io/tls\n"
                      f"data:\n  tls.crt: {b64(crt)}\n  tls.key: {b64(key)}\n")
                while time.monotonic() - t1 < 10:
                    try:
                        if cert_fp("h0.bench.test") == fps[i % 2]:
                            rotation.append(time.monotonic() - t1)
                            break
                    except OSError:
                        pass
                    time.sleep(0.005)
        res["s10"] = {k: {"n": len(v), "p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "max_ms": max(v) * 1e3 if v else None,
                          "missed": o.changes - len(v)}
                      for k, v in (("new_host", new_host), ("endpoint_change", endpoint), ("secret_rotation", rotation))}
        res["pss_end_kib"] = pss(p.pid)
    finally:
        p.terminate()
        p.wait()
    json.dump(res, open(o.out, "w"), indent=1)
    print(json.dumps({k: res[k] for k in ("first_load_s", "pss_table_kib", "peak_pss_swap_kib")}))
    print(json.dumps(res["s10"]))


if __name__ == "__main__":
    main()
