#!/usr/bin/env bash
# bench/observe.sh - the cost of observability on the hot path: keep-alive req/s through
# switchyard in three configurations, run alternately in the same run:
#   off      no admin listener (so no scrapes), no audit log (the history sampler and the
#            built-in alerts run in every configuration: once a second, off the request path);
#   noaudit  the admin listener with the history sampled every second and the built-in
#            alerts, GET /metrics and GET /history scraped once a second for the whole run (as
#            a Prometheus server and a dashboard would), but no audit log;
#   on       all of noaudit, and audit_log on (every request gets a line).
# With PEERS=1 it also runs nginx as the reverse proxy (one worker, upstream keep-alive) with
# `access_log off` and with an unbuffered access log in the combined format, on the same CPU,
# to show what a request log costs a peer on the same machine.
# The counters behind /stats and /metrics are always kept (per-thread relaxed atomics); what
# can be switched off is what this compares. wrk (one thread, CONNS connections), the scraper
# and an nginx backend (128-byte body) on LOAD_CPU; the proxies (one reactor thread each, plus
# their admin, history and audit threads) on PROXY_CPU. Each round runs both, in alternating
# order; the table gives the median req/s and the median of the per-round ratios to `off`.
# The "middle half" column is the range of the per-round ratios from the first to the third
# quartile: how much the rounds agree on this machine.
#
# Usage: bench/observe.sh       (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=5, DURATION=10 (s), CONNS=64, BASE_PORT=29480,
#   PROXY_CPU=0, LOAD_CPU=1, PEERS=0.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} CONNS=${CONNS:-64} BASE_PORT=${BASE_PORT:-29480}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND=$BASE_PORT ADMIN=$((BASE_PORT + 9)) ADMIN_NOAUDIT=$((BASE_PORT + 10))
CONFIGS=(off noaudit on)
OURS=(off noaudit on)
PEERS=${PEERS:-0}
[ "$PEERS" = 1 ] && CONFIGS+=(nginx nginx+log)

NAME=observe.sh TOOLS="nginx:nginx wrk:wrk curl:curl python3:python3"
# shellcheck source=bench/common.sh
. bench/common.sh

port_of() { # port_of CONFIG
  case $1 in off) echo $((BASE_PORT + 1)) ;; on) echo $((BASE_PORT + 2)) ;;
    noaudit) echo $((BASE_PORT + 3)) ;; nginx) echo $((BASE_PORT + 4)) ;;
    nginx+log) echo $((BASE_PORT + 5)) ;; esac
}

nginx_proxy() { # nginx_proxy NAME: an nginx reverse proxy config on NAME's port
  local log="access_log off;"
  [ "$1" = nginx+log ] && log="access_log $T/nginx-access.log combined;"
  cat <<NGINX
worker_processes 1;
daemon off;
pid $T/$1.pid;
error_log $T/$1-error.log;
events { worker_connections 4096; }
http {
  $log
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:$(port_of "$1");
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
}

nginx_backend "127.0.0.1:$BACKEND"
config() { # config NAME
  local admin=off
  [ "$1" = on ] && admin=127.0.0.1:$ADMIN
  [ "$1" = noaudit ] && admin=127.0.0.1:$ADMIN_NOAUDIT
  cat <<INI
[server]
listen = 127.0.0.1:$(port_of "$1")
threads = 1
admin_listen = $admin
INI
  [ "$1" = on ] && printf 'audit_log = %s\n' "$T/audit.log"
  [ "$1" != off ] && printf 'history_interval = 1s\n'
  cat <<INI
[backend nginx]
address = 127.0.0.1:$BACKEND
[route all]
backends = nginx
INI
}

start "$LOAD_CPU" nginx -c "$T/nginx.conf"
for c in "${OURS[@]}"; do
  config "$c" >"$T/$c.ini"
  start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/$c.ini"
done
if [ "$PEERS" = 1 ]; then
  for c in nginx nginx+log; do
    nginx_proxy "$c" >"$T/$c.conf"
    start "$PROXY_CPU" nginx -c "$T/$c.conf"
  done
fi
for c in "${CONFIGS[@]}"; do
  port=$(port_of "$c") ok=
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || die "nothing answers on port $port (see $T/procs.log)"
done
# The scraper: /metrics and /history once a second, counting answers that were not 200.
scrape() {
  local bad=0 n=0
  while :; do
    for admin in "$ADMIN" "$ADMIN_NOAUDIT"; do
      for path in /metrics "/history?series=requests_per_second,latency_p99_ms&since=60"; do
        n=$((n + 1))
        curl -sf -o /dev/null "http://127.0.0.1:$admin$path" || bad=$((bad + 1))
      done
    done
    echo "$n $bad" >"$T/scrapes"
    sleep 1
  done
}
scrape &
SCRAPER=$!
taskset -pc "$LOAD_CPU" "$SCRAPER" >/dev/null
trap 'kill $SCRAPER 2>/dev/null; cleanup' EXIT

: >"$T/samples"
declare -A p99
for round in $(seq 1 "$ROUNDS"); do
  order=("${CONFIGS[@]}")
  [ $((round % 2)) = 0 ] && order=($(printf '%s\n' "${CONFIGS[@]}" | tac))
  for c in "${order[@]}"; do
    wrk_run "$c" "http://127.0.0.1:$(port_of "$c")/"
    log "round $round $c: $RPS req/s, p99 $P99"
    echo "$round $c $RPS" >>"$T/samples"
    p99[$c]=$P99
  done
done
stats=$(curl -sf "http://127.0.0.1:$ADMIN/stats") || die "no /stats from the observed proxy"
read -r written dropped memory < <(python3 -c 'import json, sys
s = json.load(sys.stdin)
print(s["audit"]["written"], s["audit"]["dropped"], s["history"]["memory_bytes"])' <<<"$stats")
read -r scrapes failed <"$T/scrapes"
# The mean line in the current file (rotated ones are gone at audit_keep).
line_bytes=$(python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); print(len(d) // max(1, d.count(b"\n")))' "$T/audit.log")

echo "| observability | req/s (median) | vs off (median of rounds) | middle half of rounds | p99 (last round) |"
echo "|---|--:|--:|--:|--:|"
for c in "${OURS[@]}"; do
  median_row "$T/samples" "$c" "${p99[$c]}"
done
if [ "$PEERS" = 1 ]; then
  echo
  echo "| nginx as the proxy | req/s (median) | vs nginx without a log (median of rounds) | middle half of rounds | p99 (last round) |"
  echo "|---|--:|--:|--:|--:|"
  for c in nginx nginx+log; do
    median_row "$T/samples" "$c" "${p99[$c]}" nginx
  done
fi
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s; rounds: $ROUNDS (order alternated); noaudit = admin" \
  "listener, history every 1s ($memory bytes), built-in alerts, /metrics and /history scraped" \
  "every second ($scrapes scrapes over both, $failed failed); on = noaudit + audit_log" \
  "($written lines written, $dropped dropped, $line_bytes bytes a line); proxies on CPU $PROXY_CPU, nginx, wrk and the scraper on CPU $LOAD_CPU; $(date -u +%F)"
