#!/usr/bin/env bash
# The one command that runs every Portcullis test: builds or reuses the pinned test binaries
# (kube-apiserver, etcd, kubectl, helm, Pebble), then runs formatting, lints and all tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash hack/testbins/build.sh
set -a
eval "$(bash hack/testbins/build.sh --print-env)"
set +a

bash hack/e2e/smoke.sh   # the control plane the cluster-mode e2e tests run against starts

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked --no-fail-fast
