"""Capacity planning: the full pipeline's throughput, latency and memory against network size,
days, cube count and rule count, and the Dask speed-up from 1 to 2 worker processes.

Run: ``PYTHONPATH=. python benchmarks/bench_capacity.py`` (defaults sized for a shared 2-core
machine: 500 / 1,000 / 2,000 elements); on a capacity-planning host
``--elements 5000,10000,20000,40000 --days-list 1,3``. ``--dask`` adds the 1 -> 2 worker
comparison; ``--plot capacity.png`` saves the table as a figure (needs matplotlib, the ``[plot]``
extra). Under pytest-benchmark (``telcoanalytics bench capacity``) one small point runs.

Every point runs in its own process (so its peak memory is its own): a synthetic network of that
size, the replay's components (windows, SLA, anomaly, cubes) and alert manager, arrival-order
micro-batches of one minute. Columns:

* ``rows/s``: rows read / seconds in the pipeline (generation excluded);
* ``batch p50 / p99 ms``: wall time of one micro-batch through the pipeline (ingest to alerts):
  the processing latency a row sees in a real-time deployment on top of its minute of batching;
* ``detect p50 / p95 min``: event time from an alert's start (its first evidence) to its first
  notification (rule windows, pending periods and grouping included);
* ``peak MiB``: the process's peak resident memory (the generated day held in memory included:
  ~90 bytes per row);
* per-component seconds (ingest, route, windows, sla, anomaly, cube, alerts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_point(elements: int, days: float, cubes: int = 2, rule_share: float = 1.0, seed: int = 7, out=None) -> dict:
    """One capacity point in this process; returns its figures."""
    import tempfile

    from telcoanalytics.alerts.sinks import JsonlSink
    from telcoanalytics.cube import CubeSpec, explore_spec
    from telcoanalytics.pipeline.components import CubeComponent, SlaComponent, build_alert_manager, build_components
    from telcoanalytics.pipeline.pipeline import Pipeline
    from telcoanalytics.sla.sla import default_rules
    from telcoanalytics.synth.network import generate

    out = Path(out or tempfile.mkdtemp(prefix="cap_"))
    t0 = time.perf_counter()
    day = generate(n_elements=elements, days=days, seed=seed)
    t_gen = time.perf_counter() - t0
    topo = day.topology
    comps = build_components(topo)
    rules = default_rules(topo)
    n_rules = max(1, int(round(rule_share * len(rules))))
    comps["sla"] = SlaComponent(topo, rules[:n_rules])
    if cubes != 2:  # the default pair (explore, subscribers), fewer, or more explore-shaped cubes
        specs = {"explore": explore_spec()}
        for k in range(1, cubes):
            specs["subscribers" if k == 1 else f"explore{k}"] = (
                CubeSpec(
                    dimensions=["region", "service", "hour_of_day"],
                    measures=["count", "distinct:imsi_hash", "p95:duration_ms", "sum:bytes"],
                )
                if k == 1
                else explore_spec()
            )
        comps["cube"] = CubeComponent(topo, specs=specs)
    p = Pipeline(topo, components=comps, alerts=build_alert_manager(topo, out))
    lat = []
    n = 0
    t0 = time.perf_counter()
    for batch in day.raw_batches():
        tb = time.perf_counter()
        n += p.feed([batch])
        lat.append(time.perf_counter() - tb)
    p.advance(p.max_event_ms + 1)
    p.finish()
    secs = time.perf_counter() - t0
    for s in p.alerts.sinks:
        if isinstance(s, JsonlSink):
            s.flush()
    detect = []
    first: dict = {}
    with open(out / "alerts.jsonl") as f:
        for line in f:
            a = json.loads(line)
            if a.get("state", "firing") != "firing" or a["fingerprint"] in first:
                continue
            first[a["fingerprint"]] = True
            detect.append((a["notified_ms"] - a["starts_at_ms"]) / 60_000 if "starts_at_ms" in a else np.nan)
    detect = np.array([d for d in detect if d == d]) if detect else np.zeros(0)
    lat_ms = np.array(lat) * 1e3
    return {
        "elements": elements,
        "days": days,
        "cubes": len(list(comps["cube"].cubes)),
        "rules": n_rules,
        "rows": n,
        "seconds": secs,
        "rows_per_s": n / secs,
        "batch_p50_ms": float(np.percentile(lat_ms, 50)),
        "batch_p99_ms": float(np.percentile(lat_ms, 99)),
        "detect_p50_min": float(np.percentile(detect, 50)) if len(detect) else float("nan"),
        "detect_p95_min": float(np.percentile(detect, 95)) if len(detect) else float("nan"),
        "alerts": len(first),
        "peak_mib": _peak_mib(),
        "generate_s": t_gen,
        "component_s": {k: round(v, 2) for k, v in p.seconds.items()},
    }


def dask_point(elements: int, days: float, workers: int | None, seed: int = 7) -> dict:
    """The partitioned pipeline in-process (``workers=None``) or on a LocalCluster of worker processes."""
    from telcoanalytics.pipeline.distributed import partitioned_pipeline
    from telcoanalytics.synth.network import generate

    day = generate(n_elements=elements, days=days, seed=seed)
    batches = list(day.raw_batches())

    def go(client):
        p = partitioned_pipeline(day.topology, client=client)
        t0 = time.perf_counter()
        n = p.feed(batches)
        p.advance(p.max_event_ms + 1)
        p.finish()
        return n, time.perf_counter() - t0, p.findings_count

    if workers is None:
        n, secs, found = go(None)
    else:
        import distributed

        with (
            distributed.LocalCluster(
                processes=True, n_workers=workers, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            go(client)  # warm-up: worker imports and compiled kernels loaded
            n, secs, found = go(client)
    return {"elements": elements, "days": days, "workers": workers, "rows": n, "seconds": secs, "findings": found}


def _child(kind: str, kw: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(
        [sys.executable, str(HERE / "bench_capacity.py"), "--one", json.dumps({"kind": kind, **kw})],
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode:
        raise RuntimeError(f"capacity point {kw} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


HEADER = "  elements  days  cubes  rules        rows   rows/s  batch p50/p99 ms  detect p50/p95 min  peak MiB  components (s)"


def _line(r: dict) -> str:
    comp = ", ".join(f"{k} {v:.1f}" for k, v in r["component_s"].items())
    return (
        f"  {r['elements']:8,d} {r['days']:5g} {r['cubes']:6d} {r['rules']:6d} {r['rows']:11,d} "
        f"{r['rows_per_s'] / 1e6:6.2f}M {r['batch_p50_ms']:8.1f}/{r['batch_p99_ms']:<8.1f} "
        f"{r['detect_p50_min']:8.1f}/{r['detect_p95_min']:<9.1f} {r['peak_mib']:9.0f}  {comp}"
    )


def plot(rows: list[dict], path) -> bool:
    """Save rows/s and peak memory against elements (and days) as a figure; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    base = [
        r
        for r in rows
        if r["cubes"] == 2 and r["rules"] == max(x["rules"] for x in rows if x["elements"] == r["elements"])
    ]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for days in sorted({r["days"] for r in base}):
        sel = sorted((r for r in base if r["days"] == days), key=lambda r: r["elements"])
        x = [r["elements"] for r in sel]
        ax[0].plot(x, [r["rows_per_s"] / 1e6 for r in sel], "o-", label=f"{days:g} day")
        ax[1].plot(x, [r["peak_mib"] for r in sel], "o-", label=f"{days:g} day")
        ax[2].plot(x, [r["batch_p99_ms"] for r in sel], "o-", label=f"{days:g} day")
    for a, t in zip(ax, ("M rows/s end to end", "peak memory (MiB)", "batch latency p99 (ms)")):
        a.set_xlabel("elements")
        a.set_title(t)
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", default="500,1000,2000", help="network sizes (comma-separated)")
    ap.add_argument("--days-list", default="0.25", help="replayed spans in days (comma-separated)")
    ap.add_argument("--cubes", default="1,4", help="cube counts tried at the middle size (2 always runs)")
    ap.add_argument("--rule-shares", default="0.25,0.5", help="shares of the default rules tried (1 always runs)")
    ap.add_argument("--dask", action="store_true", help="also the partitioned pipeline on 1 and 2 worker processes")
    ap.add_argument("--dask-elements", type=int, default=1000)
    ap.add_argument("--plot", help="save the figure here (needs matplotlib)")
    ap.add_argument("--json", help="save the rows as JSON here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        kw = json.loads(a.one)
        kind = kw.pop("kind")
        print(json.dumps(run_point(**kw) if kind == "point" else dask_point(**kw)))
        return 0
    sizes = [int(x) for x in a.elements.split(",")]
    days_list = [float(x) for x in a.days_list.split(",")]
    mid = sizes[len(sizes) // 2]
    points = [dict(elements=e, days=d) for d in days_list for e in sizes]
    points += [dict(elements=mid, days=days_list[0], cubes=int(c)) for c in a.cubes.split(",") if c]
    points += [dict(elements=mid, days=days_list[0], rule_share=float(s)) for s in a.rule_shares.split(",") if s]
    print("capacity (one process per point; timings on this machine and its current load)")
    print(HEADER)
    rows = []
    for kw in points:
        r = _child("point", kw)
        rows.append(r)
        print(_line(r), flush=True)
    if a.dask:
        print(f"\nDask: the pipeline partitioned by region, {a.dask_elements:,} elements, {days_list[0]:g} day")
        base = None
        for w in (None, 1, 2):
            r = _child("dask", dict(elements=a.dask_elements, days=days_list[0], workers=w))
            base = base or r
            label = "in-process" if w is None else f"{w} worker process{'es' if w > 1 else ''}"
            print(
                f"  {label:<20} {r['seconds']:6.1f} s  {r['rows'] / r['seconds'] / 1e6:5.2f} M rows/s  "
                f"findings {r['findings']}",
                flush=True,
            )
            rows.append(r)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.plot:
        ok = plot([r for r in rows if "cubes" in r], a.plot)
        print(f"figure saved to {a.plot}" if ok else "no figure: matplotlib is not installed (pip install '.[plot]')")
    return 0


def test_capacity_point(benchmark, tmp_path):
    """One small point under pytest-benchmark (BENCH_CAPACITY_ELEMENTS, default 300)."""
    n = int(os.environ.get("BENCH_CAPACITY_ELEMENTS", 300))
    r = benchmark.pedantic(run_point, args=(n, 0.1), kwargs={"out": tmp_path}, rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in r.items() if k != "component_s"})
    assert r["rows"] > 0


if __name__ == "__main__":
    sys.exit(main())
