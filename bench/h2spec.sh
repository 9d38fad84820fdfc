#!/usr/bin/env bash
# HTTP/2 conformance of the real binary with h2spec (https://github.com/summerwind/h2spec),
# over h2c with prior knowledge and over TLS, on loopback. Kills only what it started.
#
#   bench/h2spec.sh [--bin PATH] [--out DIR]
#
# Needs h2spec: `GOBIN=$HOME/.cache/portcullis/testbin go install github.com/summerwind/h2spec/cmd/h2spec@latest`.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="" OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
PATH="$HOME/.cache/portcullis/testbin:$HOME/go/bin:$PATH"
command -v h2spec >/dev/null || { echo "h2spec not found (see the header of this script)" >&2; exit 69; }
. "$HERE/lib.sh"
bench_prepare h2spec
HTTP=$(free_port) HTTPS=$(free_port) ADMIN=$(free_port) BE=$(free_port)
"$BIN" echo --listen "127.0.0.1:$BE" --name h2spec >/dev/null 2>&1 & PIDS+=($!)
cat > "$W/all.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: be}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: be-1, labels: {kubernetes.io/service-name: be}}
addressType: IPv4
ports: [{name: http, port: $BE}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all}
spec:
  ingressClassName: portcullis
  defaultBackend: {service: {name: be, port: {number: 80}}}
EOF
RUST_LOG=warn "$BIN" serve --manifests "$W" --http-listen "127.0.0.1:$HTTP" --https-listen "127.0.0.1:$HTTPS" \
    --admin-listen "127.0.0.1:$ADMIN" --shutdown-drain-delay 0s > "$OUT/portcullis.log" 2>&1 & PIDS+=($!)
wait_port "$BE"; wait_port "$HTTP"; wait_port "$HTTPS"
status=0
h2spec -h 127.0.0.1 -p "$HTTP" -o 5 -j "$OUT/h2c.xml" > "$OUT/h2c.txt" 2>&1 || status=1
h2spec -h 127.0.0.1 -p "$HTTPS" -t -k -o 5 -j "$OUT/tls.xml" > "$OUT/tls.txt" 2>&1 || status=1
for f in h2c tls; do echo "$f: $(tail -n 3 "$OUT/$f.txt" | grep -E 'tests,' || echo 'no summary')"; done
grep -h -B2 -A6 '×' "$OUT/h2c.txt" "$OUT/tls.txt" | head -80 || true
exit $status
