#!/usr/bin/env bash
# bench/flood.sh - a new-connection flood from many source addresses against a proxy with the
# accept limiter on: does the limiter keep its memory bounded, and do legitimate clients keep
# their latency?
#
# One proxy (one reactor thread, PROXY_CPU) with max_connections, per-IP connection caps and
# rates, bans and a max_tracked_ips table smaller than the flood's sources; an nginx backend
# (128-byte body) on LOAD_CPU. `switchyard flood` (FLOOD_CPU) opens connections from SOURCES
# addresses of 127/8 (127.1.0.1 on), MODE connect-close, hold or junk. The legitimate client is
# wrk from 127.0.0.1 (one thread, CONNS keep-alive connections, LOAD_CPU). Each round measures
# wrk alone ("quiet"), then wrk while the flood runs ("flood"); the table gives the median
# p50/p99/req/s over the rounds, the flood's attempts per second, the proxy's RSS (VmRSS) before,
# during and after, and the /stats `accept` section at the end.
#
# Usage: bench/flood.sh       (builds switchyard unless SWITCHYARD_BIN is set)
# Knobs (default): SWITCHYARD_BIN, ROUNDS=3, DURATION=10 (s of wrk per phase), CONNS=4,
#   SOURCES=1000, MODE=connect-close, CONCURRENCY=256, RATE=0 (flood attempts/s, 0: as fast as
#   it goes), MAX_TRACKED=512, BASE_PORT=29380, PROXY_CPU=0, LOAD_CPU=1, FLOOD_CPU=1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} CONNS=${CONNS:-4} SOURCES=${SOURCES:-1000}
MODE=${MODE:-connect-close} CONCURRENCY=${CONCURRENCY:-256} RATE=${RATE:-0}
MAX_TRACKED=${MAX_TRACKED:-512} BASE_PORT=${BASE_PORT:-29380}
PROXY_CPU=${PROXY_CPU:-0} LOAD_CPU=${LOAD_CPU:-1} FLOOD_CPU=${FLOOD_CPU:-1}
BACKEND=$BASE_PORT PROXY=$((BASE_PORT + 1)) ADMIN=$((BASE_PORT + 2))

NAME=flood.sh TOOLS="nginx:nginx wrk:wrk curl:curl python3:python3"
# shellcheck source=bench/common.sh
. bench/common.sh

nginx_backend "127.0.0.1:$BACKEND"
cat >"$T/proxy.ini" <<INI
[server]
listen = 127.0.0.1:$PROXY
threads = 1
admin_listen = 127.0.0.1:$ADMIN
max_connections = 10000
max_connections_per_ip = 16
max_connection_rate_per_ip = 8
ban_after = 5
ban_time = 5s
max_tracked_ips = $MAX_TRACKED
[backend nginx]
address = 127.0.0.1:$BACKEND
[route all]
backends = nginx
INI

start "$LOAD_CPU" nginx -c "$T/nginx.conf"
start "$PROXY_CPU" "$SWITCHYARD_BIN" run --config "$T/proxy.ini"
proxy_pid=${pids[-1]}
ok=
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$PROXY/" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || die "nothing answers on port $PROXY (see $T/procs.log)"
[ "$(readlink -f "/proc/$proxy_pid/exe")" = "$(readlink -f "$SWITCHYARD_BIN")" ] ||
  die "pid $proxy_pid is not the proxy"

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$proxy_pid/status"; } # KiB
legit() { # legit PHASE ROUND: one wrk run, its figures appended to $T/legit
  local out p50 p99 rps errors
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
    "http://127.0.0.1:$PROXY/" 2>&1)
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  [ -n "$rps" ] || die "wrk said nothing usable: $out"
  # Failed requests: socket errors (connect, read, write, timeout) and non-2xx answers.
  errors=$(awk '/Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
    /Non-2xx/ { n += $NF } END { print n + 0 }' <<<"$out")
  log "round $2 $1: p50 $p50, p99 $p99, $rps req/s, $errors errors"
  echo "$1 $p50 $p99 $rps $errors" >>"$T/legit"
}

: >"$T/legit" && : >"$T/flood" && : >"$T/rss"
rss_before=$(rss)
for round in $(seq 1 "$ROUNDS"); do
  legit quiet "$round"
  flood_secs=$((DURATION + 4))
  taskset -c "$FLOOD_CPU" "$SWITCHYARD_BIN" flood --target "127.0.0.1:$PROXY" --json \
    --sources "$SOURCES" --mode "$MODE" --concurrency "$CONCURRENCY" --rate "$RATE" \
    --duration "$flood_secs" >>"$T/flood" 2>>"$T/procs.log" &
  flood=$!
  sleep 2
  (sleep $((DURATION / 2)); rss >>"$T/rss") &
  legit flood "$round"
  wait "$flood" || die "the flood failed (see $T/procs.log)"
  log "round $round flood: $(tail -1 "$T/flood")"
  sleep 2
done
rss_after=$(rss)
accept=$(curl -sf "http://127.0.0.1:$ADMIN/stats" | python3 -c 'import json, sys
print(json.dumps(json.load(sys.stdin)["accept"]))') || die "no /stats"

python3 - "$T/legit" "$T/flood" "$T/rss" "$rss_before" "$rss_after" <<'PY'
import json, re, statistics, sys
legit, flood, rss, before, after = sys.argv[1:]
def ms(s):
    v, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rows = {}
for line in open(legit):
    phase, p50, p99, rps, errors = line.split()
    rows.setdefault(phase, []).append((ms(p50), ms(p99), float(rps), int(errors)))
floods = [json.loads(l) for l in open(flood)]
during = [int(l) for l in open(rss)]
print("| legitimate client | p50 (median) | p99 (median) | p99 (worst round) | req/s (median) | errors (all rounds) |")
print("|---|--:|--:|--:|--:|--:|")
for phase in ("quiet", "flood"):
    r = rows[phase]
    med = lambda i: statistics.median(x[i] for x in r)
    print(f"| {phase} | {med(0):.2f}ms | {med(1):.2f}ms | {max(x[1] for x in r):.2f}ms | {med(2):.0f} | {sum(x[3] for x in r)} |")
print()
aps = statistics.median(f["attempts_per_sec"] for f in floods)
print(f"flood: {aps:.0f} attempts/s (median of rounds); per round: "
      + "; ".join(f"{f['attempts']} attempts, {f['connected']} connected, "
                  f"{f['connect_failed'] + f['connect_timeouts']} failed, "
                  f"{f['closed_by_server']} closed by the proxy" for f in floods))
print(f"proxy VmRSS: before {int(before) // 1024} MiB, during (per round) "
      + ", ".join(f"{k // 1024}" for k in during) + f" MiB, after {int(after) // 1024} MiB")
PY
echo "accept (/stats at the end): $accept"
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s --latency from 127.0.0.1; switchyard flood --sources $SOURCES" \
  "--mode $MODE --concurrency $CONCURRENCY --rate $RATE; rounds: $ROUNDS; max_tracked_ips" \
  "$MAX_TRACKED, max_connection_rate_per_ip 8, max_connections_per_ip 16, ban_after 5;" \
  "proxy on CPU $PROXY_CPU, nginx and wrk on CPU $LOAD_CPU, flood on CPU $FLOOD_CPU; $(date -u +%F)"
