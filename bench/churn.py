#!/usr/bin/env python3
"""S8: configuration churn under load against a running Portcullis (standalone mode).

Fixed-rate oha load on /small; meanwhile a host Ingress is added or removed every second
(time-to-effect measured), the hot Service's endpoints flip between 127.0.0.2 and 127.0.0.3
every 200 ms, N WebSockets through /ws/ each echo one message per second, and M idle
keep-alive connections are held and re-used at the end. Any failed request or dropped
WebSocket fails the scenario.
"""
import argparse
import asyncio
import base64
import json
import os
import re
import subprocess
import time

HOST = "bench.test"


def pss(pid):
    try:
        return int(re.search(r"^Pss:\s+(\d+)", open(f"/proc/{pid}/smaps_rollup").read(), re.M).group(1))
    except (OSError, AttributeError):
        return 0


async def http_get(host, path="/small", port=8080):
    """Status and body of one request on a new connection."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return (int(data.split()[1]) if data else 0), data


class WebSocket:
    """A minimal RFC 6455 client: text frames up to 125 bytes, masked."""

    def __init__(self, n):
        self.n = n
        self.sent = self.echoed = 0
        self.dropped = None

    async def run(self, stop):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", 8080)
            key = base64.b64encode(os.urandom(16)).decode()
            w.write((f"GET /ws/{self.n} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            if b" 101 " not in head.split(b"\r\n")[0] + b" ":
                raise RuntimeError(head.split(b"\r\n")[0].decode())
            await asyncio.sleep(self.n % 100 / 100)
            while not stop.is_set():
                msg = f"ws {self.n} msg {self.sent}".encode()
                mask = os.urandom(4)
                w.write(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
                await w.drain()
                self.sent += 1
                hdr = await asyncio.wait_for(r.readexactly(2), 5)
                body = await asyncio.wait_for(r.readexactly(hdr[1] & 0x7F), 5)
                if body != msg:
                    raise RuntimeError("echo mismatch")
                self.echoed += 1
                try:
                    await asyncio.wait_for(stop.wait(), 1)
                except asyncio.TimeoutError:
                    pass
            w.close()
        except Exception as e:  # noqa: BLE001 - every failure is a dropped WebSocket
            self.dropped = f"{type(e).__name__}: {e}"


async def idle_conns(m):
    conns = []
    for _ in range(m):
        r, w = await asyncio.open_connection("127.0.0.1", 8080)
        w.write(f"GET /small HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        n = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        await r.readexactly(n)
        conns.append((r, w))
    return conns


async def reuse(conns):
    ok = 0
    for r, w in conns:
        try:
            w.write(f"GET /small HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            ok += head.startswith(b"HTTP/1.1 200")
        except Exception:  # noqa: BLE001
            pass
        w.close()
    return ok


def oha(secs, rate, out):
    return subprocess.Popen(
        ["taskset", "-c", "0", "oha", "-z", f"{secs}s", "-c", "64", "-q", str(rate), "--latency-correction",
         "--no-tui", "--output-format", "json", "--host", HOST, "http://127.0.0.1:8080/small"],
        stdout=open(out, "w"), stderr=subprocess.STDOUT)


def summary(path):
    j = json.loads(open(path).read())
    codes = j.get("statusCodeDistribution", {})
    lp = j.get("latencyPercentiles", {})
    return {"requests": sum(codes.values()), "non_2xx": sum(n for c, n in codes.items() if not str(c).startswith("2")),
            "errors": sum(n for k, n in j.get("errorDistribution", {}).items() if "deadline" not in k),
            "status": codes,
            "error_kinds": j.get("errorDistribution", {}),
            "p50_ms": lp.get("p50", 0) * 1e3, "p99_ms": lp.get("p99", 0) * 1e3, "p99_9_ms": (lp.get("p99.9") or 0) * 1e3}


async def main():
    a = argparse.ArgumentParser()
    a.add_argument("--manifests")
    a.add_argument("--secs", type=int, default=60)
    a.add_argument("--rate", type=int, default=10000)
    a.add_argument("--websockets", type=int, default=200)
    a.add_argument("--idle", type=int, default=1000)
    a.add_argument("--out")
    a.add_argument("--pid", type=int)
    o = a.parse_args()
    bench = os.path.join(o.manifests, "bench.yaml")
    original = open(bench).read()
    base_secs = max(5, o.secs // 4)
    res = {"secs": o.secs, "rate": o.rate, "websockets": o.websockets, "idle": o.idle}

    # before churn: the same load, for the p99 comparison
    p = oha(base_secs, o.rate, o.out + ".before")
    while p.poll() is None:
        await asyncio.sleep(0.2)
    res["before"] = summary(o.out + ".before")

    stop = asyncio.Event()
    sockets = [WebSocket(i) for i in range(o.websockets)]
    ws_tasks = [asyncio.create_task(s.run(stop)) for s in sockets]
    conns = await idle_conns(o.idle)
    p = oha(o.secs, o.rate, o.out + ".during")
    t_end = time.monotonic() + o.secs - 1
    effect, pss_series, host_on, flip, n = [], [], False, 0, 0
    next_host = time.monotonic()
    while time.monotonic() < t_end:
        flip += 1
        with open(bench + ".tmp", "w") as f:  # the hot Service's endpoints: .2 or .3
            f.write(original.replace('["127.0.0.1"]', f'["127.0.0.{2 + flip % 2}"]', 1))
        os.replace(bench + ".tmp", bench)
        if time.monotonic() >= next_host:
            next_host += 1
            path = os.path.join(o.manifests, "churn.yaml")
            if host_on:
                os.remove(path)
            else:
                n += 1
                host = f"churn-{n}.bench.test"
                with open(path + ".tmp", "w") as f:
                    f.write(f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: churn, namespace: bench}}\n"
                            f"spec:\n  ingressClassName: portcullis\n  rules:\n  - host: {host}\n    http:\n      paths:\n"
                            f"      - {{path: /small, pathType: Exact, backend: {{service: {{name: ws, port: {{number: 80}}}}}}}}\n")
                os.replace(path + ".tmp", path)
                t0 = time.monotonic()
                # the host-less rules answer the new host from nginx until the new route, to the
                # echo backend (which names itself), is in force
                while time.monotonic() - t0 < 3:
                    status, body = await http_get(host)
                    if status == 200 and b'"ws"' in body:
                        effect.append(time.monotonic() - t0)
                        break
                    await asyncio.sleep(0.01)
            host_on = not host_on
            pss_series.append(pss(o.pid))
        await asyncio.sleep(0.2)
    while p.poll() is None:
        await asyncio.sleep(0.2)
    res["during"] = summary(o.out + ".during")
    stop.set()
    await asyncio.gather(*ws_tasks)
    res["idle_reused_ok"] = await reuse(conns)
    with open(bench, "w") as f:
        f.write(original)
    if os.path.exists(os.path.join(o.manifests, "churn.yaml")):
        os.remove(os.path.join(o.manifests, "churn.yaml"))
    res["endpoint_changes"] = flip
    res["host_changes"] = n
    res["ws_dropped"] = sum(1 for s in sockets if s.dropped)
    res["ws_drop_reasons"] = sorted({s.dropped for s in sockets if s.dropped})[:5]
    res["ws_messages_echoed"] = sum(s.echoed for s in sockets)
    effect.sort()
    res["time_to_effect_ms"] = {"n": len(effect), "p50": effect[len(effect) // 2] * 1e3 if effect else None,
                                "max": effect[-1] * 1e3 if effect else None}
    res["pss_kib"] = {"min": min(pss_series, default=0), "max": max(pss_series, default=0)}
    res["failed"] = res["during"]["non_2xx"] + res["during"]["errors"] + (o.idle - res["idle_reused_ok"])
    res["pass"] = res["failed"] == 0 and res["ws_dropped"] == 0
    json.dump(res, open(o.out, "w"), indent=1)
    print(json.dumps({k: res[k] for k in ("failed", "ws_dropped", "idle_reused_ok", "time_to_effect_ms", "pass")}))


if __name__ == "__main__":
    asyncio.run(main())
