#!/bin/bash
W=${W:-/tmp/rig/w}; PEER=$1; RATE=${2:-25500}; BIN=${BIN:-$(cd "$(dirname "$0")/../../.." && pwd)/target/release/portcullis}
cd "$(dirname "$0")/../../.."
if [ $PEER = portcullis ]; then
  RUST_LOG=warn,rustls=error taskset -c 1 $BIN serve --manifests $W/manifests --worker-threads 1 --http-listen 127.0.0.1:8080 --https-listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 --default-certificate bench/bench-tls --shutdown-drain-delay 0s $EXTRA > /tmp/rig/p.log 2>&1 &
  PP=$!; TP=$PP
  for _ in $(seq 100); do curl -sf http://127.0.0.1:9090/readyz >/dev/null && break; sleep 0.1; done
else
  taskset -c 1 nginx -c $W/nginx-proxy.conf; sleep 0.3; M=$(cat $W/nginx-proxy.pid); TP=$(pgrep -P $M)
fi
taskset -c 0 wrk -t1 -c64 -d1s -H 'Host: bench.test' http://127.0.0.1:8080/small >/dev/null
taskset -c 0 oha -z 4s -c 64 -q $RATE --latency-correction --no-tui --output-format json --host bench.test http://127.0.0.1:8080/small > /tmp/rig/o-$PEER.json &
OP=$!
sleep 1.5
perf record -q -e 'syscalls:sys_exit_epoll_wait,syscalls:sys_exit_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait' -p $TP -o /tmp/rig/ep-$PEER.data -- sleep 1 >/dev/null 2>&1
wait $OP
if [ $PEER = portcullis ]; then kill $PP; wait $PP 2>/dev/null; else kill -TERM $M; while [ -e /proc/$M ]; do sleep 0.05; done; fi
perf script -i /tmp/rig/ep-$PEER.data 2>/dev/null > /tmp/rig/ep-$PEER.txt
python3 - $PEER <<'PY'
import sys,re,collections
p=sys.argv[1]; rets=[]; tos=collections.Counter()
for l in open(f'/tmp/rig/ep-{p}.txt'):
    m=re.search(r'sys_exit_epoll_p?wait: 0x([0-9a-f]+)',l)
    if m: rets.append(int(m.group(1),16)); continue
    m=re.search(r'timeout: 0x([0-9a-f]+)',l)
    if m:
        t=int(m.group(1),16); t= t-2**64 if t>2**63 else t; tos[t if t<=0 else ('>0')]+=1
print(p,'calls',len(rets),'zero-ret',sum(1 for r in rets if r==0),'mean events',round(sum(rets)/max(1,len(rets)),2),'hist',collections.Counter(min(r,10) for r in rets).most_common(11),'timeouts',dict(tos))
PY
