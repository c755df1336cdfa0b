#!/usr/bin/env python3
"""The report of bench/scheduling.sh: one Markdown table row per balancer from the loadgen
JSON reports in an output directory, the capacity arithmetic, and the benchmark's bars.

Usage:
  scheduling_report.py DIR            the whole report (DIR holds settings.json, header.md and
                                      one BALANCER.json per balancer)
  scheduling_report.py --row DIR B    one progress line for balancer B
"""

import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def pct(v):
    return "–" if v is None else f"{100 * v:.1f}%"


def ms(v):
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def errors(r):
    parts = [f"{k} {v}" for k, v in sorted(r.get("errors", {}).items())]
    return ", ".join(parts) if parts else "0"


def shares(r):
    """Each engine's share of the requests it finished in the window, in engine order."""
    reqs = [e.get("requests") for e in r["prefix_cache"]["engines"]]
    if any(n is None for n in reqs) or not sum(reqs):
        return "–"
    total = sum(reqs)
    return " / ".join(f"{100 * n / total:.0f}" for n in reqs)


def waits(r):
    w = r.get("turn_wait_ms") or {}
    if not w.get("count"):
        return "0"
    return f"{w['count']} ({ms(w['p50'])})"


def row_line(name, r):
    q = r["requests"]
    return (
        f"{name:<16} TTFT p50 {ms(r['ttft_ms']['p50']):>8} p99 {ms(r['ttft_ms']['p99']):>8}  "
        f"latency p99 {ms(r['latency_ms']['p99']):>8}  {r['achieved_rps']:.2f} req/s  "
        f"hit rate {pct(r['prefix_cache']['hit_rate'])}  ok {q['ok']}/{q['scheduled']}  "
        f"errors {errors(r)}  dropped {q['dropped']}  turns late {waits(r)}  "
        f"engine shares % {shares(r)}"
    )


def table(results):
    out = [
        "| balancer | TTFT p50 | TTFT p99 | latency p99 | req/s | output tokens/s | prefix-cache hit rate | ok / sent | errors | dropped | turns sent late (p50 wait) | requests per engine (%) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|---|",
    ]
    for name, r in results:
        q = r["requests"]
        out.append(
            f"| {name} | {ms(r['ttft_ms']['p50'])} | {ms(r['ttft_ms']['p99'])} | "
            f"{ms(r['latency_ms']['p99'])} | {r['achieved_rps']:.2f} | "
            f"{r['output_tokens_per_s']:.0f} | {pct(r['prefix_cache']['hit_rate'])} | "
            f"{q['ok']} / {q['sent']} | {errors(r)} | {q['dropped']} | {waits(r)} | {shares(r)} |"
        )
    return "\n".join(out)


def bars(by_name):
    """The benchmark's bars, each as (text, met or None when a balancer is missing)."""
    rr, lq, pc = (by_name.get(n) for n in ("round_robin", "least_queue", "prefix_cache"))
    out = []
    if rr and lq:
        a, b = lq["ttft_ms"]["p99"], rr["ttft_ms"]["p99"]
        text = f"`least_queue` p99 TTFT {ms(a)} <= 1/2 x `round_robin`'s {ms(b)}"
        if b:
            text += f" (ratio {a / b:.2f})"
        out.append((text, b > 0 and a <= b / 2))
    else:
        out.append(("`least_queue` vs `round_robin` p99 TTFT: not both run", None))
    if rr and pc:
        h_pc, h_rr = pc["prefix_cache"]["hit_rate"], rr["prefix_cache"]["hit_rate"]
        if h_pc is None or h_rr is None:
            out.append(("`prefix_cache` vs `round_robin` hit rate: no engine figures", None))
        else:
            ratio = h_pc / h_rr if h_rr else float("inf")
            out.append(
                (f"`prefix_cache` hit rate {pct(h_pc)} >= 2 x `round_robin`'s {pct(h_rr)} "
                 f"(ratio {ratio:.2f})", ratio >= 2)
            )
    else:
        out.append(("`prefix_cache` vs `round_robin` hit rate: not both run", None))
    if pc and lq:
        a, b = pc["ttft_ms"]["p99"], lq["ttft_ms"]["p99"]
        out.append(
            (f"`prefix_cache` p99 TTFT {ms(a)} <= `least_queue`'s {ms(b)}", a <= b)
        )
    else:
        out.append(("`prefix_cache` vs `least_queue` p99 TTFT: not both run", None))
    return out


def settings_text(s):
    cap = s["capacity"]
    lines = [
        f"- engines: speeds {' / '.join(s['speeds'])} x (decode {s['tokens_per_sec']:g} tokens/s "
        f"per request alone, prefill {s['prefill_per_sec']:g} uncached prompt tokens/s), "
        f"fixed TTFT {s['ttft_ms']} ms, {s['max_batch']} running slots and a queue of "
        f"{s['max_waiting']} each, batch slowdown {s['batch_slowdown']:g}, prefix cache "
        f"{s['prefix_cache_blocks']} blocks of {s['prefix_block_tokens']} tokens",
        f"- workload: {s['conversations']} conversations side by side, {s['turns']} turns each, "
        f"system prompt {s['system_tokens']} words "
        + ("per conversation" if not s["groups"] else f"shared by groups ({s['groups']})")
        + f", user messages {s['user_tokens']} words, replies {s['max_tokens']} tokens; "
        f"prompt tokens by turn {cap['prompt_tokens_by_turn']} (mean {cap['mean_prompt_tokens']:.1f})",
        "- capacity (no prefix-cache hit, full batches): "
        + ", ".join(
            f"{e['speed']:g}x {e['capacity_rps']:.2f} req/s (slot held {e['service_s']:.3f} s)"
            for e in cap["engines"]
        )
        + f"; total {cap['capacity_rps']:.2f} req/s",
        f"- offered load: {s['rate']:g} req/s (Poisson, seed {s['seed']}), "
        + (f"{s['load']:g} x capacity" if "RATE=" not in s["command"] else "RATE set")
        + f"; {s['warmup_s']} s warm-up, then {s['duration_s']} s measured per balancer; "
        f"engines restarted (cold caches) for each balancer",
        f"- switchyard: `threads = {s['proxy_threads']}`, `metrics_interval = "
        f"{s['metrics_interval']}`, every backend `weight = 1` and `metrics = /metrics`",
    ]
    return "\n".join(lines)


def main(argv):
    if len(argv) == 4 and argv[1] == "--row":
        r = load(os.path.join(argv[2], argv[3] + ".json"))
        print(row_line(argv[3], r))
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = argv[1]
    s = load(os.path.join(d, "settings.json"))
    results = []
    for b in s["balancers"]:
        path = os.path.join(d, b + ".json")
        if os.path.exists(path):
            results.append((b, load(path)))
    by_name = dict(results)
    with open(os.path.join(d, "header.md")) as f:
        print(f.read().rstrip())
    print(settings_text(s))
    print()
    print(table(results))
    print()
    print("Bars:")
    for text, met in bars(by_name):
        mark = {True: "met", False: "NOT met", None: "n/a"}[met]
        print(f"- {text}: **{mark}**")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
