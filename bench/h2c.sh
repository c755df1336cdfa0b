#!/usr/bin/env bash
# bench/h2c.sh - HTTP/2 with prior knowledge (h2c) through switchyard and HAProxy, against an
# nginx backend, with h2load; plus h2load straight to nginx's own h2c port ("direct"). nginx
# speaks h2c only as a backend here (as a proxy it offers HTTP/2 over TLS only), so the proxy
# comparison is with HAProxy (`bind ... proto h2`, one thread). The proxies talk HTTP/1.1 to the
# backend with keep-alive (switchyard, haproxy), or HTTP/2 to its h2c port (switchyard-h2 with
# `protocol = h2c`, haproxy-h2 with `proto h2`). The proxy runs on PROXY_CPU, the backend and
# h2load on LOAD_CPU.
#
# Usage: bench/h2c.sh            (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=2, DURATION=10 (s), WARMUP=2 (s), CLIENTS=16,
#   STREAMS=10 (concurrent streams per client), BASE_PORT=29180, PROXY_CPU=0, LOAD_CPU=1.
# Prints a markdown table: req/s (mean over rounds), ratio to HAProxy and to direct, and
# h2load's mean request time. Missing tools (nginx, haproxy, h2load) are apt-get installed as
# root. Every process started here is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-10} WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-16} STREAMS=${STREAMS:-10} BASE_PORT=${BASE_PORT:-29180}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND=$BASE_PORT DIRECT=$((BASE_PORT + 1)) SY=$((BASE_PORT + 2)) HA=$((BASE_PORT + 3))
SY2=$((BASE_PORT + 4)) HA2=$((BASE_PORT + 5))

NAME=h2c.sh TOOLS="nginx:nginx haproxy:haproxy h2load:nghttp2-client"
# shellcheck source=bench/common.sh
. bench/common.sh

nginx_backend "127.0.0.1:$BACKEND" "127.0.0.1:$DIRECT http2"
cat >"$T/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  maxconn 5000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend f
  bind 127.0.0.1:$HA proto h2
  default_backend b
backend b
  server s1 127.0.0.1:$BACKEND
frontend f2
  bind 127.0.0.1:$HA2 proto h2
  default_backend b2
backend b2
  server s2 127.0.0.1:$DIRECT proto h2
HAPROXY
cat >"$T/switchyard-h2.ini" <<INI
[server]
listen = 127.0.0.1:$SY2
threads = 1
admin_listen = off
[backend nginx]
address = 127.0.0.1:$DIRECT
protocol = h2c
[route all]
backends = nginx
INI

start "$LOAD_CPU" nginx -c "$T/nginx.conf"
start "$PROXY_CPU" "$SWITCHYARD_BIN" proxy --listen "127.0.0.1:$SY" --to "127.0.0.1:$BACKEND" --threads 1
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/switchyard-h2.ini"
start "$PROXY_CPU" haproxy -f "$T/haproxy.cfg"
for port in $DIRECT $SY $HA $SY2 $HA2; do
  ok=
  for _ in $(seq 1 100); do
    if h2load -n 1 -c 1 "http://127.0.0.1:$port/" 2>/dev/null | grep -q '1 succeeded'; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || die "nothing answers h2c on port $port (see $T/procs.log)"
done

declare -A mean_ms
systems=(direct switchyard haproxy switchyard-h2 haproxy-h2)
port_of() {
  case $1 in
    direct) echo "$DIRECT" ;; switchyard) echo "$SY" ;; haproxy) echo "$HA" ;;
    switchyard-h2) echo "$SY2" ;; haproxy-h2) echo "$HA2" ;;
  esac
}
peer_of() { case $1 in switchyard-h2 | haproxy-h2) echo haproxy-h2 ;; *) echo haproxy ;; esac; }
for round in $(seq 1 "$ROUNDS"); do
  order=("${systems[@]}")
  [ $((round % 2)) -eq 0 ] && order=(haproxy-h2 switchyard-h2 haproxy switchyard direct)
  for s in "${order[@]}"; do
    out=$(taskset -c "$LOAD_CPU" h2load -c "$CLIENTS" -m "$STREAMS" -D "$DURATION" \
      --warm-up-time "$WARMUP" "http://127.0.0.1:$(port_of "$s")/" 2>&1)
    rps=$(sed -n 's/.*finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    failed=$(sed -n 's/.* \([0-9]*\) failed,.*/\1/p' <<<"$out" | head -1)
    mean=$(awk '/^time for request:/ { print $6 }' <<<"$out")
    [ -n "$rps" ] || die "h2load said nothing usable for $s: $out"
    log "round $round $s: $rps req/s, mean request $mean, failed ${failed:-?}"
    add_sample "$s" "$rps"
    mean_ms[$s]="$mean"
  done
done

echo "| system | upstream | req/s | vs HAProxy (same upstream) | vs direct | mean request time (last round) |"
echo "|---|---|--:|--:|--:|--:|"
for s in "${systems[@]}"; do
  case $s in direct) up="-" ;; *-h2) up="HTTP/2" ;; *) up="HTTP/1.1" ;; esac
  printf '| %s | %s | %s | %.2fx | %.2fx | %s |\n' "$s" "$up" "$(avg "$s")" \
    "$(ratio "$(avg "$s")" "$(avg "$(peer_of "$s")")")" "$(ratio "$(avg "$s")" "$(avg direct)")" \
    "${mean_ms[$s]}"
done
echo
echo "h2load -c $CLIENTS -m $STREAMS -D $DURATION --warm-up-time $WARMUP; rounds: $ROUNDS; proxy on CPU $PROXY_CPU, nginx and h2load on CPU $LOAD_CPU; $(date -u +%F)"
