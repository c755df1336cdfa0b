#!/usr/bin/env python3
"""Render bench/run.sh results (JSON lines) as a Markdown report.

    python3 bench/report.py OUT/results.jsonl [MORE.jsonl ...] > report.md
    python3 bench/report.py --line < one-run.json      # one-line summary of one run

Record kinds (field "kind"): "meta" (command, date, versions, settings), "run" (one measured
wrk run of one system under one workload) and "idle" (switchyard's memory with idle client
connections). Several files may be given: their runs are pooled (mean req/s with its spread,
median latencies), which is how repeated invocations are compared.
"""

import json
import statistics
import sys

SYSTEM_ORDER = ["direct", "switchyard", "nginx", "haproxy"]
SYSTEM_LABEL = {"direct": "direct (no proxy)", "switchyard": "switchyard", "nginx": "nginx",
                "haproxy": "HAProxy"}
WORKLOAD_TITLE = {
    "ka": "ka: HTTP/1.1 keep-alive, {c} connections (wrk -t1 -c{c})",
    "conns": "conns: {c} concurrent connections (wrk -t1 -c{c})",
}
ERROR_KINDS = [("err_connect", "connect"), ("err_read", "read"), ("err_write", "write"),
               ("err_timeout", "timeout"), ("err_status", "status>=400")]


def load(paths):
    records = []
    for path in paths:
        with (sys.stdin if path == "-" else open(path)) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    print(f"report.py: {path}:{n}: skipped, not JSON ({exc})", file=sys.stderr)
    return records


def fmt_us(us):
    if us is None:
        return "–"
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1_000_000:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1e6:.2f} s"


def fmt_int(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt_pct(x):
    return "–" if x is None else f"{x:.0f}%"


def fmt_ratio(x, ref):
    if x is None or not ref:
        return "–"
    return f"{x / ref:.2f}×"


def error_total(wrk):
    return sum(int(wrk.get(k, 0)) for k, _ in ERROR_KINDS)


def fmt_errors(wrks):
    totals = {k: sum(int(w.get(k, 0)) for w in wrks) for k, _ in ERROR_KINDS}
    total = sum(totals.values())
    if total == 0:
        return "0"
    parts = [f"{label} {totals[k]:,}" for k, label in ERROR_KINDS if totals[k]]
    return f"{total:,} ({', '.join(parts)})"


def one_line(rec):
    head = f"[{rec.get('workload')} r{rec.get('round')}] {rec.get('system'):<10}"
    if not rec.get("ok"):
        return f"{head} FAILED: {rec.get('error')}"
    w = rec["wrk"]
    cpu = rec.get("proxy_cpu_pct")
    cpu_s = fmt_pct(cpu)
    warn = "" if rec.get("proxy_alive_after", True) else "  (PROXY DIED during the run)"
    return (f"{head} {w['rps']:>10,.0f} req/s  p50 {fmt_us(w['p50_us']):>9}  "
            f"p99 {fmt_us(w['p99_us']):>9}  errors {fmt_errors([w])}  "
            f"upstream conns {fmt_int(rec.get('upstream_conns'))}  proxy CPU {cpu_s}  cores busy "
            f"{fmt_pct(rec.get('proxy_core_busy_pct'))}/{fmt_pct(rec.get('load_core_busy_pct'))}{warn}")


def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def system_key(name):
    return (SYSTEM_ORDER.index(name) if name in SYSTEM_ORDER else len(SYSTEM_ORDER), name)


def workload_table(name, runs):
    conns = runs[0].get("connections")
    title = WORKLOAD_TITLE.get(name, name + ": {c} connections").format(c=conns)
    by_sys = {}
    for r in runs:
        by_sys.setdefault(r["system"], []).append(r)
    agg = {}
    for sysname, rs in by_sys.items():
        good = [r for r in rs if r.get("ok")]
        wrks = [r["wrk"] for r in good]
        rps = [w["rps"] for w in wrks]
        agg[sysname] = {
            "n": len(rs), "good": len(good), "failed": [r.get("error") for r in rs if not r.get("ok")],
            "rps": mean(rps), "rps_min": min(rps) if rps else None, "rps_max": max(rps) if rps else None,
            "p50": median([w["p50_us"] for w in wrks]), "p99": median([w["p99_us"] for w in wrks]),
            "wrks": wrks,
            "upstream": mean([r.get("upstream_conns") for r in good]),
            "cpu": mean([r.get("proxy_cpu_pct") for r in good]),
            "pbusy": mean([r.get("proxy_core_busy_pct") for r in good]),
            "lbusy": mean([r.get("load_core_busy_pct") for r in good]),
            "died": any(not r.get("proxy_alive_after", True) for r in rs),
        }
    ref = {k: agg[k]["rps"] if k in agg else None for k in ("nginx", "haproxy", "direct")}
    rounds = max(a["n"] for a in agg.values())
    out = [f"### {title}", ""]
    out.append(f"{rounds} measured run(s) per system of {runs[0].get('duration_s')} s each"
               + (" (req/s: mean and ± half the min–max spread; latencies: median)" if rounds > 1 else "")
               + ".")
    out.append("")
    out.append("| system | req/s | vs nginx | vs HAProxy | vs direct | p50 | p99 | errors "
               "| upstream conns opened | proxy CPU | req/s per proxy core | cores busy (proxy / load) |")
    out.append("|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|")
    for sysname in sorted(agg, key=system_key):
        a = agg[sysname]
        label = SYSTEM_LABEL.get(sysname, sysname)
        if a["good"] == 0:
            out.append(f"| {label} | FAILED: {'; '.join(str(e) for e in a['failed'])} "
                       "| | | | | | | | | | |")
            continue
        rps = fmt_int(a["rps"])
        if a["good"] > 1 and a["rps"]:
            rps += f" ±{(a['rps_max'] - a['rps_min']) / 2 / a['rps'] * 100:.1f}%"
        if a["failed"]:
            rps += f" ({len(a['failed'])} run(s) failed)"
        if a["died"]:
            label += " (DIED)"
        cpu = "–" if a["cpu"] is None else f"{a['cpu']:.0f}%"
        per_core = "–" if not a["cpu"] else fmt_int(a["rps"] / (a["cpu"] / 100))
        out.append(f"| {label} | {rps} | {fmt_ratio(a['rps'], ref['nginx'])} "
                   f"| {fmt_ratio(a['rps'], ref['haproxy'])} | {fmt_ratio(a['rps'], ref['direct'])} "
                   f"| {fmt_us(a['p50'])} | {fmt_us(a['p99'])} | {fmt_errors(a['wrks'])} "
                   f"| {fmt_int(a['upstream'])} | {cpu} | {per_core} "
                   f"| {fmt_pct(a['pbusy'])} / {fmt_pct(a['lbusy'])} |")
    out.append("")
    return out


def idle_section(idles):
    out = ["### switchyard memory with idle client connections", ""]
    out.append("| idle conns requested | opened (200 OK) | still open after hold | VmRSS before "
               "| VmRSS with conns | delta | per connection | open fds before → with |")
    out.append("|--:|--:|--:|--:|--:|--:|--:|--:|")
    notes = []
    for rec in idles:
        if not rec.get("ok"):
            out.append(f"| {fmt_int(rec.get('requested'))} | FAILED: {rec.get('error')} | | | | | | |")
            continue
        c = rec.get("client", {})
        before, with_ = rec["rss_before_kib"], rec["rss_with_kib"]
        opened = c.get("opened", 0)
        delta = with_ - before
        per = f"{delta / opened:.2f} KiB" if opened else "–"
        ok200 = opened - c.get("non_200", 0)
        out.append(f"| {fmt_int(rec.get('requested'))} | {fmt_int(opened)} ({fmt_int(ok200)}) "
                   f"| {fmt_int(c.get('still_open'))} | {before / 1024:.1f} MiB | {with_ / 1024:.1f} MiB "
                   f"| {delta / 1024:.1f} MiB | {per} | {rec.get('fds_before')} → {rec.get('fds_with')} |")
        if c.get("errors"):
            notes.append(f"client errors while opening: {c['errors']}")
        if not rec.get("alive_after", True):
            notes.append("switchyard was NOT running at the end of the idle step")
    out.append("")
    out += [f"- {n}" for n in notes]
    if notes:
        out.append("")
    return out


def render(records):
    metas = [r for r in records if r.get("kind") == "meta"]
    runs = [r for r in records if r.get("kind") == "run"]
    idles = [r for r in records if r.get("kind") == "idle"]
    out = ["# switchyard benchmark", ""]
    for m in metas:
        out.append(f"- command: `{m.get('command')}`")
        out.append(f"- date: {m.get('date')}")
        out.append(f"- host: {m.get('host')}")
        out.append(f"- versions: {m.get('switchyard_version')} (`{m.get('switchyard_bin')}`); "
                   f"{m.get('nginx_version')}; {m.get('haproxy_version')}; {m.get('wrk_version')}")
        out.append(f"- settings: {m.get('settings')}")
        out.append("")
    workloads = []
    for r in runs:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    for w in workloads:
        out += workload_table(w, [r for r in runs if r["workload"] == w])
    if idles:
        out += idle_section(idles)
    out += [
        "Columns: req/s over the measured run; ratios are req/s divided by the reference's req/s "
        "in the same workload; p50/p99 from wrk's latency histogram; errors are wrk's connect/read/"
        "write/timeout errors and responses with status >= 400; upstream conns opened is the "
        "backend's accepted-connections delta over the measured run (for direct: the load "
        "generator's own connections, wrk opens one more than -c); proxy CPU is utime+stime of the proxy's processes over the "
        "run (100% = the one core it is pinned to); req/s per proxy core = req/s / proxy CPU; cores "
        "busy is how busy the proxy's core and the backend+wrk core were over the run, counting "
        "every process on the machine: proxy core busy well above proxy CPU means other work "
        "shared the proxy's core (noisy run).",
        "",
    ]
    return "\n".join(out)


def main(argv):
    if len(argv) > 1 and argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(argv) > 1 and argv[1] == "--line":
        for rec in load(argv[2:] or ["-"]):
            if rec.get("kind") == "run":
                print(one_line(rec))
        return 0
    records = load(argv[1:] or ["-"])
    if not records:
        print("report.py: no records", file=sys.stderr)
        return 1
    print(render(records))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
