#!/usr/bin/env bash
# bench/reload.sh - hot reloads under load: wrk keeps CONNS keep-alive connections busy through
# switchyard (two routes, /a/ and /b/, over two nginx backends) while `curl -X POST
# /admin/config` swaps the two routes' backends every INTERVAL seconds for the whole run. The
# bar: zero failed requests (no non-2xx, no socket error) and every reload applied.
#
# Usage: bench/reload.sh        (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, DURATION=30 (s), CONNS=64, INTERVAL=1 (s), THREADS=1,
#   BASE_PORT=31520, PROXY_CPU=0, LOAD_CPU=1. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30} CONNS=${CONNS:-64} INTERVAL=${INTERVAL:-1} THREADS=${THREADS:-1}
BASE_PORT=${BASE_PORT:-31520} PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
ONE=$BASE_PORT TWO=$((BASE_PORT + 1)) PROXY=$((BASE_PORT + 2)) ADMIN=$((BASE_PORT + 3))

NAME=reload.sh TOOLS="nginx:nginx wrk:wrk curl:curl"
# shellcheck source=bench/common.sh
. bench/common.sh

nginx_backend "127.0.0.1:$ONE" "127.0.0.1:$TWO"
config() { # config BACKEND_OF_A BACKEND_OF_B
  cat <<INI
[server]
listen = 127.0.0.1:$PROXY
threads = $THREADS
admin_listen = 127.0.0.1:$ADMIN
[backend one]
address = 127.0.0.1:$ONE
[backend two]
address = 127.0.0.1:$TWO
[route a]
path_prefix = /a/
backends = $1
[route b]
path_prefix = /b/
backends = $2
INI
}
config one two >"$T/x.ini"
config two one >"$T/y.ini"
# Half the connections on each route (wrk's connections take requests in turn).
cat >"$T/paths.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then return wrk.format("GET", "/a/x") end
  return wrk.format("GET", "/b/x")
end
LUA

start "$LOAD_CPU" nginx -c "$T/nginx.conf"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/x.ini"
ok=
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$PROXY/a/" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || die "nothing answers on port $PROXY (see $T/procs.log)"

# The reloader: alternates the two configs until told to stop; counts refusals.
(
  i=0 refused=0
  while [ ! -e "$T/stop" ]; do
    f=$T/y.ini; [ $((i % 2)) -eq 1 ] && f=$T/x.ini
    code=$(curl -s -o "$T/last-answer.json" -w '%{http_code}' -X POST --data-binary "@$f" \
      "http://127.0.0.1:$ADMIN/admin/config")
    [ "$code" = 200 ] || refused=$((refused + 1))
    i=$((i + 1))
    sleep "$INTERVAL"
  done
  echo "$i $refused" >"$T/reloader.out"
) &
reloader=$!

out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$T/paths.lua" \
  "http://127.0.0.1:$PROXY" 2>&1)
touch "$T/stop"
wait "$reloader"
read -r posted refused <"$T/reloader.out"
requests=$(awk '/requests in/ { print $1 }' <<<"$out")
rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out"); non2xx=${non2xx:-0}
socket=$(awk -F'[ ,]+' '/Socket errors/ { print $4 + $6 + $8 + $10 }' <<<"$out"); socket=${socket:-0}
stats=$(curl -s "http://127.0.0.1:$ADMIN/stats")
reloads=$(grep -o '"reloads": *[0-9]*' <<<"$stats" | grep -o '[0-9]*$')
failures=$(grep -o '"reload_failures": *[0-9]*' <<<"$stats" | grep -o '[0-9]*$')
[ -n "$requests" ] || die "wrk said nothing usable: $out"
log "wrk: $out"

echo "| requests | req/s | p99 | non-2xx | socket errors | reloads posted / applied / refused |"
echo "|--:|--:|--:|--:|--:|--:|"
echo "| $requests | $rps | $p99 | $non2xx | $socket | $posted / $reloads / $((refused + failures)) |"
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s (GET /a/x and /b/x in turn) while POST /admin/config swaps the routes' backends every ${INTERVAL}s; proxy threads = $THREADS on CPU $PROXY_CPU, nginx and wrk on CPU $LOAD_CPU; $(date -u +%F)"
[ "$non2xx" = 0 ] && [ "$socket" = 0 ] && [ "$((refused + failures))" = 0 ] || die "failed requests or reloads"
