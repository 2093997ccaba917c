#!/usr/bin/env bash
# Instructions countersign executes per proxied request, by callgrind: the
# same binary and inputs give the same count within 0.1 %, whatever else the
# machine is doing, so optimisations can be judged where wrk's figures are
# too noisy. One worker under valgrind, 200 warm-up requests, counters
# zeroed, N keep-alive requests from one client, counters dumped.
# Also counts nginx's own proxy_pass the same way, as the reference.
#
#   scripts/count-instructions.sh            # xrtc and teamdrive, 2000 requests
#   N=5000 KINDS=xrtc scripts/count-instructions.sh
#   KINDS="xrtc tts" scripts/count-instructions.sh   # tts: a 1 kB JSON body (sequential only)
#   BIN=target/profiling/countersign scripts/count-instructions.sh   # with symbols, for callgrind_annotate
#   CONNS=16 scripts/count-instructions.sh   # under load: wrk at 16 connections for DURATION
#   LEVELS="warn info" KINDS=xrtc scripts/count-instructions.sh   # the access log's cost (RUST_LOG)
#   KINDS=xrtc-redis scripts/count-instructions.sh   # xrtc with its limits in Redis (AOF everysec)
#   CG_OPTS="--cache-sim=yes" CONNS=16 scripts/count-instructions.sh   # and simulated cache misses
#
# One sequential client pays the event loop's wake-up on every request; under
# load one wake-up serves many, as in the benchmark. CONNS shows that count.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
KINDS=${KINDS:-xrtc teamdrive}
UP_PORT=${UP_PORT:-18220}
PORT=${PORT:-18221}
BIN=${BIN:-target/release/countersign}
CONNS=${CONNS:-}
DURATION=${DURATION:-10s}
# RUST_LOG for countersign, one count each: "info" writes the access log
# (to a file here, as a log collector would read it), "warn" does not.
LEVELS=${LEVELS:-warn}
REDIS_PORT=${REDIS_PORT:-18222}
. scripts/lib.sh
install_if_missing valgrind valgrind
install_if_missing nginx nginx-light
[ -n "$CONNS" ] && install_if_missing wrk wrk
[ "$BIN" = target/release/countersign ] && cargo build --release --quiet
work=$(mktemp -d)
echo "callgrind output: $work"
redis_pid=
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT

mkdir -p "$work/ngx"
upstream_conf "$work" "$UP_PORT" > "$work/up.conf"
proxy_conf "$work/ngx" "$UP_PORT" "$PORT" 1 "master_process off; daemon off;" > "$work/proxy.conf"
cat > "$work/cs.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
state_dir = "$work/state"
workers = 1
$(xrtc_route "$UP_PORT")
$(teamdrive_route "$UP_PORT")
[routes.tts]
kind = "tts"
upstream = "http://127.0.0.1:$UP_PORT"
identifier = "www.example.com"
client_ver = "V4.21.04"
email = "bench@example.com"
password = "bench-password"
access_key = "bench-access-key"
secret = "bench-secret"
ip_address = "192.0.2.10"
TOML
case " $KINDS " in
  *" xrtc-redis "*)
    install_if_missing redis-server redis-server
    # Redis as operators run it for countersign: AOF, fsync every second.
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
      --appendfsync everysec --dir "$work" --logfile "$work/redis.log" &
    redis_pid=$!
    cat > "$work/cs-redis.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
state = "redis://127.0.0.1:$REDIS_PORT/0"
workers = 1
$(xrtc_route "$UP_PORT" 1000000)
TOML
    ;;
esac
cat > "$work/client.py" <<'PY'
import http.client, sys
n, port, path, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
payload = "x" * 240
if kind == "xrtc":
    body, ct = '{items:[{"portalid":"bench","payload":"%s"}]}' % payload, "application/json"
elif kind == "tts":
    # ~1 kB liveLogs body, as scripts/bench-proxy.sh sends.
    filters = ",".join('{"url":"https://www.example.com/p/%d","ratio":0.%d5}' % (i, i) for i in range(20))
    body = '{"action":"liveLogs","output":"json","limit":50,"lastId":"","filters":[%s]}' % filters
    ct = "application/json"
else:
    body, ct = ("<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>getuserdata</command>"
                "<requesttime>1</requesttime><username>bench-user-%s</username></teamdrive>" % payload), "text/xml"
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("POST", path, body, {"Content-Type": ct})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
wrk_bodies "$work"
nginx -c "$work/up.conf" -p "$work" 2>/dev/null

count() { # label path kind -- command...
  local label=$1 path=$2 kind=$3; shift 3
  rm -f "$work"/cg.out.*
  valgrind --tool=callgrind ${CG_OPTS:-} --callgrind-out-file="$work/cg.out.%p" "$@" 2>"$work/${label// /_}.log" &
  local vg=$!
  for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
  local n=$N
  if [ -n "$CONNS" ]; then
    local url="http://127.0.0.1:$PORT$path"
    wrk -t1 -c4 -d3s -s "$work/$kind.lua" "$url" >/dev/null
    callgrind_control -z "$vg" >/dev/null 2>&1
    n=$(wrk -t2 -c"$CONNS" -d"$DURATION" -s "$work/$kind.lua" "$url" | awk '/requests in/ {print $1}')
  else
    python3 "$work/client.py" 200 "$PORT" "$path" "$kind"
    callgrind_control -z "$vg" >/dev/null 2>&1
    python3 "$work/client.py" "$N" "$PORT" "$path" "$kind"
  fi
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  local total
  total=$(cat "$work"/cg.out.*.* | awk '/^summary:/ {s += $2} END {print s}')
  printf '%-28s %8d instructions/request (%d requests)\n' "$label" $((total / n)) "$n"
  # With CG_OPTS="--cache-sim=yes": every event callgrind counted, per request.
  if [ -n "${CG_OPTS:-}" ]; then
    cat "$work"/cg.out.*.* | awk -v n="$n" '/^events:/ {for (i = 2; i <= NF; i++) name[i] = $i}
      /^summary:/ {for (i = 2; i <= NF; i++) s[i] += $i}
      END {printf "%28s", ""; for (i = 2; i in s; i++) printf " %s %.1f", name[i], s[i] / n; print ""}'
  fi
  kill "$vg"; wait "$vg" 2>/dev/null || true
  mkdir -p "$work/$label" && mv "$work"/cg.out.* "$work/$label/" 2>/dev/null || true
}

for kind in $KINDS; do
  conf=$work/cs.toml client=$kind
  case $kind in
    xrtc) path=/xrtc/v1/item/set ;;
    xrtc-redis) path=/xrtc/v1/item/set conf=$work/cs-redis.toml client=xrtc ;;
    teamdrive) path=/teamdrive/yvva/api/api.xml ;;
    tts) path=/tts/www.example.com ;;
    *) echo "unknown kind $kind" >&2; exit 2 ;;
  esac
  for level in $LEVELS; do
    RUST_LOG=$level count "countersign $kind $level" "$path" "$client" "$BIN" run -c "$conf"
  done
done
count "nginx proxy_pass" /xrtc/v1/item/set xrtc nginx -c "$work/proxy.conf" -p "$work/ngx"
case " $LEVELS " in
  *" info "*)
    mkdir -p "$work/ngx-log"
    proxy_conf "$work/ngx-log" "$UP_PORT" "$PORT" 1 "master_process off; daemon off;" on > "$work/proxy-log.conf"
    count "nginx proxy_pass, access log" /xrtc/v1/item/set xrtc nginx -c "$work/proxy-log.conf" -p "$work/ngx-log"
    ;;
esac
