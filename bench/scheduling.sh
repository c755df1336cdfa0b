#!/usr/bin/env bash
# bench/scheduling.sh - the scheduling benchmark: switchyard's balancers in front of four mock
# engines of unequal speed, under an open-loop load of streamed multi-turn chat completions
# from `switchyard loadgen`, on 127.0.0.1. See bench/README.md ("Scheduling benchmark").
#
# Usage:
#   bench/scheduling.sh                      build switchyard (cargo build --release), run all
#   SWITCHYARD_BIN=/path/to/switchyard bench/scheduling.sh    use that binary, no build
#   bench/scheduling.sh report DIR           re-print the table of a finished run (DIR = OUT)
#   bench/scheduling.sh --help
#
# Environment knobs (default):
#   SWITCHYARD_BIN   switchyard binary; unset: build it in the repo (target/, or $CARGO_TARGET_DIR)
#   BALANCERS        "round_robin least_conn least_queue response_time gpu prefix_cache consistent_hash"
#   DURATION=30      measured seconds per balancer     WARMUP=15  seconds of load before them
#   LOAD=0.8         offered load as a fraction of the engines' capacity (computed below)
#   RATE             requests/s; overrides LOAD
#   SEED=1           workload seed (arrival times, prompts)
#   Engines (speed factors SPEEDS="1 1 2 4" scale decode and prefill speed):
#     TOKENS_PER_SEC=20 decode tokens/s of one request alone at speed 1
#     PREFILL_PER_SEC=2000 prompt tokens/s of prefill at speed 1 (uncached tokens only)
#     TTFT_MS=20  fixed part of the time to first token
#     MAX_BATCH=8  running slots per engine     MAX_WAITING=256  queue bound per engine
#     BATCH_SLOWDOWN=0.5  a full batch decodes 1.5x slower than one request alone
#     PREFIX_BLOCK_TOKENS=16  PREFIX_CACHE_BLOCKS=2048  (the engines' defaults: 32k tokens)
#   Workload: CONVERSATIONS=64 TURNS=4 SYSTEM_TOKENS=600 USER_TOKENS=40 MAX_TOKENS=32 PROMPT_GROUPS=0
#   PROXY_THREADS=1  METRICS_INTERVAL=200ms  (switchyard's [server] settings)
#   TIMEOUT=120      loadgen per-request timeout, seconds   MAX_IN_FLIGHT=1024
#   OUT              output dir (default: a new mktemp -d): report.md, and per balancer its
#                    config (.ini), loadgen report (.json), per-request samples (.samples.jsonl,
#                    with the proxy's x-switchyard-route explanation) and /stats (.stats.json); logs/
#   BASE_PORT=29080  ports BASE_PORT..BASE_PORT+5 on 127.0.0.1 (must be free)
#   MAX_SECONDS      watchdog for the whole run after the build (default: estimate + 180)
#
# Every process started here runs in its own process group and is killed on exit (trap).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
export NO_COLOR=1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "scheduling.sh: $*" >&2; exit 1; }
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  report) shift; [ $# -eq 1 ] || die "usage: scheduling.sh report DIR"
          exec python3 "$HERE/scheduling_report.py" "$1" ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

KNOBS=(SWITCHYARD_BIN CARGO_TARGET_DIR BALANCERS DURATION WARMUP LOAD RATE SEED SPEEDS
       TOKENS_PER_SEC PREFILL_PER_SEC TTFT_MS MAX_BATCH MAX_WAITING BATCH_SLOWDOWN
       PREFIX_BLOCK_TOKENS PREFIX_CACHE_BLOCKS CONVERSATIONS TURNS SYSTEM_TOKENS USER_TOKENS
       MAX_TOKENS PROMPT_GROUPS PROXY_THREADS METRICS_INTERVAL TIMEOUT MAX_IN_FLIGHT OUT BASE_PORT
       MAX_SECONDS)
COMMAND=""
for k in "${KNOBS[@]}"; do
  if [ -n "${!k+x}" ]; then COMMAND+="$k=$(printf %q "${!k}") "; fi
done
COMMAND+=$(printf %q "$0")

BALANCERS=${BALANCERS:-round_robin least_conn least_queue response_time gpu prefix_cache consistent_hash}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-15}
LOAD=${LOAD:-0.8}
SEED=${SEED:-1}
SPEEDS=${SPEEDS:-1 1 2 4}
TOKENS_PER_SEC=${TOKENS_PER_SEC:-20}
PREFILL_PER_SEC=${PREFILL_PER_SEC:-2000}
TTFT_MS=${TTFT_MS:-20}
MAX_BATCH=${MAX_BATCH:-8}
MAX_WAITING=${MAX_WAITING:-256}
BATCH_SLOWDOWN=${BATCH_SLOWDOWN:-0.5}
PREFIX_BLOCK_TOKENS=${PREFIX_BLOCK_TOKENS:-16}
PREFIX_CACHE_BLOCKS=${PREFIX_CACHE_BLOCKS:-2048}
CONVERSATIONS=${CONVERSATIONS:-64}
TURNS=${TURNS:-4}
SYSTEM_TOKENS=${SYSTEM_TOKENS:-600}
USER_TOKENS=${USER_TOKENS:-40}
MAX_TOKENS=${MAX_TOKENS:-32}
PROMPT_GROUPS=${PROMPT_GROUPS:-0}
PROXY_THREADS=${PROXY_THREADS:-1}
METRICS_INTERVAL=${METRICS_INTERVAL:-200ms}
TIMEOUT=${TIMEOUT:-120}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-1024}
BASE_PORT=${BASE_PORT:-29080}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
for k in DURATION WARMUP SEED TTFT_MS MAX_BATCH MAX_WAITING PREFIX_BLOCK_TOKENS \
         PREFIX_CACHE_BLOCKS CONVERSATIONS TURNS SYSTEM_TOKENS USER_TOKENS MAX_TOKENS PROMPT_GROUPS \
         PROXY_THREADS TIMEOUT MAX_IN_FLIGHT BASE_PORT; do
  is_uint "${!k}" || die "$k must be a whole number, got '${!k}'"
done
for k in LOAD TOKENS_PER_SEC PREFILL_PER_SEC BATCH_SLOWDOWN; do
  is_num "${!k}" || die "$k must be a number, got '${!k}'"
done
[ -z "${RATE:-}" ] || is_num "$RATE" || die "RATE must be a number, got '$RATE'"
[[ $METRICS_INTERVAL =~ ^[0-9]+(ms|s|m|h)?$ ]] || die "METRICS_INTERVAL must be a duration like 200ms, got '$METRICS_INTERVAL'"
read -ra SPEED <<<"$SPEEDS"
[ ${#SPEED[@]} -ge 1 ] || die "SPEEDS is empty"
for s in "${SPEED[@]}"; do is_num "$s" || die "SPEEDS: '$s' is not a number"; done
read -ra BAL <<<"$BALANCERS"
[ ${#BAL[@]} -ge 1 ] || die "BALANCERS is empty"
for b in "${BAL[@]}"; do
  case $b in
    round_robin | least_conn | least_conn_strict | consistent_hash | response_time | \
      least_queue | gpu | prefix_cache) ;;
    *) die "unknown balancer '$b'" ;;
  esac
done
[ "$DURATION" -ge 1 ] || die "DURATION must be >= 1"
if [ "$BASE_PORT" -lt 1024 ] || [ "$BASE_PORT" -gt 65500 ]; then die "BASE_PORT must be in 1024..65500"; fi
for c in python3 curl setsid; do command -v "$c" >/dev/null 2>&1 || die "needs $c"; done

# ---------------------------------------------------------------------------------------------
# Capacity and rate (the arithmetic is explained in bench/README.md).
#
# Prompt tokens as the mock engine counts them (whitespace-separated words, one
# `role: content` line per message): the system message is 1 + 7 + SYSTEM_TOKENS words
# ("system:", "You are the assistant of conversation N."), a user message 1 + 5 + USER_TOKENS
# ("user:", "Question K of conversation N:"), an assistant reply 1 + MAX_TOKENS. Turn k sends
# the system message, k user messages and k - 1 replies. Capacity assumes no prefix-cache hit
# (every prompt token prefilled) and full batches: one request holds a slot for
#   S = TTFT_MS/1000 + prompt/(PREFILL_PER_SEC x speed)
#       + MAX_TOKENS/(TOKENS_PER_SEC x speed) x (1 + BATCH_SLOWDOWN x (MAX_BATCH-1)/MAX_BATCH)
# and an engine completes MAX_BATCH / S requests per second.
CAPACITY_JSON=$(python3 - "$TURNS" "$SYSTEM_TOKENS" "$USER_TOKENS" "$MAX_TOKENS" "$TTFT_MS" \
  "$PREFILL_PER_SEC" "$TOKENS_PER_SEC" "$BATCH_SLOWDOWN" "$MAX_BATCH" "${SPEED[@]}" <<'EOF'
import json, sys
turns, sys_t, user_t, max_t, ttft_ms = map(int, sys.argv[1:6])
prefill, tps, slowdown = map(float, sys.argv[6:9])
batch = int(sys.argv[9])
speeds = [float(s) for s in sys.argv[10:]]
prompts = [(1 + 7 + sys_t) + k * (1 + 5 + user_t) + (k - 1) * (1 + max_t) for k in range(1, turns + 1)]
mean_prompt = sum(prompts) / len(prompts)
full = 1 + slowdown * (batch - 1) / batch
engines = []
for s in speeds:
    service = ttft_ms / 1000 + mean_prompt / (prefill * s) + max_t / (tps * s) * full
    engines.append({"speed": s, "service_s": service, "capacity_rps": batch / service})
print(json.dumps({"prompt_tokens_by_turn": prompts, "mean_prompt_tokens": mean_prompt,
                  "engines": engines,
                  "capacity_rps": sum(e["capacity_rps"] for e in engines)}))
EOF
) || die "capacity computation failed"
CAPACITY=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["capacity_rps"])' "$CAPACITY_JSON")
if [ -n "${RATE:-}" ]; then
  LOAD_RATE=$RATE
else
  LOAD_RATE=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) * float(sys.argv[2])))' "$CAPACITY" "$LOAD")
fi

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
"$BIN" loadgen --help >/dev/null 2>&1 || die "$BIN has no loadgen subcommand"

# ---------------------------------------------------------------------------------------------
# Ports: proxy, admin, then one per engine.
PROXY_PORT=$BASE_PORT
ADMIN_PORT=$((BASE_PORT + 1))
ENGINE_PORTS=()
for i in "${!SPEED[@]}"; do ENGINE_PORTS+=($((BASE_PORT + 2 + i))); done
busy=$(python3 - "$PROXY_PORT" "$ADMIN_PORT" "${ENGINE_PORTS[@]}" <<'EOF'
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
# Output dir, cleanup
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" || die "cannot create OUT=$OUT"
else
  OUT=$(mktemp -d -t switchyard-sched.XXXXXX) || die "mktemp failed"
fi
OUT=$(cd "$OUT" && pwd)
mkdir -p "$OUT/logs" || die "cannot create $OUT/logs"

declare -a GROUPS_STARTED=()   # process-group ids (== pid of the leader) of everything started
WATCHDOG_PID=""

kill_group() { # kill_group PGID: TERM, wait up to 3 s, then KILL
  local pg=$1 i
  kill -TERM -- "-$pg" 2>/dev/null || return 0
  for i in $(seq 30); do
    kill -0 -- "-$pg" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pg" 2>/dev/null
  return 0
}

stop_all() {
  local pg
  for pg in "${GROUPS_STARTED[@]}"; do kill -TERM -- "-$pg" 2>/dev/null; done
  for pg in "${GROUPS_STARTED[@]}"; do kill_group "$pg"; wait "$pg" 2>/dev/null; done
  GROUPS_STARTED=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$WATCHDOG_PID" ] && kill -KILL -- "-$WATCHDOG_PID" 2>/dev/null
  stop_all
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# start LOGNAME CMD...: run CMD in a new session (its own process group), output to a log.
start() {
  local name=$1
  shift
  setsid "$@" >>"$OUT/logs/$name.log" 2>&1 </dev/null &
  GROUPS_STARTED+=("$!")
}

wait_http() { # wait_http URL: up to 10 s for a 200
  local i
  for i in $(seq 100); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# Time budget and watchdog: per balancer, engines and proxy start, warm-up, the window, and
# the drain of whatever is still queued (up to TIMEOUT; usually seconds).
ESTIMATE=$(((WARMUP + DURATION + 15) * ${#BAL[@]} + 10))
MAX_SECONDS=${MAX_SECONDS:-$((ESTIMATE + 180))}
is_uint "$MAX_SECONDS" || die "MAX_SECONDS must be a whole number"
# shellcheck disable=SC2016  # expanded by the inner bash
setsid bash -c 'sleep "$1"; echo "scheduling.sh: watchdog: MAX_SECONDS=$1 reached, stopping" >&2; kill -TERM "$2"' \
  watchdog "$MAX_SECONDS" "$$" </dev/null &
WATCHDOG_PID=$!
disown "$WATCHDOG_PID"

start_engines() {
  local i
  for i in "${!SPEED[@]}"; do
    local s=${SPEED[$i]} port=${ENGINE_PORTS[$i]}
    local tps prefill
    tps=$(python3 -c 'import sys; print(float(sys.argv[1]) * float(sys.argv[2]))' "$TOKENS_PER_SEC" "$s")
    prefill=$(python3 -c 'import sys; print(float(sys.argv[1]) * float(sys.argv[2]))' "$PREFILL_PER_SEC" "$s")
    start "engine-$((i + 1))" "$BIN" mock-engine --listen "127.0.0.1:$port" --name "engine-$((i + 1))-${s}x" \
      --tokens-per-sec "$tps" --prefill-tokens-per-sec "$prefill" --ttft-ms "$TTFT_MS" \
      --max-concurrent "$MAX_BATCH" --max-waiting "$MAX_WAITING" --batch-slowdown "$BATCH_SLOWDOWN" \
      --prefix-block-tokens "$PREFIX_BLOCK_TOKENS" --prefix-cache-blocks "$PREFIX_CACHE_BLOCKS"
  done
  for port in "${ENGINE_PORTS[@]}"; do
    wait_http "http://127.0.0.1:$port/health" || die "engine on port $port did not start (see $OUT/logs)"
  done
}

write_config() { # write_config BALANCER FILE
  {
    cat <<EOF
; generated by bench/scheduling.sh
[server]
listen = 127.0.0.1:$PROXY_PORT
admin_listen = 127.0.0.1:$ADMIN_PORT
threads = $PROXY_THREADS
metrics_interval = $METRICS_INTERVAL
metrics_max_age = 2s
upstream_response_timeout = 5m
drain_timeout = 1s
EOF
    local i names=()
    for i in "${!SPEED[@]}"; do
      names+=("engine-$((i + 1))")
      cat <<EOF

[backend engine-$((i + 1))]
address = 127.0.0.1:${ENGINE_PORTS[$i]}
metrics = /metrics
EOF
    done
    local IFS=,
    cat <<EOF

[route chat]
path_prefix = /
backends = ${names[*]}
balancer = $1
explain = true
EOF
    [ "$1" = consistent_hash ] && echo "hash_key = header:x-conversation-id"
  } >"$2"
}

{
  echo "# Scheduling benchmark"
  echo
  echo "- command: \`$COMMAND\`"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- host: $(uname -sr), $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs, load average at start $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
  echo "- switchyard: $SY_VERSION (\`$BIN\`)"
} >"$OUT/header.md"
python3 - "$OUT/settings.json" "$CAPACITY_JSON" "$COMMAND" <<EOF || die "cannot write settings.json"
import json, sys
cap = json.loads(sys.argv[2])
settings = {
  "command": sys.argv[3], "balancers": "$BALANCERS".split(), "duration_s": $DURATION,
  "warmup_s": $WARMUP, "load": $LOAD, "rate": float("$LOAD_RATE"), "seed": $SEED,
  "speeds": "$SPEEDS".split(), "tokens_per_sec": $TOKENS_PER_SEC,
  "prefill_per_sec": $PREFILL_PER_SEC, "ttft_ms": $TTFT_MS, "max_batch": $MAX_BATCH,
  "max_waiting": $MAX_WAITING, "batch_slowdown": $BATCH_SLOWDOWN,
  "prefix_block_tokens": $PREFIX_BLOCK_TOKENS, "prefix_cache_blocks": $PREFIX_CACHE_BLOCKS,
  "conversations": $CONVERSATIONS, "turns": $TURNS, "system_tokens": $SYSTEM_TOKENS,
  "user_tokens": $USER_TOKENS, "max_tokens": $MAX_TOKENS, "groups": $PROMPT_GROUPS,
  "proxy_threads": $PROXY_THREADS, "metrics_interval": "$METRICS_INTERVAL",
  "capacity": cap,
}
json.dump(settings, open(sys.argv[1], "w"), indent=1)
EOF

log "capacity $CAPACITY req/s (no prefix hits, full batches); offered load $LOAD_RATE req/s"
log "output in $OUT"
METRICS_ARGS=()
for port in "${ENGINE_PORTS[@]}"; do METRICS_ARGS+=(--engine-metrics "http://127.0.0.1:$port/metrics"); done

for b in "${BAL[@]}"; do
  log "[$b] starting ${#SPEED[@]} engines (cold caches) and switchyard"
  start_engines
  write_config "$b" "$OUT/$b.ini"
  "$BIN" check "$OUT/$b.ini" >/dev/null || die "generated config $OUT/$b.ini is invalid"
  start "switchyard-$b" "$BIN" run --config "$OUT/$b.ini"
  wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" || die "switchyard did not start (see $OUT/logs)"
  sleep 0.5   # a first scrape of every engine
  log "[$b] load: $LOAD_RATE req/s for ${WARMUP}s + ${DURATION}s"
  # In the background (its own process group), so a signal reaches the trap at once rather
  # than after the load.
  setsid "$BIN" loadgen --target "http://127.0.0.1:$PROXY_PORT" --rate "$LOAD_RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --seed "$SEED" \
    --conversations "$CONVERSATIONS" --turns "$TURNS" --groups "$PROMPT_GROUPS" \
    --system-prompt-tokens "$SYSTEM_TOKENS" --user-tokens "$USER_TOKENS" \
    --max-tokens "$MAX_TOKENS" --timeout "$TIMEOUT" --max-in-flight "$MAX_IN_FLIGHT" \
    "${METRICS_ARGS[@]}" --samples "$OUT/$b.samples.jsonl" --json \
    >"$OUT/$b.json" 2>>"$OUT/logs/loadgen-$b.log" </dev/null &
  GROUPS_STARTED+=("$!")
  wait "$!" || die "loadgen failed for $b (see $OUT/logs/loadgen-$b.log)"
  curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN_PORT/stats" >"$OUT/$b.stats.json" 2>/dev/null
  python3 "$HERE/scheduling_report.py" --row "$OUT" "$b" >&2
  stop_all
done

python3 "$HERE/scheduling_report.py" "$OUT" | tee "$OUT/report.md"
