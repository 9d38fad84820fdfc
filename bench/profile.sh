#!/usr/bin/env bash
# Instruction counts per request (valgrind callgrind), repeatable whatever the machine's load:
# one proxy at a time under callgrind, N keep-alive requests, counters zeroed after warm-up.
# With --strace: system calls per request instead (strace -c on the running proxy).
#
#   bench/profile.sh [--bin PATH] [--requests N] [--peers "portcullis nginx haproxy"]
#                    [--scenario S1|S4|S5] [--strace] [--out DIR]
# S1: HTTP/1.1 keep-alive; S4: the same over TLS; S5: HTTP/2 over TLS, 16 connections x 32 streams.
# Prints "peer Ir/request" (or "peer syscalls/request") lines; keeps callgrind.out.* (or
# strace tables) in DIR.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis" N=20000 PEERS="portcullis nginx haproxy" SCEN=S1 OUT="" STRACE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift ;;
        --requests) N="$2"; shift ;;
        --peers) PEERS="$2"; shift ;;
        --scenario) SCEN="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --strace) STRACE=1 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
OUT=${OUT:-$ROOT/bench/results/profile-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
PATH="$HOME/.cargo/bin:$PATH"
ulimit -n "$(ulimit -Hn)"   # the sandbox caps the hard limit (20,000 here)
W=$(mktemp -d /tmp/portcullis-profile.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ -s "$W/nginx-be.pid" ] && kill "$(cat "$W/nginx-be.pid")" 2>/dev/null
    sleep 0.3; rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # exit (and so clean up) on a signal, never carry on
openssl req -x509 -nodes -days 30 -subj /CN=bench.test -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$W/ecdsa.key" -out "$W/ecdsa.crt" 2>/dev/null
cat "$W/ecdsa.crt" "$W/ecdsa.key" > "$W/ecdsa.pem"
mkdir -p "$W/files" "$W/be-body" "$W/proxy-body" "$W/proxy-temp" "$W/manifests"
head -c 1024 /dev/urandom > "$W/files/1k.bin"
python3 "$HERE/gen_manifests.py" base "$W/manifests" "$W/ecdsa.crt" "$W/ecdsa.key"
for c in nginx-backend.conf nginx-proxy.conf haproxy.cfg; do sed "s|@DIR@|$W|g" "$HERE/conf/$c" > "$W/$c"; done
# foreground variants for valgrind: no daemon, no master process
sed -i 's/^worker_processes 1;.*$/worker_processes 1; daemon off; master_process off;/' "$W/nginx-proxy.conf"
wait_port() { for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
taskset -c 0 nginx -c "$W/nginx-backend.conf"; wait_port 9000

URL=http://127.0.0.1:8080/small
[ "$SCEN" = S4 ] && URL=https://127.0.0.1:8443/small
LOAD=(--h1 -c 16)
[ "$SCEN" = S5 ] && URL=https://127.0.0.1:8443/small && LOAD=(-c 16 -m 32)
for peer in $PEERS; do
    case "$peer" in
        portcullis) cmd=("$BIN" serve --manifests "$W/manifests" --worker-threads 1 --http-listen 127.0.0.1:8080
                         --https-listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 --default-certificate bench/bench-tls
                         --shutdown-drain-delay 0s --shutdown-grace-period 1s) ;;
        nginx) cmd=(nginx -c "$W/nginx-proxy.conf") ;;
        haproxy) cmd=(haproxy -f "$W/haproxy.cfg") ;;
    esac
    if [ "$STRACE" = 1 ]; then
        [ "$peer" = nginx ] && sed -i 's/ daemon off; master_process off;//' "$W/nginx-proxy.conf"
        if [ "$peer" = nginx ]; then
            taskset -c 1 "${cmd[@]}"; wait_port 8080; vp=$(pgrep -P "$(cat "$W/nginx-proxy.pid")")
        else
            RUST_LOG=warn,rustls=error taskset -c 1 "${cmd[@]}" > "$OUT/$peer.log" 2>&1 &
            vp=$!; PIDS+=($vp); wait_port 8080
        fi
        taskset -c 0 h2load "${LOAD[@]}" -n 2000 "$URL" > /dev/null
        strace -c -f -p "$vp" -o "$OUT/$peer.strace.txt" & sp=$!; sleep 1
        taskset -c 0 h2load "${LOAD[@]}" -n "$N" "$URL" > "$OUT/$peer.h2load.txt"
        kill -INT "$sp"; wait "$sp" 2>/dev/null || true
        if [ "$peer" = nginx ]; then kill "$(cat "$W/nginx-proxy.pid")"; sleep 0.5; else kill "$vp"; wait "$vp" 2>/dev/null || true; fi
        ok=$(awk '/^status codes:/ {print $3}' "$OUT/$peer.h2load.txt")
        calls=$(python3 -c "import re,sys; print(sum(int(m.group(1)) for m in re.finditer(r'^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(?!total)[a-z_0-9]+\s*$', open(sys.argv[1]).read(), re.M)))" "$OUT/$peer.strace.txt")
        echo "$peer $SCEN requests=$ok syscalls=$calls syscalls/request=$(python3 -c "print(round($calls / max(1, $ok), 2))")" | tee -a "$OUT/summary.txt"
        continue
    fi
    RUST_LOG=warn,rustls=error taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.$peer" \
        "${cmd[@]}" > "$OUT/$peer.log" 2>&1 &
    vp=$!; PIDS+=($vp)
    wait_port 8080
    taskset -c 0 h2load "${LOAD[@]}" -n 2000 "$URL" > /dev/null   # warm-up: pool, caches
    callgrind_control -z "$vp" > /dev/null
    taskset -c 0 h2load "${LOAD[@]}" -n "$N" "$URL" > "$OUT/$peer.h2load.txt"
    callgrind_control -d "$vp" > /dev/null
    sleep 1
    kill -INT "$vp" 2>/dev/null || true; sleep 1; kill "$vp" 2>/dev/null || true; wait "$vp" 2>/dev/null || true
    ok=$(awk '/^status codes:/ {print $3}' "$OUT/$peer.h2load.txt")
    f="$OUT/callgrind.out.$peer.1"   # the dump made after zeroing: the measured requests only
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
    echo "$peer $SCEN requests=$ok Ir=$ir Ir/request=$(( ir / (ok > 0 ? ok : 1) ))" | tee -a "$OUT/summary.txt"
    callgrind_annotate --inclusive=no "$f" 2>/dev/null | head -n 60 > "$OUT/$peer.top.txt" || true
done
