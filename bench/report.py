"""Turn ``bench/results/*.json`` into the results table and the ratio chart.

    .venv/bin/python bench/report.py [--quick]

Writes ``bench/results/TABLE.md`` and ``bench/results/ratios.png``; without ``--quick`` it also
replaces the part of ``docs/benchmarks.md`` between ``<!-- results:start -->`` and
``<!-- results:end -->`` and writes the chart to ``docs/benchmarks-ratios.png``. Every ratio is
solo-os's figure divided by the alternative's, so above 1 means solo-os is faster.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import _common as c

DOC = c.ROOT / "docs" / "benchmarks.md"
CHART_DOC = c.ROOT / "docs" / "benchmarks-ratios.png"
START, END = "<!-- results:start -->", "<!-- results:end -->"



def _worker_setting(x: dict) -> str:
    """``--processes``/``--concurrency`` of one drain run, as the table names it."""
    procs = x.get("processes", "1")
    conc = f"--concurrency {x['concurrency']}"
    return conc if procs == "1" else f"--processes {procs} {conc}"


def load(name: str) -> dict[str, Any]:
    path = c.RESULTS / f"{name}.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def load_range(*runs: dict[str, Any]) -> str:
    values = [r.get("loadavg_before", [None])[0] for r in runs if r] + \
             [r.get("loadavg_after", [None])[0] for r in runs if r]
    values = [v for v in values if v is not None]
    return f"{min(values):.1f}-{max(values):.1f}" if values else "—"


def build() -> tuple[str, list[tuple[str, float, float | None]]]:
    pgb, ing, dr, alt, e2e, hist = (load(n) for n in
                                    ("pgbench", "ingest", "drain", "alternatives", "e2e", "history"))
    rows: list[str] = []
    bars: list[tuple[str, float, float | None]] = []  # label, ratio, target
    head = ("| workload | db | solo-os | compared with | its figure | solo-os ÷ it | target | "
            "load avg (1 min) |\n|---|---|---|---|---|---|---|---|")

    # ingest
    for kind in ("postgres", "sqlite"):
        s = ing.get(kind)
        if not s:
            continue
        lat = s["latency_ms"]
        check = "✔" if s["check_stored_equals_distinct"] else "✘"
        solo = (f"**{fmt(s['deliveries_per_s'])}/s** (p50 {fmt(lat['p50'], 1)} ms, "
                f"p99 {fmt(lat['p99'], 1)} ms; stored {s['stored_events']:,} = distinct "
                f"{s['distinct_keys_2xx']:,} {check})")
        seed = alt.get(f"seed-{kind}")
        if seed:
            r = ratio(s["deliveries_per_s"], seed["deliveries_per_s"])
            errors = sum(v for k, v in seed["status"].items() if k != "200")
            their = (f"{fmt(seed['deliveries_per_s'])}/s (p99 {fmt(seed['latency_ms']['p99'], 1)} ms; "
                     f"{errors:,} non-200 answers)")
            rows.append(f"| ingest, 10% dup | {kind} | {solo} | seed port (FastAPI + SQLAlchemy) | "
                        f"{their} | **{fmt(r, 2)}x** | — | {load_range(s, seed)} |")
            if r:
                bars.append((f"ingest vs seed port ({kind})", r, None))
        else:
            rows.append(f"| ingest, 10% dup | {kind} | {solo} | — | — | — | — | {load_range(s)} |")
        if kind == "postgres" and pgb.get("postgres"):
            tps = pgb["postgres"]["tps"]
            r = ratio(s["deliveries_per_s"], tps)
            rows.append(f"| ingest vs raw limit | postgres | {fmt(s['deliveries_per_s'])}/s | pgbench, 1-row "
                        f"INSERT … ON CONFLICT, 8 clients | {fmt(tps)} tps | **{fmt(r, 2)}x** | ≥ 1x | "
                        f"{load_range(s, pgb['postgres'])} |")
            if r:
                bars.append(("ingest vs pgbench raw limit", r, 1.0))

    # drain
    targets = {"pgqueuer": 2.0, "procrastinate": 20.0, "celery": None}
    for kind in ("postgres", "sqlite"):
        s = dr.get(kind)
        if not s:
            continue
        settings = ", ".join(f"{_worker_setting(x)}: {fmt(x['per_s'])}/s" for x in s.get("all_settings", []))
        solo = f"**{fmt(s['per_s'])}/s** (worker {settings})"
        if kind == "sqlite":
            rows.append(f"| drain 50k no-op | sqlite | {solo} | — | — | — | — | "
                        f"{load_range(s)} |")
            continue
        for name in ("pgqueuer", "procrastinate", "celery"):
            a = alt.get(name)
            if not a:
                continue
            r = ratio(s["per_s"], a["per_s"])
            tried = "; ".join(f"{' '.join(x['worker_args'])}: {fmt(x['per_s'])}/s" for x in a["all_settings"])
            label = {"pgqueuer": "pgqueuer", "procrastinate": "procrastinate",
                     "celery": "Celery + Redis"}[name]
            target = targets[name]
            rows.append(f"| drain 50k no-op | postgres | {solo} | {label} (best of: {tried}) | "
                        f"{fmt(a['per_s'])}/s | **{fmt(r, 2)}x** | {f'≥ {target:g}x' if target else '—'} | "
                        f"{load_range(s, a)} |")
            if r:
                bars.append((f"drain vs {label}", r, target))
            if name in ("pgqueuer", "procrastinate") and a.get("all_settings"):
                default = a["all_settings"][0]  # the first setting tried is the default
                rd = ratio(s["per_s"], default["per_s"])
                if rd:
                    bars.append((f"drain vs {label} (its default: {' '.join(default['worker_args'])})",
                                 rd, target))

    # end to end
    for key, r in sorted(e2e.items()):
        if not isinstance(r, dict) or "receive_to_start_ms" not in r:
            continue
        kind, mode = key.split("-", 1)
        lat = r["receive_to_start_ms"]
        shape = "serve + worker processes" if mode == "split" else "`solo-os run` (one process)"
        ok = "✔" if r["check_every_delivery_started"] else "✘"
        rows.append(f"| end to end, {fmt(r['target_rate_per_s'])}/s for {fmt(r['duration_s'])} s, "
                    f"{shape} | {kind} | receive→handler start **p50 {fmt(lat['p50'], 1)} ms, "
                    f"p99 {fmt(lat['p99'], 1)} ms** "
                    f"(max {fmt(lat['max'], 0)} ms; {r['handler_starts']:,} starts {ok}) | — | — | — | "
                    f"p99 < 25 ms | {load_range(r)} |")

    # history
    for kind in ("postgres", "sqlite"):
        h = hist.get(kind)
        if not h:
            continue
        e, f = h["empty"], h["history"]
        rows.append(
            f"| ingest with {f['rows']:,} finished executions stored | {kind} | "
            f"{fmt(f['ingest']['deliveries_per_s'])}/s | same, empty tables | "
            f"{fmt(e['ingest']['deliveries_per_s'])}/s | **{fmt(h['ingest_ratio'], 2)}x** | ≥ 0.9x | "
            f"{load_range(e['ingest'], f['ingest'])} |")
        rows.append(
            f"| drain with {f['rows']:,} finished executions stored | {kind} | "
            f"{fmt(f['drain']['per_s'])}/s | same, empty tables | {fmt(e['drain']['per_s'])}/s | "
            f"**{fmt(h['drain_ratio'], 2)}x** | ≥ 0.9x | {load_range(e['drain'], f['drain'])} |")
        # "No slower with history", within this machine's run-to-run noise (about ±20%).
        bars.append((f"ingest, {f['rows'] / 1e6:g}M history ÷ empty ({kind})",
                     round(h["ingest_ratio"], 2), 0.9))
        bars.append((f"drain, {f['rows'] / 1e6:g}M history ÷ empty ({kind})",
                     round(h["drain_ratio"], 2), 0.9))

    machine = next((d["machine"] for d in (ing, dr, alt, e2e, hist, pgb) if d.get("machine")), {})
    when = sorted(d["at"] for d in (ing, dr, alt, e2e, hist, pgb) if d.get("at"))
    lines = [
        f"Measured {when[0] if when else '?'} to {when[-1] if when else '?'} on: "
        f"{machine.get('nproc')} vCPU ({machine.get('cpu', '?')}), {machine.get('memory_gib')} GiB RAM, "
        f"PostgreSQL {machine.get('postgresql', '?')}, SQLite {machine.get('sqlite', '?')}, "
        f"Python {machine.get('python', '?')}, Linux {machine.get('kernel', '?')}.",
        "",
        head,
        *rows,
    ]
    return "\n".join(lines) + "\n", bars


def chart(bars: list[tuple[str, float, float | None]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not bars:
        return
    labels = [b[0] for b in bars][::-1]
    values = [b[1] for b in bars][::-1]
    targets = [b[2] for b in bars][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(bars) + 1.5))
    colors = ["#2e7d32" if (t is None and v >= 1) or (t is not None and v >= t) else "#c62828"
              for v, t in zip(values, targets, strict=True)]
    ax.barh(labels, values, color=colors)
    for i, t in enumerate(targets):
        if t is not None:
            ax.plot([t, t], [i - 0.4, i + 0.4], color="black", linewidth=2)
    for i, v in enumerate(values):
        ax.text(v * 1.05, i, f"{v:g}x", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("solo-os ÷ alternative (log scale; black tick = target; green = target met)")
    ax.set_title("solo-os against the alternatives, same machine, same run")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="do not touch docs/")
    args = p.parse_args(argv)
    table, bars = build()
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    (c.RESULTS / "TABLE.md").write_text(table)
    chart(bars, c.RESULTS / "ratios.png")
    print(table)
    if not args.quick:
        chart(bars, CHART_DOC)
        if DOC.exists():
            text = DOC.read_text()
            if START in text and END in text:
                before, rest = text.split(START, 1)
                _, after = rest.split(END, 1)
                DOC.write_text(f"{before}{START}\n{table}{END}{after}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
