# Shared start-up of the scripts that run the real binary on loopback (h2spec.sh, soak.sh).
# Source it after ROOT, BIN and OUT are set from the options.
#
#   bench_prepare NAME   builds the release binary when BIN is empty; OUT defaults to
#                        bench/results/NAME-<UTC time>; W is a fresh work directory; every pid
#                        added to PIDS is stopped (by its pid) and W removed on exit.
#   free_port, wait_port PORT

bench_prepare() {
    if [ -z "$BIN" ]; then
        (cd "$ROOT" && cargo build --release --quiet)
        BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis"
    fi
    OUT=${OUT:-$ROOT/bench/results/$1-$(date -u +%Y%m%dT%H%M%SZ)}
    mkdir -p "$OUT"
    W=$(mktemp -d "/tmp/portcullis-$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT INT TERM
}

bench_cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$W"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
