#!/usr/bin/env bash
# Builds the e2e test binaries (kube-apiserver, kubectl, etcd, helm, pebble) missing from the cache; idempotent.
# Usage: build.sh              build what is missing, then print one "name path" line per binary
#        build.sh --print-env  build nothing; print NAME=path lines (exit 1 naming what is missing)
#        (use it as: set -a; eval "$(hack/testbins/build.sh --print-env)"; set +a)
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0            # fail instead of fetching another toolchain
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/versions.env"
CACHE=${PORTCULLIS_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/testbin}
MIN_FREE_GB=${PORTCULLIS_TESTBIN_MIN_FREE_GB:-10}
K=$K8S_VERSION; K8S=$CACHE/k8s-v$K; HELM=$CACHE/helm-$HELM_VERSION; PEB=$CACHE/pebble-$PEBBLE_VERSION

# env-var name | component | path
BINS=(
  "KUBE_APISERVER|kube-apiserver|$K8S/kube-apiserver"
  "KUBECTL|kubectl|$K8S/kubectl"
  "ETCD|etcd|$K8S/etcd"
  "HELM|helm|$HELM/helm"
  "PEBBLE|pebble|$PEB/pebble"
  "PEBBLE_CHALLTESTSRV|pebble|$PEB/pebble-challtestsrv"
  "PEBBLE_CERT|pebble|$PEB/certs/localhost/cert.pem"
  "PEBBLE_KEY|pebble|$PEB/certs/localhost/key.pem"
  "PEBBLE_CA|pebble|$PEB/certs/pebble.minica.pem"
)

die() { echo "build.sh: ERROR: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

missing_components() {  # prints each component with at least one missing file, once
  local e seen=" "
  for e in "${BINS[@]}"; do
    IFS='|' read -r _ comp path <<<"$e"
    if [[ ! -s $path && $seen != *" $comp "* ]]; then echo "$comp"; seen+="$comp "; fi
  done
}

print_env() {
  local e
  echo "PORTCULLIS_TESTBIN_CACHE=$CACHE"
  for e in "${BINS[@]}"; do IFS='|' read -r var _ path <<<"$e"; echo "PORTCULLIS_$var=$path"; done
}

check_disk() {  # every filesystem a cold build writes to needs MIN_FREE_GB free
  local d avail
  for d in "$CACHE" "$(go env GOCACHE)" "$(go env GOMODCACHE)"; do
    while [[ ! -d $d ]]; do d=$(dirname "$d"); done
    avail=$(df -Pk "$d" | awk 'NR==2 {print int($4/1048576)}')
    (( avail >= MIN_FREE_GB )) ||
      die "only ${avail} GB free on the filesystem of $d; a cold build needs >= ${MIN_FREE_GB} GB (module + build cache)"
  done
}

TMPS=()
cleanup() { [[ ${#TMPS[@]} -eq 0 ]] || rm -rf "${TMPS[@]}"; }
trap cleanup EXIT; trap "exit 130" INT TERM   # signals still run cleanup
tmpdir() { mkdir -p "$CACHE"; T=$(mktemp -d "$CACHE/.tmp-$1.XXXXXX"); TMPS+=("$T"); }  # sets T

build_k8s() {  # $1 = binary name; built in the wrapper module, stamped like upstream's hack/lib/version.sh
  local name=$1 pkg ldf="-s -w" p t start=$SECONDS minor
  minor=$(echo "$K" | cut -d. -f2)
  case $name in
    etcd) pkg=go.etcd.io/etcd/server/v3 ;;
    *) pkg=k8s.io/kubernetes/cmd/$name
       for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
         ldf+=" -X $p.gitVersion=v$K -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
       done ;;
  esac
  log "building $name (k8s v$K wrapper) ..."
  tmpdir "$name"; t=$T
  go -C "$HERE/k8s" build -trimpath -ldflags "$ldf" -o "$t/$name" "$pkg" ||
    die "building $name for Kubernetes v$K failed (go build $pkg in hack/testbins/k8s; output above)"
  mkdir -p "$K8S" && mv -f "$t/$name" "$K8S/$name"
  log "built $name in $((SECONDS - start))s"
}

build_helm() {
  local start=$SECONDS t gomod cgo major minor ldf
  log "building helm $HELM_VERSION ..."
  gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f $gomod ]] || die "helm: cannot download helm.sh/helm/v3@$HELM_VERSION"
  # helm's Makefile derives the default .Capabilities.KubeVersion from its client-go (v0.X.Y -> 1.X)
  cgo=$(awk '$1=="k8s.io/client-go" {print $2}' "$gomod"); cgo=${cgo#v}
  major=$(( ${cgo%%.*} + 1 )); minor=$(echo "$cgo" | cut -d. -f2)
  ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldf+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldf+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  tmpdir helm; t=$T
  GOBIN=$t go install -trimpath -ldflags "$ldf" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ||
    die "building helm $HELM_VERSION failed (go install helm.sh/helm/v3/cmd/helm; output above)"
  mkdir -p "$HELM" && mv -f "$t/helm" "$HELM/helm"
  log "built helm in $((SECONDS - start))s"
}

build_pebble() {
  local start=$SECONDS t dir m=github.com/letsencrypt/pebble/v2
  log "building pebble + pebble-challtestsrv $PEBBLE_VERSION ..."
  tmpdir pebble; t=$T
  GOBIN=$t go install -trimpath -ldflags "-s -w -X main.version=$PEBBLE_VERSION" \
    "$m/cmd/pebble@$PEBBLE_VERSION" "$m/cmd/pebble-challtestsrv@$PEBBLE_VERSION" ||
    die "building pebble $PEBBLE_VERSION failed (go install $m/cmd/...; output above)"
  # the TLS files pebble needs ship in the module, not in the binary
  dir=$(go mod download -json "$m@$PEBBLE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -d $dir/test/certs ]] || die "pebble: test/certs not found in the $m@$PEBBLE_VERSION module"
  install -D -m 0644 "$dir/test/certs/localhost/cert.pem" "$t/certs/localhost/cert.pem"
  install -D -m 0644 "$dir/test/certs/localhost/key.pem" "$t/certs/localhost/key.pem"
  install -D -m 0644 "$dir/test/certs/pebble.minica.pem" "$t/certs/pebble.minica.pem"
  mkdir -p "$PEB/certs/localhost"
  for f in certs/localhost/cert.pem certs/localhost/key.pem certs/pebble.minica.pem pebble-challtestsrv pebble; do
    mv -f "$t/$f" "$PEB/$f"
  done
  log "built pebble in $((SECONDS - start))s"
}

if [[ ${1:-} == --print-env ]]; then
  miss=$(missing_components)
  [[ -z $miss ]] || die "missing test binaries in $CACHE: $(echo $miss); run hack/testbins/build.sh"
  print_env; exit 0
elif [[ $# -gt 0 ]]; then
  die "unknown argument '$1' (usage: build.sh [--print-env])"
fi

miss=$(missing_components)
if [[ -n $miss ]]; then
  command -v go >/dev/null || die "go not found in PATH (needs Go >= the go line of hack/testbins/k8s/go.mod)"
  check_disk
  for comp in $miss; do
    case $comp in
      kube-apiserver|kubectl|etcd) build_k8s "$comp" ;;
      helm) build_helm ;;
      pebble) build_pebble ;;
    esac
  done
  miss=$(missing_components)
  [[ -z $miss ]] || die "still missing after the build: $(echo $miss)"
fi
for e in "${BINS[@]}"; do
  IFS='|' read -r _ _ path <<<"$e"
  [[ $path == *.pem ]] || printf '%-20s %s\n' "$(basename "$path")" "$path"
done
echo "pebble certs         $PEB/certs"
echo "export PORTCULLIS_TESTBIN_CACHE=$CACHE"
