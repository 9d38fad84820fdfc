#!/usr/bin/env bash
# Soak: constant-rate load at a share of measured peak through the real binary on loopback,
# one configuration change per second, RSS and open file descriptors sampled every 10 s.
# Bounded in time; kills only the processes it started. Exit 1 on any error or non-200.
#
#   bench/soak.sh [--duration 600] [--share 70] [--rate R] [--bin PATH] [--out DIR]
#
# Needs: a release binary (built if --bin is not given), oha (`cargo install oha --locked`).
# Prints one summary line per figure and keeps oha's JSON, the samples (CSV) and the log in DIR.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DURATION=600 SHARE=70 RATE="" BIN="" OUT="" CONNS=16
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift ;;
        --share) SHARE="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --bin) BIN="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || { echo "oha not found: cargo install oha --locked" >&2; exit 69; }
. "$HERE/lib.sh"
bench_prepare soak
HTTP=$(free_port) HTTPS=$(free_port) ADMIN=$(free_port) BE_A=$(free_port) BE_B=$(free_port)

"$BIN" echo --listen "127.0.0.1:$BE_A" --name a >/dev/null 2>&1 & PIDS+=($!)
"$BIN" echo --listen "127.0.0.1:$BE_B" --name b >/dev/null 2>&1 & PIDS+=($!)
M="$W/manifests"; mkdir -p "$M"
svc() { # name port
    printf 'apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec: {ports: [{name: http, port: 80}]}\n---\n' "$1"
    printf 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s-1, labels: {kubernetes.io/service-name: %s}}\n' "$1" "$1"
    printf 'addressType: IPv4\nports: [{name: http, port: %s}]\nendpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]\n' "$2"
}
ing() { # name host service
    printf 'apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: %s}\nspec:\n  ingressClassName: portcullis\n' "$1"
    printf '  rules:\n  - host: %s\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: %s, port: {number: 80}}}}]}\n' "$2" "$3"
}
put() { printf '%s' "$2" > "$M/.$1.tmp" && mv "$M/.$1.tmp" "$M/$1"; }
put svc.yaml "$(svc a "$BE_A"; echo ---; svc b "$BE_B")"
put soak.yaml "$(ing soak soak.test a)"
wait_port "$BE_A"; wait_port "$BE_B"

RUST_LOG=warn "$BIN" serve --manifests "$M" --http-listen "127.0.0.1:$HTTP" --https-listen "127.0.0.1:$HTTPS" \
    --admin-listen "127.0.0.1:$ADMIN" --manifests-poll-interval 250ms --shutdown-drain-delay 0s \
    > "$OUT/portcullis.log" 2>&1 & PC=$!; PIDS+=($PC)
wait_port "$HTTP"
for _ in $(seq 100); do curl -sf -o /dev/null -H 'Host: soak.test' "http://127.0.0.1:$HTTP/" && break; sleep 0.1; done
URL="http://127.0.0.1:$HTTP/"

if [ -z "$RATE" ]; then
    oha -z 10s -c "$CONNS" -w --no-tui --output-format json -H 'Host: soak.test' "$URL" > "$OUT/peak.json"
    PEAK=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"]))' "$OUT/peak.json")
    RATE=$(( PEAK * SHARE / 100 ))
    echo "peak: $PEAK req/s with $CONNS connections; soak rate ${SHARE}%: $RATE req/s"
fi

echo "t_s,rss_kib,fds,changes" > "$OUT/samples.csv"
sample() { echo "$1,$(awk '/^VmRSS:/{print $2}' "/proc/$PC/status"),$(ls "/proc/$PC/fd" | wc -l),$2" >> "$OUT/samples.csv"; }
oha -z "${DURATION}s" -q "$RATE" -c "$CONNS" -w --no-tui --output-format json -H 'Host: soak.test' "$URL" \
    > "$OUT/soak.json" & LOAD=$!; PIDS+=($LOAD)
start=$(date +%s) changes=0
sample 0 0
while kill -0 "$LOAD" 2>/dev/null; do
    sleep 1
    changes=$((changes + 1))
    # One change a second: the route flips backend, and a second Ingress comes and goes.
    if [ $((changes % 2)) -eq 0 ]; then put soak.yaml "$(ing soak soak.test a)"; else put soak.yaml "$(ing soak soak.test b)"; fi
    if [ $((changes % 4)) -lt 2 ]; then put extra.yaml "$(ing extra "e$changes.test" a)"; else rm -f "$M/extra.yaml"; fi
    now=$(( $(date +%s) - start ))
    [ $((now % 10)) -eq 0 ] && sample "$now" "$changes"
    [ "$now" -gt $((DURATION + 60)) ] && { echo "load did not end" >&2; exit 1; }
done
wait "$LOAD" || true
sample "$(( $(date +%s) - start ))" "$changes"
RELOADS=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^portcullis_config_reloads_total\{result="success"\}/{print $2}')
python3 - "$OUT/soak.json" "$OUT/samples.csv" "$changes" "$RELOADS" "$RATE" <<'EOF'
import csv, json, sys
r = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
codes = r.get("statusCodeDistribution", {})
errors = r.get("errorDistribution", {})
total = sum(codes.values()) + sum(errors.values())
ok = codes.get("200", 0)
lat = r.get("latencyPercentiles", {})
rss = [int(x["rss_kib"]) for x in rows]
fds = [int(x["fds"]) for x in rows]
# Memory after warm-up (second sample on) against the end.
warm = rss[1] if len(rss) > 2 else rss[0]
print(f"requests: {total} at {sys.argv[5]} req/s target, {r['summary']['requestsPerSec']:.0f} req/s achieved")
print(f"status codes: {codes}; errors: {errors or 'none'}")
print(f"success: {100.0 * ok / max(total, 1):.3f}%")
print(f"latency p50 {lat.get('p50', 0) * 1000:.2f} ms, p99 {lat.get('p99', 0) * 1000:.2f} ms")
print(f"configuration changes: {sys.argv[3]} written, {sys.argv[4]} successful reloads")
print(f"RSS KiB: start {rss[0]}, after warm-up {warm}, end {rss[-1]}, max {max(rss)}; fds: {min(fds)}..{max(fds)}")
sys.exit(0 if ok == total and total > 0 else 1)
EOF
