#!/usr/bin/env bash
# bench/tcp.sh - raw TCP throughput through switchyard's [l4] listener and HAProxy's
# `mode tcp`, and straight to the server, with iperf3 (one stream, client to server). The
# proxy runs on PROXY_CPU, iperf3's server and client on LOAD_CPU.
#
# Usage: bench/tcp.sh            (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=2, DURATION=10 (s), BASE_PORT=29280, PROXY_CPU=0,
#   LOAD_CPU=1. Prints a markdown table of MiB/s and ratios. iperf3 and haproxy are apt-get
#   installed as root when missing. Every process started here is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-10} BASE_PORT=${BASE_PORT:-29280}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
SERVER=$BASE_PORT SY=$((BASE_PORT + 1)) HA=$((BASE_PORT + 2)) SY_HTTP=$((BASE_PORT + 3))
SY_ADMIN=$((BASE_PORT + 4))

NAME=tcp.sh TOOLS="iperf3:iperf3 haproxy:haproxy"
# shellcheck source=bench/common.sh
. bench/common.sh

cat >"$T/switchyard.ini" <<INI
[server]
listen = 127.0.0.1:$SY_HTTP
admin_listen = 127.0.0.1:$SY_ADMIN
threads = 1

[backend iperf]
address = 127.0.0.1:$SERVER

[route unused]
backends = iperf

[l4 iperf]
listen = 127.0.0.1:$SY
backends = iperf
INI
cat >"$T/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  maxconn 5000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen l
  bind 127.0.0.1:$HA
  server s1 127.0.0.1:$SERVER
HAPROXY

start "$LOAD_CPU" iperf3 -s -p "$SERVER"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/switchyard.ini"
start "$PROXY_CPU" haproxy -f "$T/haproxy.cfg"
sleep 1

systems=(direct switchyard haproxy)
port_of() { case $1 in direct) echo "$SERVER" ;; switchyard) echo "$SY" ;; haproxy) echo "$HA" ;; esac; }
for round in $(seq 1 "$ROUNDS"); do
  order=("${systems[@]}")
  [ $((round % 2)) -eq 0 ] && order=(haproxy switchyard direct)
  for s in "${order[@]}"; do
    out=$(taskset -c "$LOAD_CPU" iperf3 -c 127.0.0.1 -p "$(port_of "$s")" -t "$DURATION" -f M 2>&1)
    mibs=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "MBytes/sec") print $(i - 1) }' <<<"$out")
    [ -n "$mibs" ] || die "iperf3 said nothing usable for $s: $out"
    log "round $round $s: $mibs MiB/s"
    add_sample "$s" "$mibs"
  done
done

echo "| system | MiB/s | vs HAProxy | vs direct |"
echo "|---|--:|--:|--:|"
for s in "${systems[@]}"; do
  printf '| %s | %s | %.2fx | %.2fx |\n' "$s" "$(avg "$s")" \
    "$(ratio "$(avg "$s")" "$(avg haproxy)")" "$(ratio "$(avg "$s")" "$(avg direct)")"
done
echo
echo "iperf3 -t $DURATION, one stream; rounds: $ROUNDS; proxy on CPU $PROXY_CPU, iperf3 on CPU $LOAD_CPU; $(date -u +%F)"
