# bench/common.sh - shared by the bench/*.sh scripts other than run.sh (sourced, not run). Defines
# die/log, installs missing tools, finds or builds switchyard, and starts pinned processes in
# their own process groups, all killed on exit, in a temp dir $T removed on exit.
#
# Before sourcing, set NAME (for messages) and TOOLS: "command:package" pairs.

die() { echo "$NAME: $*" >&2; exit 1; }
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

missing=()
for pair in $TOOLS; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
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

# avg NAME: the mean of the values added with add_sample NAME VALUE.
declare -A total count
add_sample() {
  total[$1]=$(awk -v a="${total[$1]:-0}" -v b="$2" 'BEGIN { print a + b }')
  count[$1]=$(( ${count[$1]:-0} + 1 ))
}
avg() { awk -v t="${total[$1]}" -v n="${count[$1]}" 'BEGIN { printf "%.0f", t / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# wrk_run LABEL URL [WRK ARGS...]: one keep-alive wrk run (one thread, CONNS connections,
# DURATION seconds) on LOAD_CPU; sets RPS and P99, and stops the script on non-2xx answers.
wrk_run() {
  local label=$1 url=$2 out
  shift 2
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" 2>&1)
  RPS=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  P99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  [ -n "$RPS" ] || die "wrk said nothing usable for $label: $out"
  if grep -q "Non-2xx" <<<"$out"; then die "$label: non-2xx responses: $out"; fi
}

# median_row SAMPLES NAME P99 [BASE]: a table row for NAME from SAMPLES (lines "ROUND NAME
# REQ/S", or any other figure): the median figure, the median of the per-round ratios to BASE (default `off`) and
# the range of the middle half of those ratios (first to third quartile: how much the rounds
# agree).
median_row() {
  python3 - "$@" <<'PY'
import statistics, sys
path, name, p99 = sys.argv[1:4]
base = sys.argv[4] if len(sys.argv) > 4 else "off"
rounds = {}
for line in open(path):
    r, c, rps = line.split()
    rounds.setdefault(r, {})[c] = float(rps)
rps = statistics.median(v[name] for v in rounds.values())
ratios = sorted(v[name] / v[base] for v in rounds.values())
ratio = statistics.median(ratios)
q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
value = f"{rps:.0f}" if rps >= 100 else f"{rps:.2f}"
print(f"| {name} | {value} | {ratio:.2f}x | {q[0]:.2f}-{q[2]:.2f} | {p99} |")
PY
}

# nginx_backend LISTEN...: writes $T/nginx.conf for one nginx worker answering every request
# with 200 and a 128-byte body (or NGINX_BODY, with `"` escaped) on each `listen` argument
# (e.g. "127.0.0.1:8000", "127.0.0.1:8001 http2").
nginx_backend() {
  local body listens=""
  body=${NGINX_BODY:-$(printf 'x%.0s' $(seq 1 128))}
  for l in "$@"; do listens+="    listen $l;"$'\n'; done
  cat >"$T/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $T/nginx.pid;
error_log $T/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
$listens    location / { return 200 "$body"; }
  }
}
NGINX
}
