#!/usr/bin/env bash
# Regenerates the wrapper module hack/testbins/k8s/{go.mod,go.sum} after a K8S_VERSION bump (commit the result).
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0   # fail instead of fetching another toolchain
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/versions.env"
K=$K8S_VERSION; S=0.${K#1.}                # 1.34.4 -> 0.34.4
cd "$HERE/k8s"
rm -f go.mod go.sum
go mod init portcullis.dev/testbins/k8s
MOD=$(go mod download -json "k8s.io/kubernetes@v$K" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -f $MOD ]] || { echo "bootstrap: cannot download k8s.io/kubernetes@v$K" >&2; exit 1; }
go mod edit -go="$(awk '$1=="go"{print $2}' "$MOD")"   # the Go floor upstream declares, not ours
go mod edit -godebug="$(awk '$1=="godebug"{print $2}' "$MOD")"
# Every staging module upstream resolves locally (`=> ./staging/...`) maps to its published v0.X.Y tag.
for m in $(awk '$1 ~ /^k8s\.io\// && $2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$MOD"); do
  go mod edit -replace="$m=$m@v$S"
done
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K" "k8s.io/kubernetes/cmd/kubectl@v$K"
ETCD=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)   # the version Kubernetes pins
go get -tool "go.etcd.io/etcd/server/v3@$ETCD"                   # always pinned: a bare go get upgrades
go mod tidy
echo "bootstrap: k8s v$K, staging v$S, etcd $ETCD, $(grep -c '=> k8s.io/' go.mod) replaces"
