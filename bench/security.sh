#!/usr/bin/env bash
# bench/security.sh - the cost of the security layer: keep-alive req/s through switchyard with
# an ACL, a per-client-IP rate limit (never exceeded) and the audit log (every request) on,
# against the same proxy with them off. wrk (one thread, 64 connections) and an nginx backend
# (128-byte body) on LOAD_CPU, the proxy (one thread) on PROXY_CPU; rounds alternate the order.
#
# Usage: bench/security.sh       (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=3, DURATION=10 (s), CONNS=64, BASE_PORT=29280,
#   PROXY_CPU=0, LOAD_CPU=1, ON_SERVER_LINE (the [server] line of the "on" proxy; default
#   `audit_log = ...`, empty for ACL and rate limit alone). Prints a markdown table of req/s,
#   p99 and the ratio on/off.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} CONNS=${CONNS:-64} BASE_PORT=${BASE_PORT:-29280}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND=$BASE_PORT OFF=$((BASE_PORT + 1)) ON=$((BASE_PORT + 2))

NAME=security.sh TOOLS="nginx:nginx wrk:wrk curl:curl"
# shellcheck source=bench/common.sh
. bench/common.sh

nginx_backend "127.0.0.1:$BACKEND"
common() { # common PORT [SERVER-KEY-LINE]
  cat <<INI
[server]
listen = 127.0.0.1:$1
threads = 1
admin_listen = off
${2:-}
[backend nginx]
address = 127.0.0.1:$BACKEND
[route all]
backends = nginx
INI
}
common "$OFF" >"$T/off.ini"
{
  common "$ON" "${ON_SERVER_LINE-audit_log = $T/audit.log}"
  cat <<INI
[acl local]
rules = allow 127.0.0.0/8, allow ::1
default = deny
routes = all
[limit per-client]
key = client_ip
rate = 1000000/s
INI
} >"$T/on.ini"

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

declare -A p99
port_of() { case $1 in off) echo "$OFF" ;; on) echo "$ON" ;; esac; }
for round in $(seq 1 "$ROUNDS"); do
  order=(off on)
  [ $((round % 2)) -eq 0 ] && order=(on off)
  for s in "${order[@]}"; do
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
      "http://127.0.0.1:$(port_of "$s")/" 2>&1)
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    lat=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    [ -n "$rps" ] || die "wrk said nothing usable for $s: $out"
    grep -q "Non-2xx" <<<"$out" && die "$s: non-2xx responses: $out"
    log "round $round $s: $rps req/s, p99 $lat"
    add_sample "$s" "$rps"
    p99[$s]=$lat
  done
done
lines=$(wc -l <"$T/audit.log" 2>/dev/null || echo 0)

echo "| security layer | req/s | vs off | p99 (last round) |"
echo "|---|--:|--:|--:|"
for s in off on; do
  printf '| %s | %s | %.2fx | %s |\n' "$s" "$(avg "$s")" "$(ratio "$(avg "$s")" "$(avg off)")" "${p99[$s]}"
done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s; rounds: $ROUNDS; on = [acl] + [limit] key = client_ip + audit_log ($lines lines written); proxy on CPU $PROXY_CPU, nginx and wrk on CPU $LOAD_CPU; $(date -u +%F)"
