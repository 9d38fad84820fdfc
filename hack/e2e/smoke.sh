#!/usr/bin/env bash
# Smoke test of the cached test binaries: etcd + kube-apiserver on 127.0.0.1, admin kubeconfig, `kubectl get ns`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV=$("$HERE/../testbins/build.sh" --print-env) || exit 1
eval "$ENV"
RUN=$(mktemp -d); PKI=$RUN/pki; KC=$RUN/admin.kubeconfig; PIDS=()
teardown() {
  local i; for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do  # apiserver before etcd
    kill "${PIDS[i]}" 2>/dev/null || true; wait "${PIDS[i]}" 2>/dev/null || true
  done
  if [[ ${KEEP_RUN:-} ]]; then echo "smoke: kept $RUN" >&2; else rm -rf "$RUN"; fi
}
trap teardown EXIT
die() { echo "smoke: ERROR: $*" >&2; for f in "$RUN"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_url() {  # $1 url, $2 pid, $3 seconds, rest: curl args
  local url=$1 pid=$2 end=$((SECONDS + $3)); shift 3
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 2
    (( SECONDS < end )) || return 1
    sleep 0.2
  done
}

# PKI (EC keys, 2 days) and admin kubeconfig, as in the design note section 4
bash "$HERE/pki.sh" "$PKI" || die "PKI generation failed"
cd "$PKI"

start=$(now)
for attempt in 1 2 3; do  # free ports come from binding port 0; retry if another process grabbed one meanwhile
  ETCD_PORT=$(free_port); PEER_PORT=$(free_port); API_PORT=$(free_port)
  rm -rf "$RUN/etcd"
  "$PORTCULLIS_ETCD" --name=e2e --data-dir="$RUN/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
    --initial-cluster="e2e=http://127.0.0.1:$PEER_PORT" --unsafe-no-fsync=true --log-level=warn >"$RUN/etcd.log" 2>&1 &
  ETCD_PID=$!; PIDS+=("$ETCD_PID")
  if wait_url "http://127.0.0.1:$ETCD_PORT/health" "$ETCD_PID" 30; then break; fi
  kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true
  (( attempt < 3 )) || die "etcd did not become healthy"
done
etcd_ready=$(now)
"$PORTCULLIS_KUBE_APISERVER" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
  --authorization-mode=RBAC --service-cluster-ip-range=198.19.0.0/24 \
  --service-account-issuer="https://127.0.0.1:$API_PORT" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --disable-admission-plugins=ServiceAccount --allow-privileged=true \
  --endpoint-reconciler-type=none >"$RUN/apiserver.log" 2>&1 &
API_PID=$!; PIDS+=("$API_PID")
wait_url "https://127.0.0.1:$API_PORT/readyz" "$API_PID" 60 --cacert "$PKI/ca.crt" ||
  die "kube-apiserver not ready within 60 s (port $API_PORT)"
api_ready=$(now)

K() { "$PORTCULLIS_KUBECTL" --kubeconfig="$KC" "$@"; }
K config set-cluster e2e --server="https://127.0.0.1:$API_PORT" --certificate-authority=ca.crt --embed-certs >/dev/null
K config set-credentials admin --client-certificate=admin.crt --client-key=admin.key --embed-certs >/dev/null
K config set-context e2e --cluster=e2e --user=admin >/dev/null && K config use-context e2e >/dev/null
K get ns || die "kubectl get ns failed"
ver=$(K version) && [[ $ver == *"Server Version: v1.34"* ]] || die "unexpected server version: $ver"
awk -v s="$start" -v e="$etcd_ready" -v a="$api_ready" \
  'BEGIN { printf "smoke: OK (etcd healthy after %.1fs, kube-apiserver ready %.1fs later)\n", e - s, a - e }'
