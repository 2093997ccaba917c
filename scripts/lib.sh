# Shared by the load and measurement scripts: `. "$(dirname "$0")/lib.sh"`.

# install_if_missing COMMAND PACKAGE: a Debian package, when the command is absent.
install_if_missing() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 ..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq "$2" >/dev/null; fi
}

# upstream_conf DIR PORT > FILE: one nginx worker answering from memory, as
# the upstream every benchmark shares: an XRTC login with cookies, a TTS
# member_login with a session id, and a small JSON for every other call.
upstream_conf() {
  cat <<NGINX
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $1/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$2 reuseport;
    location = /v1/auth/login {
      add_header Set-Cookie "JSESSIONID=bench-session; Path=/";
      add_header Set-Cookie "AWSALBAPP-0=bench-alb; Path=/";
      default_type application/json;
      return 200 '{"servertimestamp":1}';
    }
    location ~ /customers/member_login\$ {
      default_type application/json;
      return 200 '{"session_id":"bench-session","user_type":"client","message":"Logged-in successful"}';
    }
    location / { default_type application/json; return 200 '{"servertimestamp":1}'; }
  }
}
NGINX
}

# xrtc_route UPSTREAM_PORT [PER_SECOND]: an xrtc route whose limits never
# bind (the permit and quota are still taken on every request). With Redis
# give PER_SECOND=1000000: a faster rate is not scheduled in Redis at all.
xrtc_route() {
  cat <<TOML
[routes.xrtc]
kind = "xrtc"
upstream = "http://127.0.0.1:$1"
account_id = "AC0987654321012345"
api_key = "bench0000000000000000000000000000"
rate_limit = { per_second = ${2:-1000000000}, burst = 1000000 }
quota = { per_month = 1000000000000 }
TOML
}

# teamdrive_route UPSTREAM_PORT: the teamdrive route the measurements use
# (md5 checksum, a distributor inserted).
teamdrive_route() {
  cat <<TOML
[routes.teamdrive]
kind = "teamdrive"
upstream = "http://127.0.0.1:$1"
auth = "md5"
key = "bench-service-key"
distributor = "BENCH"
TOML
}

# proxy_conf DIR UPSTREAM_PORT LISTEN_PORT WORKERS [EXTRA_MAIN] [ACCESS_LOG] > FILE:
# nginx doing plain reverse proxying to the upstream, connections kept alive
# (the bar). ACCESS_LOG=on: its access log to DIR/access.log, buffered and
# flushed every 100 ms like countersign's (the default "off" has none).
proxy_conf() {
  local access="access_log off;"
  [ "${6:-off}" = on ] && access="access_log $1/access.log combined buffer=64k flush=100ms;"
  cat <<NGINX
worker_processes $4;
${5:-}
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  $access
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy_temp;
  keepalive_requests 1000000;
  upstream fast { server 127.0.0.1:$2; keepalive 128; }
  server {
    listen 127.0.0.1:$3 reuseport;
    location / { proxy_pass http://fast; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
}

# wrk_bodies DIR: DIR/xrtc.lua and DIR/teamdrive.lua, the ~300-byte POST
# bodies every measurement sends (an XRTC item, a TeamDrive XML command).
wrk_bodies() {
  local payload
  payload=$(printf 'x%.0s' $(seq 240))
  cat > "$1/xrtc.lua" <<LUA
wrk.method = "POST"
wrk.body = '{items:[{"portalid":"bench","payload":"$payload"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA
  cat > "$1/teamdrive.lua" <<LUA
wrk.method = "POST"
wrk.body = "<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>getuserdata</command><requesttime>1</requesttime><username>bench-user-$payload</username></teamdrive>"
wrk.headers["Content-Type"] = "text/xml"
LUA
}
