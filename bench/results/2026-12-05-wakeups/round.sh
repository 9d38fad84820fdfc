#!/bin/bash
# Manual rig used for docs/benchmarks.md "Fixed-rate p99"; expects the bench/run.sh fixtures in /tmp/rig/w
# (backend nginx already running on CPU0) and BIN, EXTRA as in the rounds files.
# usage: round.sh portcullis|nginx RATE  -> prints sleeps/k, cpu0 busy, p50 p99
W=${W:-/tmp/rig/w}; PEER=$1; RATE=${2:-25500}; BIN=${BIN:-$(cd "$(dirname "$0")/../../.." && pwd)/target/release/portcullis}
cd "$(dirname "$0")/../../.."
if [ $PEER = portcullis ]; then
  RUST_LOG=warn,rustls=error taskset -c 1 $BIN serve --manifests $W/manifests --worker-threads 1 --http-listen 127.0.0.1:8080 --https-listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 --default-certificate bench/bench-tls $EXTRA > /tmp/rig/p.log 2>&1 &
  PP=$!; PIDS="$PP"
  for _ in $(seq 100); do curl -sf http://127.0.0.1:9090/readyz >/dev/null && break; sleep 0.1; done
else
  taskset -c 1 nginx -c $W/nginx-proxy.conf; sleep 0.3; M=$(cat $W/nginx-proxy.pid); PIDS="$M $(pgrep -P $M)"
fi
BE=$(pgrep -P $(cat $W/nginx-be.pid))
vs(){ local t=0; for p in "$@"; do for s in /proc/$p/task/*/status; do t=$((t+$(awk '/^voluntary/{print $2}' $s))); done; done; echo $t; }
cput(){ local t=0; for p in "$@"; do f=$(cut -d" " -f14,15 /proc/$p/stat); t=$((t+${f% *}+${f#* })); done; echo $t; }
cpu0(){ awk '$1=="cpu0"{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
taskset -c 0 wrk -t1 -c64 -d1s -H 'Host: bench.test' http://127.0.0.1:8080/small >/dev/null
a=$(vs $PIDS); b=$(vs $BE); read c0 c1 < <(cpu0); u0=$(cput $PIDS)
taskset -c 0 oha -z 4s -c 64 -q $RATE --latency-correction --no-tui --output-format json --host bench.test http://127.0.0.1:8080/small > /tmp/rig/o.json
a2=$(vs $PIDS); b2=$(vs $BE); read d0 d1 < <(cpu0); u1=$(cput $PIDS)
python3 - $PEER $a $a2 $b $b2 $c0 $c1 $d0 $d1 $u0 $u1 <<'PY'
import json,sys
p,a,a2,b,b2,c0,c1,d0,d1,u0,u1=sys.argv[1],*map(int,sys.argv[2:])
d=json.load(open('/tmp/rig/o.json')); n=d['summary']['requestsPerSec']*d['summary']['total']
lp=d['latencyPercentiles']
print(f"{p:10} n={n:.0f} sleeps/k={(a2-a)/n*1000:.1f} be/k={(b2-b)/n*1000:.1f} cpu0={(d0-c0)/(d1-c1):.3f} p50={lp['p50']*1e3:.3f} p90={lp['p90']*1e3:.3f} p99={lp['p99']*1e3:.3f} p999={lp['p99.9']*1e3:.3f} cpu_us={(u1-u0)/100/n*1e6:.2f}")
PY
if [ $PEER = portcullis ]; then kill $PP; wait $PP 2>/dev/null; else kill -TERM $M; while [ -e /proc/$M ]; do sleep 0.05; done; fi
