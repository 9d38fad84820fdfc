#!/usr/bin/env bash
# Copies the generated CRDs (every file of crds/) into the Helm chart (charts/portcullis/crds/), so the
# two are byte-identical; tests/chart.rs fails when they differ. Files in the chart that no
# longer exist in crds/ are removed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=crds
dst=charts/portcullis/crds
if [[ ! -d $src ]]; then
  rm -rf "$dst"
  echo "no $src/: removed $dst"
  exit 0
fi
mkdir -p "$dst"
for f in "$dst"/*; do
  [[ -e $f ]] || continue
  [[ -e $src/$(basename "$f") ]] || { rm -f "$f"; echo "removed $f"; }
done
for f in "$src"/*; do
  [[ -f $f ]] || continue
  cp "$f" "$dst/"
  echo "copied $f -> $dst/"
done
