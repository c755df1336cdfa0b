#!/usr/bin/env bash
# bench/security.sh - the cost of the security layer: keep-alive req/s through switchyard in
# three configurations, run alternately in the same run:
#   off    no ACL, no rate limit, no audit log;
#   acl    an [acl] (allow 127.0.0.0/8) and a [limit] keyed by client IP (never exceeded);
#   audit  the same, plus audit_log (every request gets a line).
# wrk (one thread, CONNS connections) and an nginx backend (128-byte body) on LOAD_CPU, the
# proxies (one reactor thread each; the audit writer thread too) on PROXY_CPU. Each round runs
# the three in a rotated order; the table gives the median req/s, the median of the per-round
# ratios to `off`, and the audit log's written and dropped line counts (from /stats).
#
# Usage: bench/security.sh       (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=5, DURATION=10 (s), CONNS=64, BASE_PORT=29280,
#   PROXY_CPU=0, LOAD_CPU=1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} CONNS=${CONNS:-64} BASE_PORT=${BASE_PORT:-29280}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND=$BASE_PORT ADMIN=$((BASE_PORT + 9))
CONFIGS=(off acl audit)

NAME=security.sh TOOLS="nginx:nginx wrk:wrk curl:curl python3:python3"
# shellcheck source=bench/common.sh
. bench/common.sh

port_of() { # port_of CONFIG
  case $1 in off) echo $((BASE_PORT + 1)) ;; acl) echo $((BASE_PORT + 2)) ;; audit) echo $((BASE_PORT + 3)) ;; esac
}

nginx_backend "127.0.0.1:$BACKEND"
config() { # config NAME
  local admin=off
  [ "$1" = audit ] && admin=127.0.0.1:$ADMIN
  cat <<INI
[server]
listen = 127.0.0.1:$(port_of "$1")
threads = 1
admin_listen = $admin
INI
  [ "$1" = audit ] && echo "audit_log = $T/audit.log"
  cat <<INI
[backend nginx]
address = 127.0.0.1:$BACKEND
[route all]
backends = nginx
INI
  [ "$1" = off ] && return
  cat <<INI
[acl local]
rules = allow 127.0.0.0/8, allow ::1
default = deny
routes = all
[limit per-client]
key = client_ip
rate = 1000000/s
INI
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
  [ -n "$ok" ] || die "nothing answers on port $port (see $T/procs.log)"
done

: >"$T/samples"
declare -A p99
for round in $(seq 1 "$ROUNDS"); do
  n=${#CONFIGS[@]} shift=$(((round - 1) % ${#CONFIGS[@]}))
  for i in $(seq 0 $((n - 1))); do
    c=${CONFIGS[$(((i + shift) % n))]}
    wrk_run "$c" "http://127.0.0.1:$(port_of "$c")/"
    log "round $round $c: $RPS req/s, p99 $P99"
    echo "$round $c $RPS" >>"$T/samples"
    p99[$c]=$P99
  done
done
stats=$(curl -sf "http://127.0.0.1:$ADMIN/stats") || die "no /stats from the audit proxy"
read -r written dropped < <(python3 -c 'import json, sys
a = json.load(sys.stdin)["audit"]
print(a["written"], a["dropped"])' <<<"$stats")

echo "| security layer | req/s (median) | vs off (median of rounds) | middle half of rounds | p99 (last round) |"
echo "|---|--:|--:|--:|--:|"
for c in "${CONFIGS[@]}"; do
  median_row "$T/samples" "$c" "${p99[$c]}"
done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s; rounds: $ROUNDS (order rotated each round); acl = [acl] +" \
  "[limit] key = client_ip; audit = acl + audit_log: $written lines written, $dropped dropped;" \
  "proxies on CPU $PROXY_CPU, nginx and wrk on CPU $LOAD_CPU; $(date -u +%F)"
