#!/usr/bin/env python3
"""Prints, as one JSON object, the kernel counters that explain latency tails: TCP segments sent,
retransmissions and timeouts, listen-queue overflows and loopback backlog drops (system-wide),
the voluntary and involuntary context switches of the given pids (all their threads), and the
voluntary ones of the backend's pids, given after `--backend`.

  counters.py PROXY_PID... [--backend PID...]"""
import json
import os
import sys


def table(path, prefix):
    """Rows of /proc/net/snmp or /proc/net/netstat come in header/value pairs."""
    lines = [l.split() for l in open(path) if l.startswith(prefix)]
    out = {}
    for head, vals in zip(lines[0::2], lines[1::2]):
        out.update(zip(head[1:], (int(v) for v in vals[1:])))
    return out


def main():
    tcp = table("/proc/net/snmp", "Tcp:")
    ext = table("/proc/net/netstat", "TcpExt:")
    softnet = sum(int(l.split()[1], 16) for l in open("/proc/net/softnet_stat"))
    c = {
        "tcp_out_segs": tcp.get("OutSegs", 0),
        "tcp_retrans": tcp.get("RetransSegs", 0),
        "tcp_timeouts": ext.get("TCPTimeouts", 0),
        "tcp_loss_probes": ext.get("TCPLossProbes", 0),
        "listen_overflows": ext.get("ListenOverflows", 0),
        "backlog_drops": softnet + ext.get("TCPBacklogDrop", 0),
    }
    args = sys.argv[1:]
    cut = args.index("--backend") if "--backend" in args else len(args)
    c["vol_switches"], c["invol_switches"] = switches(args[:cut])
    c["backend_vol_switches"] = switches(args[cut + 1:])[0]
    print(json.dumps(c))


def switches(pids):
    """Voluntary and involuntary context switches of all threads of `pids`."""
    vol = invol = 0
    for pid in pids:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                for line in open(f"/proc/{pid}/task/{tid}/status"):
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
            except OSError:
                pass
    return vol, invol


if __name__ == "__main__":
    main()
