#!/usr/bin/env bash
# bench/udp.sh - UDP datagram throughput through switchyard's `protocol = udp` [l4] listener
# and straight to the server, with iperf3 -u (one client, client to server, sending as fast as
# it can). iperf3's control connection is TCP on the same port, so switchyard carries it with
# a TCP [l4] listener on the UDP listener's address. The proxy runs on PROXY_CPU, iperf3's
# server and client on LOAD_CPU.
#
# Usage: bench/udp.sh            (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=2, DURATION=10 (s), LEN=1400 (payload bytes),
#   BASE_PORT=29380, PROXY_CPU=0, LOAD_CPU=1. Prints a markdown table of datagrams/s and
#   MiB/s received, the loss, and ratios. iperf3 is apt-get installed as root when missing.
#   Every process started here is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-10} LEN=${LEN:-1400} BASE_PORT=${BASE_PORT:-29380}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
SERVER=$BASE_PORT SY=$((BASE_PORT + 1)) SY_HTTP=$((BASE_PORT + 2)) SY_ADMIN=$((BASE_PORT + 3))

NAME=udp.sh TOOLS="iperf3:iperf3 python3:python3"
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

[l4 control]
listen = 127.0.0.1:$SY
backends = iperf

[l4 data]
listen = 127.0.0.1:$SY
protocol = udp
backends = iperf
INI

start "$LOAD_CPU" iperf3 -s -p "$SERVER"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/switchyard.ini"
sleep 1

# receiver datagrams/s, MiB/s and loss % from iperf3's JSON on stdin.
figures() {
  python3 -c '
import json, sys
s = json.load(sys.stdin)["end"]["sum"]
secs = s["seconds"] or 1
got = s["packets"] - s["lost_packets"]
print(round(got / secs), round(got * int(sys.argv[1]) / secs / 1048576, 1), round(s["lost_percent"], 2))
' "$LEN"
}

# avg2 NAME: like avg, with two decimals.
avg2() { awk -v t="${total[$1]}" -v n="${count[$1]}" 'BEGIN { printf "%.2f", t / n }'; }

systems=(direct switchyard)
port_of() { case $1 in direct) echo "$SERVER" ;; switchyard) echo "$SY" ;; esac; }
for round in $(seq 1 "$ROUNDS"); do
  order=("${systems[@]}")
  [ $((round % 2)) -eq 0 ] && order=(switchyard direct)
  for s in "${order[@]}"; do
    out=$(taskset -c "$LOAD_CPU" iperf3 -c 127.0.0.1 -p "$(port_of "$s")" -u -b 0 -l "$LEN" \
      -t "$DURATION" -J 2>&1) || die "iperf3 failed for $s: $out"
    read -r dps mibs loss <<<"$(figures <<<"$out")" || die "iperf3 said nothing usable for $s"
    log "round $round $s: $dps datagrams/s, $mibs MiB/s, $loss% lost"
    add_sample "$s.dps" "$dps"
    add_sample "$s.mibs" "$mibs"
    add_sample "$s.loss" "$loss"
  done
done

echo "| system | datagrams/s received | MiB/s | lost | vs direct |"
echo "|---|--:|--:|--:|--:|"
for s in "${systems[@]}"; do
  printf '| %s | %s | %s | %s%% | %.2fx |\n' "$s" "$(avg "$s.dps")" "$(avg2 "$s.mibs")" \
    "$(avg2 "$s.loss")" "$(ratio "$(avg "$s.dps")" "$(avg direct.dps)")"
done
echo
echo "iperf3 -u -b 0 -l $LEN -t $DURATION, one client; rounds: $ROUNDS; proxy on CPU $PROXY_CPU, iperf3 on CPU $LOAD_CPU; $(date -u +%F)"
