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

die() { echo "tcp.sh: $*" >&2; exit 1; }
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]}"
  apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2
fi
if [ -z "${SWITCHYARD_BIN:-}" ]; then
  cargo build --release -q -p switchyard
  SWITCHYARD_BIN=${CARGO_TARGET_DIR:-target}/release/switchyard
fi
[ -x "$SWITCHYARD_BIN" ] || die "no switchyard binary at $SWITCHYARD_BIN"

T=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
start() { # start CPU CMD...: in its own process group, pinned
  local cpu=$1; shift
  taskset -c "$cpu" setsid "$@" >>"$T/procs.log" 2>&1 </dev/null &
  pids+=($!)
}

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

declare -A total count
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
    total[$s]=$(awk -v a="${total[$s]:-0}" -v b="$mibs" 'BEGIN { print a + b }')
    count[$s]=$(( ${count[$s]:-0} + 1 ))
  done
done

avg() { awk -v t="${total[$1]}" -v n="${count[$1]}" 'BEGIN { printf "%.0f", t / n }'; }
echo "| system | MiB/s | vs HAProxy | vs direct |"
echo "|---|--:|--:|--:|"
for s in "${systems[@]}"; do
  printf '| %s | %s | %.2fx | %.2fx |\n' "$s" "$(avg "$s")" \
    "$(awk -v a="$(avg "$s")" -v b="$(avg haproxy)" 'BEGIN { print a / b }')" \
    "$(awk -v a="$(avg "$s")" -v b="$(avg direct)" 'BEGIN { print a / b }')"
done
echo
echo "iperf3 -t $DURATION, one stream; rounds: $ROUNDS; proxy on CPU $PROXY_CPU, iperf3 on CPU $LOAD_CPU; $(date -u +%F)"
