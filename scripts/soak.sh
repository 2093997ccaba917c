#!/usr/bin/env bash
# Soak under hostile load: the release binary on loopback, for DURATION,
# serving paced legitimate calls on one route while slowloris heads,
# stalled bodies, a flood of silent connections past max_connections and
# callers of a route whose upstream stalls mid-body keep coming (each
# attacker reconnects when cut off). Reports, at the start and the end,
# the gateway's open file descriptors and RSS, then the legitimate calls
# (ok, failed) and the cut-off counters from /metrics. Everything it
# starts, it stops.
#
#   scripts/soak.sh                  # 10 minutes
#   DURATION=60 scripts/soak.sh      # one minute
#   BIN=target/profiling/countersign scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
PORT=${PORT:-18431}
ADMIN=${ADMIN:-18432}
UP_PORT=${UP_PORT:-18433}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-300}
BIN=${BIN:-target/release/countersign}
. scripts/lib.sh
install_if_missing python3 python3
[ "$BIN" = target/release/countersign ] && cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/soak.py" <<'PY'
import asyncio, os, sys, time

mode, port, up_port, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
HOST = "127.0.0.1"

async def upstream():
    """/stall gets a head and 10 of 1000 bytes, then silence; the rest a small 200."""
    async def conn(r, w):
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                if b"/stall" in head:
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                    await w.drain()
                    await asyncio.sleep(60)
                    break
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await w.drain()
        except Exception:
            pass
        w.close()
    server = await asyncio.start_server(conn, HOST, up_port, backlog=1024)
    await asyncio.sleep(duration + 30)
    server.close()

async def legit(stats, end):
    r = w = None
    while time.monotonic() < end:
        try:
            if w is None:
                r, w = await asyncio.open_connection(HOST, port)
            w.write(b"GET /legit/ping?deviceId=d1 HTTP/1.1\r\nHost: g\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await r.readexactly(length)
            stats["ok" if head.startswith(b"HTTP/1.1 200") else "failed"] += 1
            if b"connection: close" in head.lower():
                w.close(); r = w = None
        except asyncio.IncompleteReadError as e:
            # A kept-alive connection closed as the call went out: retried
            # on a new one (RFC 9112 §9.3.1), as clients do.
            stats["retried" if not e.partial else "failed"] += 1
            r = w = None
        except Exception:
            stats["failed"] += 1
            r = w = None
        await asyncio.sleep(0.01)

async def attacker(kind, end):
    while time.monotonic() < end:
        try:
            r, w = await asyncio.open_connection(HOST, port)
            if kind == "slowloris":
                w.write(b"GET /legit/ping HTTP/1.1\r\nHost: g\r\nX-Slow: ")
                while time.monotonic() < end:
                    await asyncio.sleep(0.5)
                    w.write(b"a"); await w.drain()
            elif kind == "stalled":
                w.write(b"POST /legit/ping?deviceId=d1 HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\nabc")
                await asyncio.wait_for(r.read(), 10)
            elif kind == "upstream":
                w.write(b"GET /stall/stall?deviceId=d1 HTTP/1.1\r\nHost: g\r\n\r\n")
                while await asyncio.wait_for(r.read(4096), 10):
                    pass
            else:  # flood: connect, say nothing, hold it a while
                await asyncio.sleep(5)
            w.close()
        except Exception:
            await asyncio.sleep(0.2)

async def attack():
    end = time.monotonic() + duration
    stats = {"ok": 0, "failed": 0, "retried": 0}
    tasks = [legit(stats, end) for _ in range(4)]
    tasks += [attacker("slowloris", end) for _ in range(150)]
    tasks += [attacker("stalled", end) for _ in range(100)]
    tasks += [attacker("upstream", end) for _ in range(20)]
    tasks += [attacker("flood", end) for _ in range(400)]
    await asyncio.gather(*tasks)
    print(f"legitimate calls: {stats['ok']} ok, {stats['failed']} failed, {stats['retried']} retried on a new connection")

asyncio.run(upstream() if mode == "upstream" else attack())
PY

route() {
  cat <<TOML
[routes.$1]
kind = "utilsio"
upstream = "http://127.0.0.1:$UP_PORT"
app_id = "soak"
app_hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
read_timeout = "2s"
TOML
}
cat > "$work/cs.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin = "127.0.0.1:$ADMIN"
state_dir = "$work/state"
header_read_timeout = "2s"
body_read_timeout = "2s"
max_connections = $MAX_CONNECTIONS
$(route legit)
$(route stall)
TOML

ulimit -n 65536 2>/dev/null || true
python3 "$work/soak.py" upstream "$PORT" "$UP_PORT" "$DURATION" &
pids+=($!)
RUST_LOG=error "$BIN" run -c "$work/cs.toml" 2>"$work/gateway.log" &
gw=$!
pids+=("$gw")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

fds() { ls "/proc/$gw/fd" | wc -l; }
# Of the gateway's TCP sockets: to the upstream (pooled), from callers.
sockets() {
  command -v ss >/dev/null || return 0
  local all up
  all=$(ss -tanp 2>/dev/null | grep -c "pid=$gw," || true)
  up=$(ss -tanp 2>/dev/null | grep "pid=$gw," | grep -c ":$UP_PORT " || true)
  echo " (TCP sockets $all: $up to the upstream, the rest listeners and callers)"
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$gw/status"; }
metrics() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$ADMIN/metrics').read().decode())"; }

echo "start: fds $(fds), RSS $(rss) KiB"
python3 "$work/soak.py" attack "$PORT" "$UP_PORT" "$DURATION"
echo "end of the storm: fds $(fds), RSS $(rss) KiB"
sleep 5
echo "5 s later: fds $(fds), RSS $(rss) KiB$(sockets)"
metrics | grep -E '^countersign_(cutoffs_total|connections_)' || true
