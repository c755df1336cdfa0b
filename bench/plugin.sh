#!/usr/bin/env bash
# bench/plugin.sh - the cost of a plugin on the hot path: keep-alive req/s through switchyard
# with two configurations, run alternately in the same run:
#   off   a route without plugins;
#   noop  the same route with `plugins = noop`: plugins/noop, whose request callback returns
#         at once and which registers no response or completion callback. What it measures
#         is the host's fixed cost per request on a route with a plugin: the call through the
#         C ABI (the host table, the context), and reading the request's model (headers, path,
#         and a JSON body when there is one; wrk's GETs have none).
# wrk (one thread, CONNS connections) and an nginx backend (128-byte body) on LOAD_CPU; the
# proxies (one reactor thread each) on PROXY_CPU. Each round runs both, in alternating order;
# the table gives the median req/s and the median of the per-round ratios to `off`. The
# "middle half" column is the range of the per-round ratios from the first to the third
# quartile: how much the rounds agree on this machine.
#
# Usage: bench/plugin.sh        (builds switchyard unless SWITCHYARD_BIN is set, and the no-op
#                                plugin in release unless NOOP_PLUGIN is set)
# Knobs (default): SWITCHYARD_BIN, NOOP_PLUGIN, ROUNDS=5, DURATION=10 (s), CONNS=64,
#   BASE_PORT=29500, PROXY_CPU=0, LOAD_CPU=1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} CONNS=${CONNS:-64} BASE_PORT=${BASE_PORT:-29500}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND=$BASE_PORT
CONFIGS=(off noop)

NAME=plugin.sh TOOLS="nginx:nginx wrk:wrk curl:curl python3:python3"
# shellcheck source=bench/common.sh
. bench/common.sh

if [ -z "${NOOP_PLUGIN:-}" ]; then
  cargo build --release -q -p switchyard-plugin-noop
  NOOP_PLUGIN=${CARGO_TARGET_DIR:-target}/release/libnoop.so
fi
[ -f "$NOOP_PLUGIN" ] || die "no no-op plugin at $NOOP_PLUGIN"
# The config takes a relative path from switchyard's working directory: make it absolute.
NOOP_PLUGIN=$(realpath "$NOOP_PLUGIN")

port_of() { # port_of CONFIG
  case $1 in off) echo $((BASE_PORT + 1)) ;; noop) echo $((BASE_PORT + 2)) ;; esac
}

nginx_backend "127.0.0.1:$BACKEND"
config() { # config NAME
  cat <<INI
[server]
listen = 127.0.0.1:$(port_of "$1")
threads = 1
admin_listen = off
[backend nginx]
address = 127.0.0.1:$BACKEND
INI
  if [ "$1" = noop ]; then
    printf '[plugin noop]\npath = %s\n' "$NOOP_PLUGIN"
  fi
  cat <<INI
[route all]
backends = nginx
INI
  if [ "$1" = noop ]; then
    printf 'plugins = noop\n'
  fi
}

start "$LOAD_CPU" nginx -c "$T/nginx.conf"
for c in "${CONFIGS[@]}"; do
  config "$c" >"$T/$c.ini"
  start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/$c.ini"
done
for c in "${CONFIGS[@]}"; do
  port=$(port_of "$c") ok=
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || die "nothing answers on port $port (see $T/procs.log: $(tail -5 "$T/procs.log"))"
done

: >"$T/samples"
declare -A p99
for round in $(seq 1 "$ROUNDS"); do
  order=("${CONFIGS[@]}")
  [ $((round % 2)) = 0 ] && mapfile -t order < <(printf '%s\n' "${CONFIGS[@]}" | tac)
  for c in "${order[@]}"; do
    wrk_run "$c" "http://127.0.0.1:$(port_of "$c")/"
    log "round $round $c: $RPS req/s, p99 $P99"
    echo "$round $c $RPS" >>"$T/samples"
    p99[$c]=$P99
  done
done

echo "| plugins on the route | req/s (median) | vs off (median of rounds) | middle half of rounds | p99 (last round) |"
echo "|---|--:|--:|--:|--:|"
for c in "${CONFIGS[@]}"; do
  median_row "$T/samples" "$c" "${p99[$c]}"
done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s GET /; rounds: $ROUNDS (order alternated); noop =" \
  "plugins/noop (request callback only) on the route; proxies on CPU $PROXY_CPU, nginx and" \
  "wrk on CPU $LOAD_CPU; $(date -u +%F)"
