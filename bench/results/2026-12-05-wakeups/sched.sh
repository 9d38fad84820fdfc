#!/bin/bash
# usage: sched.sh PEER -> perf sched record 1s during fixed-rate run
W=${W:-/tmp/rig/w}; PEER=$1; RATE=${2:-25500}; BIN=${BIN:-$(cd "$(dirname "$0")/../../.." && pwd)/target/release/portcullis}
cd "$(dirname "$0")/../../.."
if [ $PEER = portcullis ]; then
  RUST_LOG=warn,rustls=error taskset -c 1 $BIN serve --manifests $W/manifests --worker-threads 1 --http-listen 127.0.0.1:8080 --https-listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 --default-certificate bench/bench-tls --shutdown-drain-delay 0s $EXTRA > /tmp/rig/p.log 2>&1 &
  PP=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:9090/readyz >/dev/null && break; sleep 0.1; done
else
  taskset -c 1 nginx -c $W/nginx-proxy.conf; sleep 0.3; M=$(cat $W/nginx-proxy.pid)
fi
taskset -c 0 wrk -t1 -c64 -d1s -H 'Host: bench.test' http://127.0.0.1:8080/small >/dev/null
taskset -c 0 oha -z 4s -c 64 -q $RATE --latency-correction --no-tui --output-format json --host bench.test http://127.0.0.1:8080/small > /tmp/rig/o-$PEER.json &
OP=$!
sleep 1.5
perf sched record -o /tmp/rig/sched-$PEER.data -- sleep 0.5 >/dev/null 2>&1
wait $OP
if [ $PEER = portcullis ]; then kill $PP; wait $PP 2>/dev/null; else kill -TERM $M; while [ -e /proc/$M ]; do sleep 0.05; done; fi
