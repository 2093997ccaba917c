#!/usr/bin/env bash
# Memory: countersign's resident set (VmRSS) at rest, with 1,000 idle
# keep-alive client connections (each has made one proxied call and stays
# open), and sampled every 5 s through a 60 s wrk run at 64 connections on
# the xrtc route, to show it does not grow. Installs wrk and nginx if missing.
#
#   scripts/bench-memory.sh                  # 1000 idle, 60 s of load
#   IDLE=2000 SECONDS_LOAD=120 scripts/bench-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-1000}
SECONDS_LOAD=${SECONDS_LOAD:-60}
UP_PORT=${UP_PORT:-18210}
CS_PORT=${CS_PORT:-18211}

. scripts/lib.sh
install_if_missing wrk wrk
install_if_missing nginx nginx-light
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# countersign and the idle clients each hold IDLE sockets.
ulimit -n $((IDLE * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet
work=$(mktemp -d)
cs_pid=""
cleanup() {
  [ -n "$cs_pid" ] && kill "$cs_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

upstream_conf "$work" "$UP_PORT" > "$work/nginx.conf"
"$NGINX" -c "$work/nginx.conf" -p "$work" 2>/dev/null
cat > "$work/cs.toml" <<TOML
[server]
listen = "127.0.0.1:$CS_PORT"
state_dir = "$work/state"
$(xrtc_route "$UP_PORT")
TOML
RUST_LOG=warn target/release/countersign run -c "$work/cs.toml" 2>"$work/cs.log" &
cs_pid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$CS_PORT) 2>/dev/null && break
  sleep 0.1
done
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$cs_pid/status"; }
body='{items:[{"portalid":"bench","payload":"hello"}]}'
curl -s -o /dev/null "http://127.0.0.1:$CS_PORT/xrtc/v1/item/set" -d "$body"
echo "at rest (one session held):        $(rss) MiB"

# IDLE clients: each makes one call on a keep-alive connection, then waits.
python3 - "$CS_PORT" "$IDLE" "$body" "$work/idle.ready" <<'PY' &
import socket, sys, time
port, n, body, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
req = ("POST /xrtc/v1/item/set HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    socks.append(s)
open(ready, "w").close()
time.sleep(3600)
PY
idle_pid=$!
for _ in $(seq 600); do [ -f "$work/idle.ready" ] && break; sleep 0.1; done
sleep 1
echo "with $IDLE idle keep-alive clients: $(rss) MiB"
kill "$idle_pid" 2>/dev/null || true
sleep 1
echo "after they closed:                 $(rss) MiB"

wrk_bodies "$work"
wrk -t2 -c64 -d"${SECONDS_LOAD}s" -s "$work/xrtc.lua" "http://127.0.0.1:$CS_PORT/xrtc/v1/item/set" > "$work/wrk.txt" &
wrk_pid=$!
samples=()
for t in $(seq 5 5 "$SECONDS_LOAD"); do
  sleep 5
  samples+=("$(rss)")
  echo "  load t=${t}s: $(rss) MiB"
done
wait "$wrk_pid" || true
grep -E "Requests/sec" "$work/wrk.txt"
first=${samples[0]}; last=${samples[-1]}
peak=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)
# Growth once warm: from the sample a third of the way in to the last.
warm=${samples[$(( ${#samples[@]} / 3 ))]}
echo "under load: first sample $first MiB, last $last MiB, peak $peak MiB"
echo "growth once warm (from t=$(( (${#samples[@]} / 3 + 1) * 5 ))s to the end): $(awk -v a="$warm" -v b="$last" 'BEGIN {printf "%+.1f", b - a}') MiB"
echo "peak RSS of the whole run (VmHWM): $(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$cs_pid/status") MiB"
