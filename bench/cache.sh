#!/usr/bin/env bash
# bench/cache.sh - the response cache's hit path against going to the backend: keep-alive req/s
# for an embedding-sized answer (3 KiB of JSON) in three configurations, alternated in one run:
#   direct  no proxy: wrk straight to the backend (nginx answering from memory);
#   proxy   switchyard in front, no cache: every request goes to the backend;
#   hit     switchyard with `cache = on`: every request (after the first) answered from the cache.
# for GET /v1/models/e5 and for POST /v1/embeddings (`cache_post = on`, keyed on the body).
# Then the same with an inference engine as the backend (switchyard's mock engine: 20 ms to
# the first token, 8 tokens at 400 tokens/s, 64 requests at once): engine (wrk straight to
# it) and engine-hit (switchyard caching its temperature-0 chat completions).
# The server side gets one CPU in every configuration: nginx (one worker) and switchyard (one
# reactor thread) both run on PROXY_CPU, so `proxy` shares it between the two and `hit` leaves
# nginx idle; wrk runs alone on LOAD_CPU. nginx is the fastest backend there is (a fixed
# answer from memory); an inference engine computing an embedding takes milliseconds, where
# any hit wins by orders of magnitude.
#
# Usage: bench/cache.sh       (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=5, DURATION=10 (s), CONNS=64, BASE_PORT=29580,
#   PROXY_CPU=0, LOAD_CPU=1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} CONNS=${CONNS:-64} BASE_PORT=${BASE_PORT:-29580}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND=$BASE_PORT PROXY=$((BASE_PORT + 1)) CACHED=$((BASE_PORT + 2)) ADMIN=$((BASE_PORT + 3))
ENGINE=$((BASE_PORT + 4)) ENGINE_CACHED=$((BASE_PORT + 5))

NAME=cache.sh TOOLS="nginx:nginx wrk:wrk curl:curl python3:python3"
# shellcheck source=bench/common.sh
. bench/common.sh

# A 3 KiB JSON answer, as an embeddings endpoint gives (nginx's `return` takes any method).
body=$(python3 -c 'import json; print(json.dumps({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [round(i * 0.001, 3) for i in range(700)]}]}, separators=(",", ":"))[:3072].replace("\"", "\\\""))')
NGINX_BODY=$body nginx_backend "127.0.0.1:$BACKEND"
config() { # config PORT CACHE ADMIN [BACKEND]
  cat <<INI
[server]
listen = 127.0.0.1:$1
threads = 1
admin_listen = $3
[backend b]
address = 127.0.0.1:${4:-$BACKEND}
[route all]
backends = b
INI
  [ "$2" = on ] && printf 'cache = on\ncache_post = on\ncache_ttl = 1h\n'
  return 0
}
config "$PROXY" off off >"$T/proxy.ini"
config "$CACHED" on "127.0.0.1:$ADMIN" >"$T/hit.ini"
config "$ENGINE_CACHED" on off "$ENGINE" >"$T/engine-hit.ini"
cat >"$T/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"e5","input":"the quick brown fox jumps over the lazy dog"}'
LUA
cat >"$T/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"mock-llama","temperature":0,"max_tokens":8,"messages":[{"role":"user","content":"Name the capital of France."}]}'
LUA

start "$PROXY_CPU" nginx -c "$T/nginx.conf"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/proxy.ini"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/hit.ini"
start "$PROXY_CPU" "$SWITCHYARD_BIN" mock-engine --listen "127.0.0.1:$ENGINE" --ttft-ms 20 \
  --tokens-per-sec 400 --max-concurrent 64 --log-level warn
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/engine-hit.ini"
port_of() {
  case $1 in direct*) echo "$BACKEND" ;; proxy*) echo "$PROXY" ;; hit*) echo "$CACHED" ;;
    engine) echo "$ENGINE" ;; engine-hit) echo "$ENGINE_CACHED" ;; esac
}
for port in "$BACKEND" "$PROXY" "$CACHED" "$ENGINE" "$ENGINE_CACHED"; do
  ok=
  for _ in $(seq 1 100); do
    if [ "$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$port/v1/models")" != 000 ]; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || die "nothing answers on port $port (see $T/procs.log)"
done
# The hit configuration's answers must come from the cache (the first request fills it).
curl -s -o /dev/null "http://127.0.0.1:$CACHED/v1/models/e5"
x=$(curl -s -o /dev/null -D - "http://127.0.0.1:$CACHED/v1/models/e5" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" { print $2 }')
[ "$x" = HIT ] || die "the cached GET is not a hit (x-cache: $x)"

CONFIGS=(direct proxy hit direct-post proxy-post hit-post engine engine-hit)
: >"$T/samples"
declare -A p99
for round in $(seq 1 "$ROUNDS"); do
  order=("${CONFIGS[@]}")
  [ $((round % 2)) = 0 ] && mapfile -t order < <(printf "%s\n" "${CONFIGS[@]}" | tac)
  for c in "${order[@]}"; do
    url="http://127.0.0.1:$(port_of "$c")"
    if [[ $c == engine* ]]; then
      wrk_run "$c" "$url/v1/chat/completions" -s "$T/chat.lua"
    elif [[ $c == *-post ]]; then
      wrk_run "$c" "$url/v1/embeddings" -s "$T/post.lua"
    else
      wrk_run "$c" "$url/v1/models/e5"
    fi
    log "round $round $c: $RPS req/s, p99 $P99"
    echo "$round $c $RPS" >>"$T/samples"
    p99[$c]=$P99
  done
done
stats=$(curl -sf "http://127.0.0.1:$ADMIN/stats") || die "no /stats from the caching proxy"
read -r hits misses ratio < <(python3 -c 'import json, sys
c = json.load(sys.stdin)["cache"]
print(c["hits"], c["misses"], round(c["hit_ratio"], 6))' <<<"$stats")

echo "| GET /v1/models/e5 | req/s (median) | vs direct (median of rounds) | middle half of rounds | p99 (last round) |"
echo "|---|--:|--:|--:|--:|"
for c in direct proxy hit; do median_row "$T/samples" "$c" "${p99[$c]}" direct; done
echo
echo "| POST /v1/embeddings | req/s (median) | vs direct (median of rounds) | middle half of rounds | p99 (last round) |"
echo "|---|--:|--:|--:|--:|"
for c in direct-post proxy-post hit-post; do median_row "$T/samples" "$c" "${p99[$c]}" direct-post; done
echo
echo "| POST /v1/chat/completions to an engine, temperature 0 | req/s (median) | vs the engine (median of rounds) | middle half of rounds | p99 (last round) |"
echo "|---|--:|--:|--:|--:|"
for c in engine engine-hit; do median_row "$T/samples" "$c" "${p99[$c]}" engine; done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s; rounds: $ROUNDS (order alternated); 3 KiB answers;" \
  "nginx and switchyard on CPU $PROXY_CPU, wrk on CPU $LOAD_CPU; caching proxy: $hits hits," \
  "$misses misses (hit ratio $ratio); $(date -u +%F)"
