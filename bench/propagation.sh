#!/usr/bin/env bash
# Measures create→first-routed-request latency in cluster mode over 100 Ingress creates against
# a real kube-apiserver (the ignored trial of tests/cluster.rs); prints p50/p90/p99/max.
# Usage: bench/propagation.sh [--release]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
set -a
eval "$(bash hack/testbins/build.sh --print-env)"
set +a
profile=()
[[ ${1:-} == --release ]] && profile=(--release)
cargo test "${profile[@]}" --test cluster -- --ignored propagation_create_to_first_routed_request --nocapture 2>&1 |
  grep -oE "propagation over.*|test result.*"
