#!/usr/bin/env bash
# Load test: a fast local upstream (nginx answering from memory) measured
# directly, through nginx proxy_pass (upstream keepalive, no signing: the bar),
# and through countersign on a route of each kind with signing on (xrtc:
# session cookie held and added, rate limit and quota counted; utilsio: HMAC;
# teamdrive: XML edit + md5; tts: 1 kB JSON parsed, filled, canonical JSON +
# SHA-256 checksum, session headers), alternating runs to cancel machine drift.
# cs-xrtc-redis is the xrtc route again on a second countersign whose limits
# live in Redis (rate slots in batches, quota units in blocks): what sharing
# state costs. With the access log on (RUST_LOG=info, the default, to a file
# as a log collector would read it): nginx-log is the nginx baseline with its
# access log (buffered, flushed every 100 ms), cs-xrtc-info the xrtc route on
# a third countersign at info.
# Prints requests/s, p50 and p99 for each, the ratios to nginx and to direct,
# the proxy's CPU time per request (user + system, from /proc, over the
# round: the nginx workers for nginx, the countersign process for a route,
# plus Redis for cs-xrtc-redis, the upstream for direct) and its ratio to
# nginx's, the kernel's part of that CPU, the proxy's sleeps (voluntary
# context switches) and preemptions (involuntary ones) per request, the
# machine's idle time over the round, what everything else (wrk, the
# upstream) spent per request, and countersign's peak RSS. With no idle
# time, requests/s = cores / (proxy + others): docs/performance.md, "What
# the tts bar asks for". busy/nginx is that rate against nginx's, as if
# neither had left a core idle: (nginx's cpu + others) / (this one's). With everything on the same cores,
# requests/s moves by 10-25 % between rounds as the scheduler interleaves
# wrk, the proxy and the upstream; CPU per request moves far less.
#
#   scripts/bench-proxy.sh                 # 2 rounds of 10 s at 64 connections
#   ROUNDS=3 DURATION=20s CONNS=128 scripts/bench-proxy.sh
#   TARGETS="nginx cs-xrtc" ROUNDS=3 DURATION=5s scripts/bench-proxy.sh   # a subset
#   TARGETS="nginx nginx-log cs-xrtc cs-xrtc-info cs-xrtc-redis" scripts/bench-proxy.sh   # logs and Redis
#   BASE_BIN=/tmp/countersign-old TARGETS="nginx cs-xrtc base-xrtc cs-teamdrive base-teamdrive" \
#     scripts/bench-proxy.sh   # another build (e.g. the last release) on the same config, same run
#   TARGETS="nginx nginx-tts cs-xrtc cs-tts" scripts/bench-proxy.sh   # tts against nginx with the same body
#   BASE_WORKERS=2 TARGETS="nginx cs-tts base-tts" scripts/bench-proxy.sh   # this build with 2 worker threads
#   SCHED=batch scripts/bench-proxy.sh   # nginx's workers and countersign both under SCHED_BATCH
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
UP_PORT=${UP_PORT:-18200}
CS_PORT=${CS_PORT:-18201}
NGX_PORT=${NGX_PORT:-18202}
CS2_PORT=${CS2_PORT:-18203}
TARGETS=${TARGETS:-direct nginx cs-xrtc cs-utilsio cs-teamdrive cs-tts cs-xrtc-redis cs-aws cs-recipe nginx-log cs-xrtc-info}
REDIS_PORT=${REDIS_PORT:-18204}
CS3_PORT=${CS3_PORT:-18205}
BASE_PORT=${BASE_PORT:-18207}
BASE_WORKERS=${BASE_WORKERS:-}
# BASE_WORKERS alone: this build again, with that many worker threads.
BASE_BIN=${BASE_BIN:-${BASE_WORKERS:+target/release/countersign}}
NGX2_PORT=${NGX2_PORT:-18206}

. scripts/lib.sh
install_if_missing wrk wrk
install_if_missing nginx nginx-light
install_if_missing redis-server redis-server
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for pidfile in "$work/nginx.pid" "$work/proxy/nginx.pid" "$work/proxy-log/nginx.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  # They may still be writing their last lines (Redis its AOF, nginx its
  # logs): up to 5 s for them to go, then a few tries at the directory.
  for _ in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do rm -rf "$work" 2>/dev/null && break; sleep 0.2; done
}
trap cleanup EXIT

# The upstream (one nginx worker).
upstream_conf "$work" "$UP_PORT" > "$work/nginx.conf"
# The baseline, in its own nginx with one worker per core (nginx's
# `worker_processes auto`, its best setting here: 4 workers on 2 cores
# measured 0.83x of 2): plain reverse proxying to the same upstream, kept
# alive. NGINX_WORKERS says otherwise.
mkdir -p "$work/proxy"
proxy_conf "$work/proxy" "$UP_PORT" "$NGX_PORT" "${NGINX_WORKERS:-$(nproc)}" > "$work/proxy.conf"
"$NGINX" -c "$work/proxy.conf" -p "$work/proxy" 2>/dev/null
# The same with its access log on, as nginx usually runs.
mkdir -p "$work/proxy-log"
proxy_conf "$work/proxy-log" "$UP_PORT" "$NGX2_PORT" "${NGINX_WORKERS:-$(nproc)}" "" on > "$work/proxy-log.conf"
"$NGINX" -c "$work/proxy-log.conf" -p "$work/proxy-log" 2>/dev/null
"$NGINX" -c "$work/nginx.conf" -p "$work" 2>/dev/null

cat > "$work/cs.toml" <<TOML
[server]
listen = "127.0.0.1:$CS_PORT"
state_dir = "$work/state"
$(xrtc_route "$UP_PORT")
[routes.utilsio]
kind = "utilsio"
upstream = "http://127.0.0.1:$UP_PORT/api/v1"
app_id = "bench-app"
app_hash = "4d7a1f0c2b9e8d6a5f3c1e0b7a9d8c6f4e2a1b3c5d7e9f0a2b4c6d8e0f1a3b5c"
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
[routes.aws]
kind = "aws"
upstream = "http://127.0.0.1:$UP_PORT"
service = "s3"
region = "us-east-1"
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
[routes.recipe]
kind = "recipe"
upstream = "http://127.0.0.1:$UP_PORT"
secrets = { key = "bench-api-key", secret = "bench-secret-key" }
vars = { recv_window = "5000" }
[[routes.recipe.sign]]
query.recvWindow = "vars.recv_window"
query.timestamp = "now_ms()"
[[routes.recipe.sign]]
query.signature = "hex(hmac_sha256(secrets.secret, request.query + string(request.body)))"
header."X-MBX-APIKEY" = "secrets.key"
TOML
RUST_LOG=warn target/release/countersign run -c "$work/cs.toml" 2>"$work/cs.log" &
cs_pid=$!
pids+=("$cs_pid")
ports="$CS_PORT $CS2_PORT $CS3_PORT"
# A baseline build on the same routes (its own state dir and port).
if [ -n "$BASE_BIN" ]; then
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$BASE_PORT\"${BASE_WORKERS:+\\nworkers = $BASE_WORKERS}|" \
    -e "s|^state_dir = .*|state_dir = \"$work/state-base\"|" "$work/cs.toml" > "$work/cs-base.toml"
  RUST_LOG=warn "$BASE_BIN" run -c "$work/cs-base.toml" 2>"$work/cs-base.log" &
  base_pid=$!
  pids+=("$base_pid")
  ports="$ports $BASE_PORT"
fi

# Redis as operators run it for countersign: AOF, fsync every second.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
  --appendfsync everysec --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
cat > "$work/cs-redis.toml" <<TOML
[server]
listen = "127.0.0.1:$CS2_PORT"
state = "redis://127.0.0.1:$REDIS_PORT/0"
$(xrtc_route "$UP_PORT" 1000000)
TOML
RUST_LOG=warn target/release/countersign run -c "$work/cs-redis.toml" 2>"$work/cs-redis.log" &
cs2_pid=$!
pids+=("$cs2_pid")
# The xrtc route at the default log level: one access line per request.
cat > "$work/cs-info.toml" <<TOML
[server]
listen = "127.0.0.1:$CS3_PORT"
state_dir = "$work/state-info"
$(xrtc_route "$UP_PORT")
TOML
RUST_LOG=info target/release/countersign run -c "$work/cs-info.toml" 2>"$work/cs-info.log" &
cs3_pid=$!
pids+=("$cs3_pid")
ports_pids="$cs_pid $cs2_pid $cs3_pid${base_pid:+ $base_pid}"
for port in $ports; do
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
done

# ~300-byte XRTC and TeamDrive bodies.
wrk_bodies "$work"
# ~1 kB TTS liveLogs body.
filters=$(for i in $(seq 0 19); do printf '{"url":"https://www.example.com/p/%d","ratio":0.%d5},' "$i" "$i"; done)
cat > "$work/tts.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"action":"liveLogs","output":"json","limit":50,"lastId":"","filters":[${filters%,}]}'
wrk.headers["Content-Type"] = "application/json"
LUA
cat > "$work/utilsio.lua" <<LUA
wrk.method = "GET"
wrk.headers["x-utilsio-device-id"] = "bench-device-0001"
LUA

# wrk prints latencies like 1.23ms / 456.78us / 1.02s; normalise to ms.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }

# A sum over the given processes of fields of /proc/PID/stat, counted
# after the command name ($12 utime, $13 stime: clock ticks so far).
stat_sum() {
  local expr=$1 p sum=0
  shift
  for p in "$@"; do
    sum=$((sum + $(sed 's/.*) //' "/proc/$p/stat" | awk "{print $expr}")))
  done
  echo "$sum"
}
# CPU time (user + system) of the given processes so far, and its kernel part.
ticks() { stat_sum '$12 + $13' "$@"; }
sys_ticks() { stat_sum '$13' "$@"; }
# A sum over the given processes' threads of a counter in their status.
status_sum() {
  local key=$1 p sum=0
  shift
  for p in "$@"; do
    sum=$((sum + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk -v k="$key:" '$1 == k {s += $2} END {print s + 0}')))
  done
  echo "$sum"
}
# Voluntary context switches (a thread blocking with nothing to do) so far.
# Per request, nginx sleeps ~0.02 times; a proxy that sleeps far more is
# handing its core to whatever it woke (docs/performance.md, "Idle cores
# and SCHED_BATCH").
sleeps() { status_sum voluntary_ctxt_switches "$@"; }
# Involuntary context switches (a thread preempted while it had work) so far.
preempts() { status_sum nonvoluntary_ctxt_switches "$@"; }
# The machine's idle and total time so far (jiffies, all cores): a proxy
# that leaves a core idle while wrk waits on it loses requests/s that its
# CPU per request does not explain.
idle_total() { awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# The processes whose CPU counts for a target: nginx's workers (children of
# its master) or a countersign process, with Redis for the Redis route.
workers() { pgrep -P "$(cat "$1")" | tr '\n' ' '; }
procs_of() {
  case $1 in
    direct) workers "$work/nginx.pid" ;;
    nginx|nginx-tts) workers "$work/proxy/nginx.pid" ;;
    nginx-log) workers "$work/proxy-log/nginx.pid" ;;
    cs-xrtc-redis) echo "$cs2_pid $redis_pid" ;;
    cs-xrtc-info) echo "$cs3_pid" ;;
    base-*) echo "$base_pid" ;;
    *) echo "$cs_pid" ;;
  esac
}
hz=$(getconf CLK_TCK)

run() { # name url [script] -> appends "rps p50 p99 cpu-us-per-request sleeps-per-request
  # sys-us-per-request preempted-per-request idle-percent" to $work/name
  local out procs before after slept preempted
  procs=$(procs_of "$1")
  # shellcheck disable=SC2086 # one pid per word
  before=$(ticks $procs)
  # shellcheck disable=SC2086
  local sys0 sys1 sys
  sys0=$(sys_ticks $procs)
  # shellcheck disable=SC2086
  slept=$(sleeps $procs)
  # shellcheck disable=SC2086
  preempted=$(preempts $procs)
  local idle0 idle1
  idle0=$(idle_total)
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/${3:-xrtc.lua}" "$2")
  # shellcheck disable=SC2086
  after=$(ticks $procs)
  # shellcheck disable=SC2086
  sys1=$(sys_ticks $procs)
  # shellcheck disable=SC2086
  idle1=$(idle_total)
  slept=$(( $(sleeps $procs) - slept ))
  # shellcheck disable=SC2086
  preempted=$(( $(preempts $procs) - preempted ))
  local rps p50 p99 non2xx reqs cpu slp_req pre_req idle others
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
  sys=$(awk -v t=$((sys1 - sys0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
  slp_req=$(awk -v s="$slept" -v n="$reqs" 'BEGIN {printf "%.3f", s / n}')
  idle=$(echo "$idle0 $idle1" | awk '{printf "%.1f", 100 * ($3 - $1) / ($4 - $2)}')
  # Everything else the machine ran per request (wrk, the upstream, the
  # kernel's work for them): its busy time less the proxy's.
  others=$(echo "$idle0 $idle1" | awk -v hz="$hz" -v n="$reqs" -v c="$cpu" \
    '{printf "%.2f", (($4 - $2) - ($3 - $1)) * 1e6 / hz / n - c}')
  pre_req=$(awk -v s="$preempted" -v n="$reqs" 'BEGIN {printf "%.3f", s / n}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  [ -n "$non2xx" ] && echo "warning: $1 had $non2xx non-2xx answers" >&2
  echo "$rps $p50 $p99 $cpu $slp_req $sys $pre_req $idle $others" >> "$work/$1"
  printf '  %-12s %10.0f req/s  p50 %8.3f ms  p99 %8.3f ms  cpu %6.2f us/req (sys %5.2f)  sleeps %5.3f/req  preempted %5.3f/req  idle %4s %%  others %6.2f us/req\n' "$1" "$rps" "$p50" "$p99" "$cpu" "$sys" "$slp_req" "$pre_req" "$idle" "$others"
}

# SCHED=batch: every proxy (nginx's workers, each countersign) under the
# SCHED_BATCH policy, alike, as an operator of a dedicated gateway host may
# run them (docs/operations.md); the upstream, Redis and wrk stay as they are.
if [ "${SCHED:-}" = batch ]; then
  for p in $(workers "$work/proxy/nginx.pid") $(workers "$work/proxy-log/nginx.pid") $ports_pids; do
    chrt -a -b -p 0 "$p" >/dev/null
  done
  echo "scheduling: SCHED_BATCH for nginx's workers and countersign"
fi

echo "warm-up ..."
wrk -t1 -c8 -d2s -s "$work/xrtc.lua" "http://127.0.0.1:$CS_PORT/xrtc/v1/item/set" >/dev/null
wrk -t1 -c8 -d2s -s "$work/xrtc.lua" "http://127.0.0.1:$CS2_PORT/xrtc/v1/item/set" >/dev/null
wrk -t1 -c8 -d2s -s "$work/xrtc.lua" "http://127.0.0.1:$CS3_PORT/xrtc/v1/item/set" >/dev/null
[ -n "$BASE_BIN" ] && wrk -t1 -c8 -d2s -s "$work/xrtc.lua" "http://127.0.0.1:$BASE_PORT/xrtc/v1/item/set" >/dev/null
# Count Redis commands from here on, to give them per request at the end.
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
echo "rounds: $ROUNDS x $DURATION, $CONNS connections, $THREADS wrk threads, $(nproc) cores"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  for t in $TARGETS; do
    case $t in
      direct) run direct "http://127.0.0.1:$UP_PORT/v1/item/set" ;;
      nginx) run nginx "http://127.0.0.1:$NGX_PORT/v1/item/set" ;;
      # nginx proxying tts's 1 kB body: what the body's size alone costs.
      nginx-tts) run nginx-tts "http://127.0.0.1:$NGX_PORT/tts/www.example.com" tts.lua ;;
      cs-xrtc) run cs-xrtc "http://127.0.0.1:$CS_PORT/xrtc/v1/item/set" ;;
      cs-utilsio) run cs-utilsio "http://127.0.0.1:$CS_PORT/utilsio/subscription" utilsio.lua ;;
      cs-teamdrive) run cs-teamdrive "http://127.0.0.1:$CS_PORT/teamdrive/yvva/api/api.xml" teamdrive.lua ;;
      cs-tts) run cs-tts "http://127.0.0.1:$CS_PORT/tts/www.example.com" tts.lua ;;
      cs-xrtc-redis) run cs-xrtc-redis "http://127.0.0.1:$CS2_PORT/xrtc/v1/item/set" ;;
      # SigV4 over xrtc's 300-byte body (hashed, signed): to compare with cs-xrtc.
      cs-aws) run cs-aws "http://127.0.0.1:$CS_PORT/aws/bench-bucket/items/key.json" ;;
      # A Binance-like recipe on a GET: to compare with cs-utilsio.
      cs-recipe) run cs-recipe "http://127.0.0.1:$CS_PORT/recipe/api/v3/account?symbol=LTCBTC" utilsio.lua ;;
      nginx-log) run nginx-log "http://127.0.0.1:$NGX2_PORT/v1/item/set" ;;
      cs-xrtc-info) run cs-xrtc-info "http://127.0.0.1:$CS3_PORT/xrtc/v1/item/set" ;;
      base-xrtc) run base-xrtc "http://127.0.0.1:$BASE_PORT/xrtc/v1/item/set" ;;
      base-teamdrive) run base-teamdrive "http://127.0.0.1:$BASE_PORT/teamdrive/yvva/api/api.xml" teamdrive.lua ;;
      base-tts) run base-tts "http://127.0.0.1:$BASE_PORT/tts/www.example.com" tts.lua ;;
      *) echo "unknown target $t" >&2; exit 2 ;;
    esac
  done
done

avg() { awk -v c="$2" '{s+=$c; n++} END {printf "%.3f", s/n}' "$work/$1"; }
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$cs_pid/status")
echo
printf '%-13s %10s %9s %9s %12s %12s %12s %10s %10s %10s %10s %10s %7s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms" "rps/nginx" "p99/nginx" "rps/direct" "cpu us/req" "sys us/req" "cpu/nginx" "sleeps/req" "preempt/req" "idle %" "others us" "busy/nginx"
[ -f "$work/nginx" ] || { echo "nginx must be among TARGETS (the baseline)" >&2; exit 2; }
n_rps=$(avg nginx 1); n_p99=$(avg nginx 3); n_cpu=$(avg nginx 4); n_oth=$(avg nginx 9); d_rps=$( [ -f "$work/direct" ] && avg direct 1 || echo 0)
for name in $TARGETS; do
  rps=$(avg "$name" 1); p50=$(avg "$name" 2); p99=$(avg "$name" 3); cpu=$(avg "$name" 4); slp=$(avg "$name" 5)
  sys=$(avg "$name" 6); pre=$(avg "$name" 7); idle=$(avg "$name" 8); oth=$(avg "$name" 9)
  awk -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v c="$cpu" -v z="$slp" -v s="$sys" -v e="$pre" -v i="$idle" -v o="$oth" -v no="$n_oth" -v nr="$n_rps" -v np="$n_p99" -v nc="$n_cpu" -v dr="$d_rps" \
    'BEGIN {printf "%-13s %10.0f %9.3f %9.3f %12.2f %12.2f %12.2f %10.2f %10.2f %10.2f %10.3f %10.3f %7.1f %10.2f %10.2f\n", n, r, a, b, r/nr, b/np, (dr > 0 ? r/dr : 0), c, s, c/nc, z, e, i, o, (nc + no) / (c + o)}'
done
echo "countersign peak RSS: $((rss_kb / 1024)) MiB"
# What sharing limits through Redis costs: scripts run (a round trip each,
# or two pipelined; Redis also counts the commands inside them) per request.
if [ -f "$work/cs-xrtc-redis" ]; then
  stats=$(redis-cli -p "$REDIS_PORT" info commandstats)
  trips=$(echo "$stats" | awk -F'[=,:]' '/^cmdstat_(evalsha|eval):/ {s += $3} END {print s + 0}')
  calls=$(echo "$stats" | awk -F'[=,:]' '/^cmdstat_/ && !/^cmdstat_(info|config|ping|hello|client)/ {s += $3} END {print s + 0}')
  served=$(awk -v d="${DURATION%s}" '{s += $1 * d} END {printf "%.0f", s}' "$work/cs-xrtc-redis")
  awk -v t="$trips" -v c="$calls" -v s="$served" \
    'BEGIN {printf "Redis: %d scripts run (%d commands in all) for ~%d cs-xrtc-redis requests: one script per %.0f requests\n", t, c, s, s / (t > 0 ? t : 1)}'
fi
