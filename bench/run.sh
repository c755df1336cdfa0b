#!/usr/bin/env bash
# bench/run.sh - switchyard's benchmark: switchyard next to nginx and HAProxy (and a direct
# baseline), on one machine, loopback (127.0.0.1) only. See bench/README.md.
#
# Usage:
#   bench/run.sh                              build switchyard (cargo build --release), run all
#   SWITCHYARD_BIN=/path/to/switchyard bench/run.sh       use that binary, no build
#   bench/run.sh report FILE.jsonl [...]      re-render a report from recorded results
#   bench/run.sh --help
#
# Environment knobs (default):
#   SWITCHYARD_BIN  switchyard binary; unset: build it in the repo (target/, or $CARGO_TARGET_DIR)
#   WORKLOADS       "ka conns"   ka: keep-alive, 64 conns; conns: 1,000 conns (wrk -t1 -cN)
#   SYSTEMS         "direct switchyard nginx haproxy"
#   DURATION=10     seconds of each measured run      WARMUP=2   seconds of warm-up before it
#   ROUNDS=1        rounds; even rounds run the systems in reverse order (cancels drift)
#   IDLE_CONNS=10000  idle client connections for the memory step (0 = skip that step)
#   OUT             output dir (default: a new mktemp -d): results.jsonl, report.md, logs/
#   BASE_PORT=28080 ports BASE_PORT..BASE_PORT+4 on 127.0.0.1 (must be free)
#   PROXY_CPU=0     CPU of the proxy under test      LOAD_CPU=1  CPU of backend and wrk
#   NICE            nice value of servers and wrk (-10 as root, else 0)
#   WRK_TIMEOUT=5s  wrk's per-request timeout     KEEP_TMP=0  1: keep the temp dir
#   MAX_SECONDS     watchdog for the whole run after the build (default: estimate + 120)
#
# Every process started here runs in its own process group and is killed on exit (trap);
# temp files live in a mktemp -d directory. Missing tools are apt-get installed (root only).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export NO_COLOR=1   # plain switchyard logs in OUT/logs/

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "run.sh: $*" >&2; exit 1; }
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  report) shift; [ $# -gt 0 ] || die "usage: run.sh report FILE.jsonl [...]"
          exec python3 "$HERE/report.py" "$@" ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

# The exact command line, with the knobs that were set in the environment.
KNOBS=(SWITCHYARD_BIN CARGO_TARGET_DIR WORKLOADS SYSTEMS DURATION WARMUP ROUNDS IDLE_CONNS OUT
       BASE_PORT PROXY_CPU LOAD_CPU NICE WRK_TIMEOUT KEEP_TMP MAX_SECONDS)
COMMAND=""
for k in "${KNOBS[@]}"; do
  if [ -n "${!k+x}" ]; then COMMAND+="$k=$(printf %q "${!k}") "; fi
done
COMMAND+=$(printf %q "$0")
for a in "$@"; do COMMAND+=" $(printf %q "$a")"; done

WORKLOADS=${WORKLOADS:-ka conns}
SYSTEMS=${SYSTEMS:-direct switchyard nginx haproxy}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
BASE_PORT=${BASE_PORT:-28080}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}
KEEP_TMP=${KEEP_TMP:-0}
if [ "$(id -u)" = 0 ]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for k in DURATION WARMUP ROUNDS IDLE_CONNS BASE_PORT PROXY_CPU LOAD_CPU; do
  is_uint "${!k}" || die "$k must be a whole number, got '${!k}'"
done
[[ $NICE =~ ^-?[0-9]+$ ]] || die "NICE must be an integer, got '$NICE'"
[ "$DURATION" -ge 1 ] || die "DURATION must be >= 1"
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be >= 1"
if [ "$BASE_PORT" -lt 1024 ] || [ "$BASE_PORT" -gt 65530 ]; then die "BASE_PORT must be in 1024..65530"; fi
read -ra WL <<<"$WORKLOADS"
read -ra SYS <<<"$SYSTEMS"
for w in "${WL[@]}"; do case $w in ka | conns) ;; *) die "unknown workload '$w' (ka, conns)" ;; esac; done
for s in "${SYS[@]}"; do
  case $s in direct | switchyard | nginx | haproxy) ;; *) die "unknown system '$s'" ;; esac
done
if [ ${#WL[@]} -eq 0 ] && [ "$IDLE_CONNS" -eq 0 ]; then die "nothing to run"; fi
if [ ${#WL[@]} -gt 0 ] && [ ${#SYS[@]} -eq 0 ]; then die "SYSTEMS is empty"; fi

# ---------------------------------------------------------------------------------------------
# Dependencies (apt-get install the missing ones when root).
declare -A PKG_OF=([nginx]=nginx [haproxy]=haproxy [wrk]=wrk [curl]=curl [python3]=python3
                   [taskset]=util-linux [setsid]=util-linux [timeout]=coreutils
                   [getconf]=libc-bin [awk]=mawk)
missing=()
for c in "${!PKG_OF[@]}"; do command -v "$c" >/dev/null 2>&1 || missing+=("${PKG_OF[$c]}"); done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root to apt-get install them)"
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi
nginx -V 2>&1 | grep -q http_stub_status_module || die "this nginx has no stub_status module"

# Pinning needs both CPUs.
allowed=$(taskset -pc $$ 2>/dev/null | sed 's/.*: //')
for cpu in "$PROXY_CPU" "$LOAD_CPU"; do
  taskset -c "$cpu" true 2>/dev/null \
    || die "cannot pin to CPU $cpu (allowed: ${allowed:-?}); set PROXY_CPU= and LOAD_CPU="
done

# ---------------------------------------------------------------------------------------------
# switchyard binary
if [ -n "${SWITCHYARD_BIN:-}" ]; then
  BIN=$SWITCHYARD_BIN
else
  log "building: cargo build --release -p switchyard (in $REPO)"
  (cd "$REPO" && cargo build --release -p switchyard) || die "cargo build failed"
  BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/switchyard
fi
[ -x "$BIN" ] || die "switchyard binary not found or not executable: $BIN"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
SY_VERSION=$("$BIN" --version 2>&1 | head -1) || die "$BIN --version failed"

# ---------------------------------------------------------------------------------------------
# Ports
BACKEND_PORT=$BASE_PORT
declare -A PORT_OF=([direct]=$BASE_PORT [switchyard]=$((BASE_PORT + 1)) [nginx]=$((BASE_PORT + 2))
                    [haproxy]=$((BASE_PORT + 3)))
IDLE_PORT=$((BASE_PORT + 4))
busy=$(python3 - "$BASE_PORT" "$((BASE_PORT + 1))" "$((BASE_PORT + 2))" "$((BASE_PORT + 3))" "$IDLE_PORT" <<'EOF'
import socket, sys
busy = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        busy.append(str(port))
    finally:
        s.close()
print(" ".join(busy))
EOF
) || die "port check failed"
[ -z "$busy" ] || die "127.0.0.1 port(s) in use: $busy (choose another BASE_PORT=)"

# ---------------------------------------------------------------------------------------------
# Temp dir, output dir, cleanup
T=$(mktemp -d -t switchyard-bench.XXXXXX) || die "mktemp failed"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" || die "cannot create OUT=$OUT"
else
  OUT=$(mktemp -d -t switchyard-bench-out.XXXXXX) || die "mktemp failed"
fi
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

declare -a GROUPS_STARTED=()   # process-group ids (== pid of the leader) of everything started
declare -A PID_OF=()           # server name -> pid (process-group leader)
LOADGEN_PID=""
WATCHDOG_PID=""

kill_group() { # kill_group PGID: TERM, wait up to 3 s, then KILL
  local pg=$1 i
  kill -TERM -- "-$pg" 2>/dev/null || kill -TERM "$pg" 2>/dev/null || return 0
  for i in $(seq 30); do
    kill -0 -- "-$pg" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pg" 2>/dev/null
  kill -KILL "$pg" 2>/dev/null
  return 0
}

cleanup() {
  local rc=$? pg
  trap - EXIT INT TERM
  if [ -n "$LOADGEN_PID" ]; then
    { kill -KILL -- "-$LOADGEN_PID"; wait "$LOADGEN_PID"; } 2>/dev/null
  fi
  [ -n "$WATCHDOG_PID" ] && kill -KILL -- "-$WATCHDOG_PID" 2>/dev/null
  for pg in "${GROUPS_STARTED[@]}"; do kill -TERM -- "-$pg" 2>/dev/null; done
  for pg in "${GROUPS_STARTED[@]}"; do kill_group "$pg"; done
  wait 2>/dev/null
  if [ -d "$T" ]; then
    mkdir -p "$OUT/logs" && cp "$T"/*.log "$OUT/logs/" 2>/dev/null
    if [ "$KEEP_TMP" = 1 ]; then log "kept temp dir $T"; else rm -rf "$T"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# start NAME CPU CMD...: run CMD pinned to CPU, in a new session (its own process group),
# at nice NICE, output to $T/NAME.log. Sets PID_OF[NAME].
start() {
  local name=$1 cpu=$2 pid
  shift 2
  taskset -c "$cpu" setsid nice -n "$NICE" "$@" >"$T/$name.log" 2>&1 </dev/null &
  pid=$!
  GROUPS_STARTED+=("$pid")
  PID_OF[$name]=$pid
}

stop() { # stop NAME
  local pid=${PID_OF[$1]:-}
  [ -n "$pid" ] || return 0
  kill_group "$pid"
  wait "$pid" 2>/dev/null
  unset "PID_OF[$1]"
  local -a keep=()
  local g
  for g in "${GROUPS_STARTED[@]}"; do [ "$g" = "$pid" ] || keep+=("$g"); done
  GROUPS_STARTED=("${keep[@]}")
}

alive() { # alive PID: the process exists and is not a zombie
  local s
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  s=${s##*) }
  [ "${s:0:1}" != Z ]
}

# File descriptors: wrk -c1000, proxies with 2,000 sockets, the idle client with 10,000.
HARD_NOFILE=$(ulimit -Hn)
[ "$HARD_NOFILE" = unlimited ] && HARD_NOFILE=1048576
NOFILE=$((HARD_NOFILE < 65536 ? HARD_NOFILE : 65536))
ulimit -n "$NOFILE" 2>/dev/null || log "warning: could not raise the open-files limit to $NOFILE"
WORKER_CONNS=$((NOFILE / 2 < 10240 ? NOFILE / 2 : 10240))
HAPROXY_MAXCONN=$(((NOFILE - 200) / 2 < 8000 ? (NOFILE - 200) / 2 : 8000))

# ---------------------------------------------------------------------------------------------
# Time budget and watchdog
per_run=$((WARMUP + DURATION + 3))
runs=$((ROUNDS * ${#WL[@]} * ${#SYS[@]}))
ESTIMATE=$((runs * per_run + 10))
[ "$IDLE_CONNS" -gt 0 ] && ESTIMATE=$((ESTIMATE + 30))
MAX_SECONDS=${MAX_SECONDS:-$((ESTIMATE + 120))}
is_uint "$MAX_SECONDS" || die "MAX_SECONDS must be a whole number"
# shellcheck disable=SC2016  # expanded by the inner bash
setsid bash -c 'sleep "$1"; echo "run.sh: watchdog: MAX_SECONDS=$1 reached, stopping" >&2; kill -TERM "$2"' \
  watchdog "$MAX_SECONDS" "$$" </dev/null &
WATCHDOG_PID=$!
disown "$WATCHDOG_PID"   # no "Killed" job message when cleanup stops it

# ---------------------------------------------------------------------------------------------
# Configurations
BODY=$(printf 'switchyard-bench-%0111d' 0)   # exactly 128 bytes
[ ${#BODY} = 128 ] || die "internal: body is ${#BODY} bytes"

nginx_common() { # nginx_common DIR: the parts every nginx here shares
  cat <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $1/nginx.pid;
events { worker_connections $WORKER_CONNS; }
EOF
}
nginx_http_common() {
  cat <<EOF
    access_log off;
    default_type text/plain;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

mkdir -p "$T/backend" "$T/nginx"
{
  nginx_common "$T/backend"
  echo "http {"
  nginx_http_common "$T/backend"
  cat <<EOF
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location = / { return 200 "$BODY"; }
        location = /__stats { stub_status; }
        location / { return 404; }
    }
}
EOF
} >"$T/backend/nginx.conf"

{
  nginx_common "$T/nginx"
  echo "http {"
  nginx_http_common "$T/nginx"
  cat <<EOF
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:${PORT_OF[nginx]} backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$T/nginx/nginx.conf"

cat >"$T/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    backlog 4096
    http-reuse always

frontend fe
    bind 127.0.0.1:${PORT_OF[haproxy]}
    default_backend be

backend be
    server backend 127.0.0.1:$BACKEND_PORT
EOF

cat >"$T/switchyard-idle.ini" <<EOF
; switchyard for the idle-connections memory step (written by bench/run.sh)
[server]
listen = 127.0.0.1:$IDLE_PORT
threads = 1
admin_listen = off
drain_timeout = 0
client_keepalive_timeout = 10m

[backend bench]
address = 127.0.0.1:$BACKEND_PORT

[route all]
backends = bench
EOF

# ---------------------------------------------------------------------------------------------
# Measurement helpers
CLK_TCK=$(getconf CLK_TCK)

group_ticks() { # group_ticks PGID: utime+stime (clock ticks) summed over the group's processes
  local pg=$1 total=0 f s
  local -a a
  for f in /proc/[0-9]*/stat; do
    { read -r s <"$f"; } 2>/dev/null || continue
    s=${s##*) }
    read -ra a <<<"$s"
    [ "${a[2]}" = "$pg" ] && total=$((total + a[11] + a[12]))
  done
  echo "$total"
}

cpu_stat() { # cpu_stat N: "busy total" jiffies of CPU N from /proc/stat (all processes)
  local name u n sy idle io irq sirq steal rest
  while read -r name u n sy idle io irq sirq steal rest; do
    if [ "$name" = "cpu$1" ]; then
      echo "$((u + n + sy + irq + sirq + steal)) $((u + n + sy + idle + io + irq + sirq + steal))"
      return
    fi
  done </proc/stat
  echo "0 0"
}

busy_pct() { # busy_pct "BUSY0 TOTAL0" "BUSY1 TOTAL1"
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
    if (t > 0) printf "%.1f", (y[1] - x[1]) / t * 100; else printf "null" }'
}

backend_accepts() { # accepted connections so far, from the backend's stub_status
  curl -s --max-time 2 "http://127.0.0.1:$BACKEND_PORT/__stats" | awk 'NR == 3 { print $1 }'
}

probe() { # probe PORT: GET / answers 200 with the 128-byte body
  local code
  code=$(curl -s -o "$T/probe.body" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/") || return 1
  [ "$code" = 200 ] && [ "$(wc -c <"$T/probe.body")" -eq 128 ]
}

wait_ready() { # wait_ready NAME PORT: until a GET through PORT works (10 s)
  local name=$1 port=$2 i
  for i in $(seq 100); do
    probe "$port" && return 0
    alive "${PID_OF[$name]}" || { tail -5 "$T/$name.log" >&2; die "$name exited at start"; }
    sleep 0.1
  done
  tail -5 "$T/$name.log" >&2
  die "$name is not answering on 127.0.0.1:$port"
}

run_wrk() { # run_wrk CONNS SECONDS PORT OUTFILE
  local rc
  taskset -c "$LOAD_CPU" setsid nice -n "$NICE" timeout -k 5 $(($2 + 30)) \
    wrk -t1 -c"$1" -d"$2s" --timeout "$WRK_TIMEOUT" -s "$HERE/wrk-json.lua" \
    "http://127.0.0.1:$3/" >"$4" 2>&1 </dev/null &
  LOADGEN_PID=$!
  wait "$LOADGEN_PID"
  rc=$?
  LOADGEN_PID=""
  return "$rc"
}

json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/}
  s=$(printf '%s' "$s" | tr -d '\000-\037')
  printf '"%s"' "$s"
}

conns_of() { case $1 in ka) echo 64 ;; conns) echo 1000 ;; esac; }

# bench_one WORKLOAD SYSTEM ROUND POSITION: warm-up, then one measured run; appends a JSON line
bench_one() {
  local w=$1 s=$2 r=$3 pos=$4 c port pg="" err="" wjson="" a0 a1 a2 ticks0 ticks1 bt0 bt1
  local t0 t1 elapsed cpu="null" bcpu up warm_up alive_after=true line pc0 pc1 lc0 lc1
  c=$(conns_of "$w")
  port=${PORT_OF[$s]}
  [ "$s" != direct ] && pg=${PID_OF[$s]:-}
  if [ "$s" != direct ] && { [ -z "$pg" ] || ! alive "$pg"; }; then
    err="$s is not running"
  elif ! probe "$port"; then
    err="GET / through $s did not answer 200 with the 128-byte body"
  fi
  if [ -z "$err" ] && [ "$WARMUP" -gt 0 ]; then
    a0=$(backend_accepts)
    run_wrk "$c" "$WARMUP" "$port" "$T/warmup.out"
    a1=$(backend_accepts)
    grep -q '^WRKJSON ' "$T/warmup.out" || err="warm-up wrk failed: $(tail -3 "$T/warmup.out")"
  fi
  if [ -z "$err" ]; then
    sleep 0.5
    a1=$(backend_accepts)
    bt0=$(group_ticks "${PID_OF[backend]}")
    [ -n "$pg" ] && ticks0=$(group_ticks "$pg")
    pc0=$(cpu_stat "$PROXY_CPU"); lc0=$(cpu_stat "$LOAD_CPU")
    t0=$EPOCHREALTIME
    run_wrk "$c" "$DURATION" "$port" "$T/run.out"
    t1=$EPOCHREALTIME
    pc1=$(cpu_stat "$PROXY_CPU"); lc1=$(cpu_stat "$LOAD_CPU")
    [ -n "$pg" ] && ticks1=$(group_ticks "$pg")
    bt1=$(group_ticks "${PID_OF[backend]}")
    a2=$(backend_accepts)
    wjson=$(grep -m1 '^WRKJSON ' "$T/run.out" | cut -d' ' -f2-)
    [ -n "$wjson" ] || err="wrk failed: $(tail -3 "$T/run.out")"
    if [ -n "$pg" ] && ! alive "$pg"; then alive_after=false; fi
  fi
  if [ -n "$err" ]; then
    line="{\"kind\":\"run\",\"workload\":\"$w\",\"connections\":$c,\"system\":\"$s\",\"round\":$r,"
    line+="\"position\":$pos,\"duration_s\":$DURATION,\"ok\":false,\"error\":$(json_str "$err")}"
  else
    elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    [ -n "$pg" ] && cpu=$(awk -v d=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v e="$elapsed" \
      'BEGIN { printf "%.1f", d / hz / e * 100 }')
    bcpu=$(awk -v d=$((bt1 - bt0)) -v hz="$CLK_TCK" -v e="$elapsed" 'BEGIN { printf "%.1f", d / hz / e * 100 }')
    # each stub_status read is itself one accepted connection: subtract it
    up=$((a2 - a1 - 1))
    warm_up=null
    [ "$WARMUP" -gt 0 ] && warm_up=$((a1 - a0 - 1))
    line="{\"kind\":\"run\",\"workload\":\"$w\",\"connections\":$c,\"system\":\"$s\",\"round\":$r,"
    line+="\"position\":$pos,\"duration_s\":$DURATION,\"warmup_s\":$WARMUP,\"elapsed_s\":$elapsed,"
    line+="\"ok\":true,\"wrk\":$wjson,\"upstream_conns\":$up,\"warmup_upstream_conns\":$warm_up,"
    line+="\"proxy_cpu_pct\":$cpu,\"backend_cpu_pct\":$bcpu,\"proxy_alive_after\":$alive_after,"
    line+="\"proxy_core_busy_pct\":$(busy_pct "$pc0" "$pc1"),\"load_core_busy_pct\":$(busy_pct "$lc0" "$lc1")}"
  fi
  echo "$line" >>"$RESULTS"
  python3 "$HERE/report.py" --line <<<"$line"
}

vmrss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
nfds() { local f n=0; for f in /proc/"$1"/fd/*; do n=$((n + 1)); done; echo "$n"; }

# idle_step: switchyard alone, RSS before and with IDLE_CONNS idle keep-alive client connections
idle_step() {
  local n=$IDLE_CONNS pid cpid err="" rss0 rss1 fds0 fds1 client="" i line alive_after=true
  log "idle step: switchyard alone with $n idle client connections"
  if ! "$BIN" check "$T/switchyard-idle.ini" >"$T/switchyard-idle-check.log" 2>&1; then
    err="switchyard check rejected the idle-step config: $(tail -3 "$T/switchyard-idle-check.log")"
  else
    start switchyard-idle "$PROXY_CPU" "$BIN" run --config "$T/switchyard-idle.ini"
    pid=${PID_OF[switchyard-idle]}
    wait_ready switchyard-idle "$IDLE_PORT"
    sleep 1
    rss0=$(vmrss_kib "$pid"); fds0=$(nfds "$pid")
    rm -f "$T/idle.ready" "$T/idle.release"
    start idle-client "$LOAD_CPU" python3 "$HERE/idle_conns.py" --port "$IDLE_PORT" --conns "$n" \
      --batch 100 --ready "$T/idle.ready" --release "$T/idle.release" --hold-max 60
    cpid=${PID_OF[idle-client]}
    for i in $(seq 600); do   # opening 10,000 connections takes a few seconds
      [ -f "$T/idle.ready" ] && break
      alive "$cpid" || break
      sleep 0.1
    done
    if [ ! -f "$T/idle.ready" ]; then
      err="idle client did not get its connections open: $(tail -3 "$T/idle-client.log")"
    else
      sleep 2   # let switchyard settle (freed buffers, pool) before reading
      rss1=$(vmrss_kib "$pid"); fds1=$(nfds "$pid")
      alive "$pid" || alive_after=false
      touch "$T/idle.release"
      for i in $(seq 300); do alive "$cpid" || break; sleep 0.1; done
      client=$(grep -m1 '^{' "$T/idle-client.log")
      [ -n "$client" ] || client=$(cat "$T/idle.ready")
      [ -n "$rss0" ] && [ -n "$rss1" ] || err="could not read switchyard's VmRSS"
    fi
    stop idle-client
    stop switchyard-idle
  fi
  if [ -n "$err" ]; then
    line="{\"kind\":\"idle\",\"requested\":$n,\"ok\":false,\"error\":$(json_str "$err")}"
  else
    line="{\"kind\":\"idle\",\"requested\":$n,\"ok\":true,\"rss_before_kib\":$rss0,"
    line+="\"rss_with_kib\":$rss1,\"fds_before\":$fds0,\"fds_with\":$fds1,\"alive_after\":$alive_after,"
    line+="\"client\":$client}"
  fi
  echo "$line" >>"$RESULTS"
  python3 - "$line" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
if not r["ok"]:
    print(f"idle step FAILED: {r['error']}")
else:
    c = r["client"]
    d = r["rss_with_kib"] - r["rss_before_kib"]
    per = f"{d / c['opened'] * 1024:,.0f} bytes ({d / c['opened']:.2f} KiB)" if c["opened"] else "n/a"
    print(f"switchyard VmRSS: {r['rss_before_kib']:,} KiB before, {r['rss_with_kib']:,} KiB with "
          f"{c['opened']:,} idle connections open ({c.get('still_open', '?'):,} still open after the "
          f"hold; fds {r['fds_before']} -> {r['fds_with']}): +{d:,} KiB, {per} per connection")
EOF
}

# ---------------------------------------------------------------------------------------------
# Meta record
ver() { "$@" 2>&1 | head -1; }
NGINX_VERSION=$(ver nginx -v)
HAPROXY_VERSION=$(ver haproxy -v)
WRK_VERSION=$(wrk -v 2>&1 | head -1)
HOST="$(uname -sr), $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
SETTINGS="workloads: ${WL[*]}; systems: ${SYS[*]}; duration ${DURATION} s, warm-up ${WARMUP} s, rounds ${ROUNDS}; proxy on CPU ${PROXY_CPU}, backend and wrk on CPU ${LOAD_CPU}; nice ${NICE}; backend: nginx, 1 worker, 128-byte body; proxies: 1 worker/thread each, upstream keep-alive (nginx keepalive 64, HAProxy http-reuse always)"
DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
{
  printf '{"kind":"meta","date":%s,"command":%s,"host":%s,' \
    "$(json_str "$DATE")" "$(json_str "$COMMAND")" "$(json_str "$HOST")"
  printf '"switchyard_bin":%s,"switchyard_version":%s,"nginx_version":%s,' \
    "$(json_str "$BIN")" "$(json_str "$SY_VERSION")" "$(json_str "$NGINX_VERSION")"
  printf '"haproxy_version":%s,"wrk_version":%s,"settings":%s}\n' \
    "$(json_str "$HAPROXY_VERSION")" "$(json_str "$WRK_VERSION")" "$(json_str "$SETTINGS")"
} >>"$RESULTS"

echo "# switchyard benchmark"
echo "command: $COMMAND"
echo "date:    $DATE"
echo "versions: $SY_VERSION ($BIN); $NGINX_VERSION; $HAPROXY_VERSION; $WRK_VERSION"
echo "output:  $OUT   (estimated time ${ESTIMATE} s, watchdog ${MAX_SECONDS} s)"
echo

# ---------------------------------------------------------------------------------------------
# Start the servers: backend on LOAD_CPU, every proxy on PROXY_CPU alone.
start backend "$LOAD_CPU" nginx -p "$T/backend/" -c "$T/backend/nginx.conf" -e "$T/backend.err.log" -g 'daemon off;'
wait_ready backend "$BACKEND_PORT"
[ -n "$(backend_accepts)" ] || die "backend stub_status on /__stats does not answer"

need_proxy=0
for s in "${SYS[@]}"; do [ "$s" != direct ] && need_proxy=1; done
for s in "${SYS[@]}"; do
  case $s in
    switchyard) start switchyard "$PROXY_CPU" "$BIN" proxy --listen "127.0.0.1:${PORT_OF[switchyard]}" \
                  --to "127.0.0.1:$BACKEND_PORT" --threads 1 ;;
    nginx) start nginx "$PROXY_CPU" nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" -e "$T/nginx.err.log" -g 'daemon off;' ;;
    haproxy) start haproxy "$PROXY_CPU" haproxy -db -f "$T/haproxy.cfg" ;;
  esac
done
for s in "${SYS[@]}"; do [ "$s" != direct ] && wait_ready "$s" "${PORT_OF[$s]}"; done
[ "$need_proxy" = 1 ] && log "servers up: backend :$BACKEND_PORT; $(for s in "${SYS[@]}"; do [ "$s" != direct ] && printf '%s :%s ' "$s" "${PORT_OF[$s]}"; done)"

# ---------------------------------------------------------------------------------------------
# Runs
for ((r = 1; r <= ROUNDS; r++)); do
  order=("${SYS[@]}")
  if ((r % 2 == 0)); then
    order=()
    for ((i = ${#SYS[@]} - 1; i >= 0; i--)); do order+=("${SYS[$i]}"); done
  fi
  for w in "${WL[@]}"; do
    log "round $r/$ROUNDS, workload $w ($(conns_of "$w") connections): ${order[*]}"
    pos=0
    for s in "${order[@]}"; do
      pos=$((pos + 1))
      bench_one "$w" "$s" "$r" "$pos"
    done
  done
done

# The idle step runs switchyard alone: stop the other proxies first.
if [ "$IDLE_CONNS" -gt 0 ]; then
  for s in switchyard nginx haproxy; do stop "$s"; done
  idle_step
fi

python3 "$HERE/report.py" "$RESULTS" >"$OUT/report.md" || die "report.py failed"
echo
cat "$OUT/report.md"
echo "results: $RESULTS"
echo "report:  $OUT/report.md"
