#!/usr/bin/env bash
# Portcullis vs nginx vs HAProxy on one 2-core machine (docs/benchmarks.md, scenarios S1–S10 of
# the benchmarks design note). Loopback only; every process pinned: the proxy under test alone
# on CPU1, load generators and the neutral nginx backend on CPU0.
#
#   bench/run.sh            full matrix: 5 interleaved runs of 4 s per measurement (≈ 20 minutes)
#   bench/run.sh --quick    2 runs of 1 s, fewer variants, smaller S7-S10 (< 3 minutes)
#   options: --runs N  --secs S  --out DIR  --no-install  --no-build  --only S1,S3,...
#            --sweep (S1 also at -c16 and -c256)
#
# Writes DIR/results.jsonl (one line per measurement), DIR/env.json, raw tool output under
# DIR/raw/, then bench/report.py turns them into DIR/summary.md and DIR/chart.svg.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
QUICK=0 RUNS="" SECS="" OUT="" INSTALL=1 BUILD=1 ONLY="" SWEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --runs) RUNS="$2"; shift ;;
        --secs) SECS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        --only) ONLY="$2"; shift ;;
        --sweep) SWEEP=1 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then RUNS=${RUNS:-2}; SECS=${SECS:-1}; else RUNS=${RUNS:-5}; SECS=${SECS:-4}; fi
OUT=${OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)$([ "$QUICK" = 1 ] && echo -quick)}
W=$(mktemp -d /tmp/portcullis-bench.XXXXXX)   # configs, certificates, files, pid files
chmod 755 "$W"                                 # nginx workers (user nobody) read files/ here
mkdir -p "$OUT/raw"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# ---------------------------------------------------------------- processes we started
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for f in "$W"/nginx-proxy.pid "$W"/nginx-be.pid "$W"/haproxy.pid; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # exit (and so clean up) on a signal, never carry on

# ---------------------------------------------------------------- tools
if [ "$INSTALL" = 1 ]; then
    need=()
    for t in nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client openssl:openssl curl:curl; do
        command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
    done
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    command -v oha >/dev/null || PATH="$HOME/.cargo/bin:$PATH"
    command -v oha >/dev/null || { log "installing oha"; cargo install oha --locked -q; }
fi
PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="${PORTCULLIS_BIN:-$CARGO_TARGET_DIR/release/portcullis}"
if [ "$BUILD" = 1 ]; then
    log "building the release binary"
    (cd "$ROOT" && nice -n 5 cargo build --release --bin portcullis -q)
fi
ulimit -n "$(ulimit -Hn)"   # the sandbox caps the hard limit (20,000 here)

# ---------------------------------------------------------------- fixtures
openssl req -x509 -nodes -days 30 -subj /CN=bench.test -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$W/ecdsa.key" -out "$W/ecdsa.crt" 2>/dev/null
cat "$W/ecdsa.crt" "$W/ecdsa.key" > "$W/ecdsa.pem"
mkdir -p "$W/files" "$W/be-body" "$W/proxy-body" "$W/proxy-temp" "$W/manifests"
head -c 1024 /dev/urandom > "$W/files/1k.bin"
head -c 1048576 /dev/urandom > "$W/files/1m.bin"
python3 "$HERE/gen_manifests.py" base "$W/manifests" "$W/ecdsa.crt" "$W/ecdsa.key"
for c in nginx-backend.conf nginx-proxy.conf haproxy.cfg; do sed "s|@DIR@|$W|g" "$HERE/conf/$c" > "$W/$c"; done

# ---------------------------------------------------------------- measurement helpers
# CPU clock ticks "user system" (utime, stime; children not included) of the given pids.
cpu_of() {
    local u=0 s=0 p f
    for p in "$@"; do
        f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
        u=$((u + ${f% *})); s=$((s + ${f#* }))
    done
    echo "$u $s"
}
# busy and total jiffies of one CPU
cpu_line() { awk -v c="cpu$1" '$1==c {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
pss_of() {
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0))); done
    echo "$t"
}
PEER="" PEER_PIDS=() BACKEND_PIDS=() RUN=0
# measure SCENARIO TOOL CMD...: runs the load command on CPU0, records proxy CPU, CPU0 busy,
# load average and the tool's output as one JSON line.
measure() {
    local scen="$1" tool="$2"; shift 2
    local raw="$OUT/raw/$RUN-$PEER-$scen.txt"
    local u0 s0 u1 s1 a0 a1 t0 t1 load k0 k1
    load=$(cut -d' ' -f1 /proc/loadavg)
    k0=$(python3 "$HERE/counters.py" "${PEER_PIDS[@]}" --backend "${BACKEND_PIDS[@]}")
    read -r u0 s0 < <(cpu_of "${PEER_PIDS[@]}"); a0=$(cpu_line 0); t0=$(date +%s.%N)
    taskset -c 0 "$@" > "$raw" 2>&1 || true
    t1=$(date +%s.%N); read -r u1 s1 < <(cpu_of "${PEER_PIDS[@]}"); a1=$(cpu_line 0)
    k1=$(python3 "$HERE/counters.py" "${PEER_PIDS[@]}" --backend "${BACKEND_PIDS[@]}")
    python3 "$HERE/parse.py" --tool "$tool" --raw "$raw" --peer "$PEER" --scenario "$scen" --run "$RUN" \
        --cpu-ticks $((u1 - u0)) $((s1 - s0)) --hz "$(getconf CLK_TCK)" --wall "$t0" "$t1" --cpu0 $a0 $a1 \
        --load "$load" --pss "$(pss_of "${PEER_PIDS[@]}")" --counters "$k0" "$k1" >> "$RESULTS"
    tail -n1 "$RESULTS" | cut -c1-200 >&2
}
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

start_backend() {
    taskset -c 0 nginx -c "$W/nginx-backend.conf"
    wait_port 9000
    BACKEND_PIDS=($(pgrep -P "$(cat "$W/nginx-be.pid")"))   # its workers
    taskset -c 0 "$BIN" echo --listen 127.0.0.1:9002 --name ws >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port 9002
}

start_peer() {
    PEER="$1"
    case "$PEER" in
        portcullis)
            # access log off like the peers'; rustls would warn on every IP-address SNI
            RUST_LOG=warn,rustls=error taskset -c 1 "$BIN" serve --manifests "$W/manifests" --worker-threads 1 \
                --http-listen 127.0.0.1:8080 --https-listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 \
                --default-certificate bench/bench-tls --shutdown-drain-delay 0s --shutdown-grace-period 1s \
                2>> "$OUT/raw/portcullis.log" &
            PIDS+=($!); PEER_PIDS=($!)
            for _ in $(seq 600); do curl -sf http://127.0.0.1:9090/readyz >/dev/null && break; sleep 0.1; done ;;
        nginx)
            taskset -c 1 nginx -c "$W/nginx-proxy.conf"
            wait_port 8080
            local m; m=$(cat "$W/nginx-proxy.pid"); PEER_PIDS=("$m" $(pgrep -P "$m")) ;;
        haproxy)
            taskset -c 1 haproxy -W -D -f "$W/haproxy.cfg"
            wait_port 8080
            local m; m=$(cat "$W/haproxy.pid"); PEER_PIDS=("$m" $(pgrep -P "$m")) ;;
        direct) PEER_PIDS=() ;;
    esac
}
stop_peer() {
    case "$PEER" in
        portcullis) kill "${PEER_PIDS[0]}"; wait "${PEER_PIDS[0]}" 2>/dev/null || true ;;
        nginx) kill -TERM "$(cat "$W/nginx-proxy.pid")"; while [ -e "/proc/${PEER_PIDS[0]}" ]; do sleep 0.05; done ;;
        haproxy) kill -TERM "$(cat "$W/haproxy.pid")"; while [ -e "/proc/${PEER_PIDS[0]}" ]; do sleep 0.05; done ;;
    esac
    sleep 0.3
}

# ---------------------------------------------------------------- environment record
python3 - "$OUT/env.json" "$BIN" <<'EOF'
import json, subprocess, sys, platform, datetime
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip() + subprocess.run(c, shell=True, capture_output=True, text=True).stderr.strip()
    except Exception as e: return str(e)
env = {
  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  "kernel": platform.release(),
  "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
  "cores": sh("nproc"),
  "portcullis": sh(sys.argv[2] + " --version"),
  "git": sh("git -C " + sys.argv[2].rsplit('/', 3)[0] + " rev-parse --short HEAD 2>/dev/null"),
  "rustc": sh("rustc --version"),
  "nginx": sh("nginx -v"), "haproxy": sh("haproxy -v | head -1"), "openssl": sh("openssl version"),
  "wrk": sh("wrk -v | head -1"), "h2load": sh("h2load --version"), "oha": sh("oha --version"),
  "loadavg_start": open("/proc/loadavg").read().strip(),
}
json.dump(env, open(sys.argv[1], "w"), indent=1)
EOF

S=$SECS
H=(-H 'Host: bench.test')
start_backend

# Calibration: nginx's saturated S1 rate sets the fixed rate (50%) of the latency runs.
RUN=0; start_peer nginx
taskset -c 0 wrk -t1 -c64 -d2s "${H[@]}" http://127.0.0.1:8080/small > /dev/null
taskset -c 0 wrk -t1 -c64 -d"${S}s" "${H[@]}" http://127.0.0.1:8080/small > "$OUT/raw/calibration.txt"
stop_peer
PEAK=$(awk '/Requests\/sec/ {printf "%d", $2}' "$OUT/raw/calibration.txt")
RATE=$((PEAK / 2)); TLSRATE=1000
log "nginx S1 peak ${PEAK} rps; fixed rate ${RATE} rps"
echo "{\"calibration\": {\"nginx_s1_peak\": $PEAK, \"rate\": $RATE, \"tls_rate\": $TLSRATE}}" > "$OUT/calibration.json"

scenarios() {
    local base=http://127.0.0.1:8080 tls=https://127.0.0.1:8443
    [ "$PEER" = direct ] && base=http://127.0.0.1:9000
    # warm-up (discarded)
    taskset -c 0 wrk -t1 -c64 -d1s "${H[@]}" "$base/small" > /dev/null 2>&1 || true
    if want S1; then
        for c in $([ "$SWEEP" = 1 ] && echo 16 64 256 || echo 64); do
            measure "S1-c$c" wrk wrk -t1 -c"$c" -d"${S}s" --latency "${H[@]}" "$base/small"
        done
        measure S1-rate oha oha -z "${S}s" -c 64 -q "$RATE" --latency-correction --no-tui --output-format json --host bench.test "$base/small"
        [ "$QUICK" = 1 ] || measure S1-1k wrk wrk -t1 -c64 -d"${S}s" --latency "${H[@]}" "$base/files/1k.bin"
    fi
    if want S6; then
        measure S6-down wrk wrk -t1 -c16 -d"${S}s" "${H[@]}" "$base/files/1m.bin"
        [ "$QUICK" = 1 ] || measure S6-up oha oha -z "${S}s" -c 16 -m POST -D "$W/files/1m.bin" --no-tui --output-format json "$base/sink"
    fi
    [ "$PEER" = direct ] && return
    if want S2; then
        measure S2 wrk wrk -t1 -c64 -d"${S}s" -H 'Connection: close' "${H[@]}" "$base/small"
    fi
    if want S3; then
        measure S3 wrk wrk -t1 -c64 -d"${S}s" -H 'Connection: close' "${H[@]}" "$tls/small"
        [ "$QUICK" = 1 ] || measure S3-rate oha oha -z "${S}s" -c 64 -q "$TLSRATE" --disable-keepalive --insecure --no-tui --output-format json "$tls/small"
    fi
    if want S4; then
        measure S4 wrk wrk -t1 -c64 -d"${S}s" --latency "${H[@]}" "$tls/small"
    fi
    if want S5; then
        measure S5 h2load h2load -c16 -m32 -D"$S" --warm-up-time=0 "$tls/small"
        [ "$QUICK" = 1 ] || measure S5-c1m128 h2load h2load -c1 -m128 -D"$S" --warm-up-time=0 "$tls/small"
    fi
}

# Interleaved runs: the order of the three proxies rotates every run.
ORDERS=("portcullis nginx haproxy" "nginx haproxy portcullis" "haproxy portcullis nginx")
for RUN in $(seq 1 "$RUNS"); do
    log "run $RUN/$RUNS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    start_peer direct; scenarios
    for p in ${ORDERS[$(( (RUN - 1) % 3 ))]}; do
        start_peer "$p"; scenarios; stop_peer
    done
done

# Portcullis-only scenarios: routing at 10,000 hosts, churn under load, memory and propagation
# at scale.
if want S7; then
    log "S7: 10,000-host route table (Portcullis; relative to its own S1 in the same process)"
    python3 "$HERE/gen_manifests.py" hosts "$W/manifests" "$W/ecdsa.crt" "$W/ecdsa.key"
    for RUN in $(seq 1 "$([ "$QUICK" = 1 ] && echo 1 || echo "$RUNS")"); do
        start_peer portcullis
        taskset -c 0 wrk -t1 -c64 -d1s "${H[@]}" http://127.0.0.1:8080/small > /dev/null 2>&1 || true
        measure S7-S1 wrk wrk -t1 -c64 -d"${S}s" --latency "${H[@]}" http://127.0.0.1:8080/small
        measure S7 wrk wrk -t1 -c64 -d"${S}s" --latency -s "$HERE/s7.lua" http://127.0.0.1:8080/small
        stop_peer
    done
    rm -f "$W"/manifests/hosts-*.yaml
fi
if want S8; then
    log "S8: configuration churn under load"
    RUN=1; start_peer portcullis
    python3 "$HERE/churn.py" --manifests "$W/manifests" --secs $([ "$QUICK" = 1 ] && echo 10 || echo 60) \
        --rate "$RATE" --websockets 200 --idle 1000 --out "$OUT/s8.json" --pid "${PEER_PIDS[0]}" 2>&1 | tail -n 5 >&2
    stop_peer
fi
if want S9; then
    log "S9/S10: 10,000 Ingresses, 50,000 endpoints, 1,000 TLS Secrets"
    mkdir -p "$W/scale"; cp "$W/manifests/bench.yaml" "$W/scale/"
    python3 "$HERE/gen_manifests.py" scale "$W/scale" "$W/ecdsa.crt" "$W/ecdsa.key"
    python3 "$HERE/scale.py" --bin "$BIN" --manifests "$W/scale" --out "$OUT/s9.json" \
        --idle $([ "$QUICK" = 1 ] && echo 1000 || echo 10000) --changes $([ "$QUICK" = 1 ] && echo 5 || echo 50) 2>&1 | tail -n 5 >&2
fi

python3 "$HERE/report.py" "$OUT"
log "results in $OUT"
