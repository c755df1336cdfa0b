#!/usr/bin/env bash
# bench/budgets.sh - the cost of token budgets: keep-alive POSTs of a chat completion request
# (JSON, with a Bearer key) through switchyard with a [budget] per API key and model (never
# exhausted) and a [limit] per API key, against the same proxy with neither. The backend, nginx,
# answers every request with a JSON body carrying a `usage` object, so each budgeted request is
# read ahead, estimated, reserved, its response scanned for usage and settled. wrk (one thread,
# 64 connections) and nginx on LOAD_CPU, the proxy (one thread) on PROXY_CPU; rounds alternate
# the order.
#
# Usage: bench/budgets.sh       (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=3, DURATION=10 (s), CONNS=64, BASE_PORT=31480,
#   PROXY_CPU=0, LOAD_CPU=1. Prints a markdown table of req/s, p99 and the ratio on/off.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} CONNS=${CONNS:-64} BASE_PORT=${BASE_PORT:-31480}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND=$BASE_PORT OFF=$((BASE_PORT + 1)) ON=$((BASE_PORT + 2))

NAME=budgets.sh TOOLS="nginx:nginx wrk:wrk curl:curl"
# shellcheck source=bench/common.sh
. bench/common.sh

cat >"$T/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $T/nginx.pid;
error_log $T/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACKEND;
    location / {
      default_type application/json;
      return 200 '{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}';
    }
  }
}
NGINX
common() { # common PORT
  cat <<INI
[server]
listen = 127.0.0.1:$1
threads = 1
admin_listen = off
[backend nginx]
address = 127.0.0.1:$BACKEND
[route all]
backends = nginx
INI
}
common "$OFF" >"$T/off.ini"
{
  common "$ON"
  cat <<INI
[budget per-key]
tokens_per_minute = 1000000000
key = api_key
[limit per-key]
key = api_key
rate = 1000000/s
INI
} >"$T/on.ini"
# The request body and headers are set once: wrk keeps its C request path.
cat >"$T/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-0123456789"
wrk.body = '{"model":"llama","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in two words."}],"max_tokens":16}'
LUA

start "$LOAD_CPU" nginx -c "$T/nginx.conf"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/off.ini"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/on.ini"
for port in $OFF $ON; do
  ok=
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || die "nothing answers on port $port (see $T/procs.log)"
done
hdr=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer sk-x" -H "Content-Type: application/json" \
  --data '{"model":"llama","messages":[],"max_tokens":1}' "http://127.0.0.1:$ON/")
grep -qi "x-ratelimit-remaining-tokens" <<<"$hdr" || die "the budget does not apply: $hdr"

declare -A p99
port_of() { case $1 in off) echo "$OFF" ;; on) echo "$ON" ;; esac; }
for round in $(seq 1 "$ROUNDS"); do
  order=(off on)
  [ $((round % 2)) -eq 0 ] && order=(on off)
  for s in "${order[@]}"; do
    wrk_run "$s" "http://127.0.0.1:$(port_of "$s")/v1/chat/completions" -s "$T/post.lua"
    log "round $round $s: $RPS req/s, p99 $P99"
    add_sample "$s" "$RPS"
    p99[$s]=$P99
  done
done

echo "| budgets | req/s | vs off | p99 (last round) |"
echo "|---|--:|--:|--:|"
for s in off on; do
  printf '| %s | %s | %.2fx | %s |\n' "$s" "$(avg "$s")" "$(ratio "$(avg "$s")" "$(avg off)")" "${p99[$s]}"
done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s POST chat JSON; rounds: $ROUNDS; on = [budget] key = api_key (per model) + [limit] key = api_key; proxy on CPU $PROXY_CPU, nginx and wrk on CPU $LOAD_CPU; $(date -u +%F)"
