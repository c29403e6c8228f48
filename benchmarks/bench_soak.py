"""Soak: several synthetic days through one pipeline; resident memory and checkpoint size per day.

Run: ``PYTHONPATH=. python benchmarks/bench_soak.py --elements 1500 --days 7`` (the issue's target is
7 days at 10,000 elements: ~140M rows, hours on a shared 2-core machine; size it to the machine).
Under pytest-benchmark (``telcoanalytics bench soak``) a small soak runs: ``BENCH_SOAK_ELEMENTS``
(default 300) and ``BENCH_SOAK_DAYS`` (default 3).

Each day is the synthetic network's day (same topology, event time shifted by whole days, CDR
record ids re-keyed per day) with its injected scenarios (collection gaps, failures, congestion,
late / duplicate / corrupted rows), plus:

* day 3: a burst of late data: every equipment and QoS row of region 0 for 10:00-11:00 arrives at
  13:00 (two hours late: beyond the allowed lateness);
* day 4: a burst of corrupted rows: 14:00-14:30, 30 % of all rows get an impossible time stamp;
* day 5: a topology change at noon (1 % of the elements re-homed to other sites of their region).

The pipeline is the replay's (every component and the alert manager) with the bounded-state
outputs: quarantine, SLA events, anomaly rows and alerts stream to append-only files, and a
checkpoint is written every ``checkpoint_every_min`` event-time minutes (default the runner's,
:data:`~telcoanalytics.pipeline.run.DEFAULT_CHECKPOINT_EVERY_MIN`: 360, four a day; a
checkpoint holds week-long state at its full size from the first day, about 160 KiB per element,
so hourly checkpoints cost more than the rest of the pipeline on a slow disk). After each day the table shows resident
memory (``VmRSS``), the checkpoint's size and the output files' size; with ``--attribute`` also
the checkpoint's size per component and its largest entries, the day's seconds per component and
the NumPy memory each part holds (to find what grows: live arrays, or resident memory beyond them).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

DAY_MS = 86_400_000


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB (Linux ``/proc``), after handing freed
    heap pages back to the system (``malloc_trim``), so the day's generated data, already freed,
    does not count as the pipeline's."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
    cur = peak = float("nan")
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def checkpoint_sizes(path) -> Counter:
    """Stored bytes per checkpoint entry (compacted entries and their positions counted together)."""
    out: Counter = Counter()
    with zipfile.ZipFile(path) as z:
        for zi in z.infolist():
            name = zi.filename.removesuffix(".npy").removesuffix("@nz")
            out[name] += zi.compress_size
    return out


def state_mib(pipe) -> Counter:
    """MiB of NumPy memory reachable from each part of ``pipe`` (components, ingestors, quarantine,
    alert manager; each allocation counted once, in the first part that reaches it), to tell live
    state that grows from resident memory that does not (allocator arenas, fragmentation)."""
    seen: set[int] = set()
    owners: set[int] = set()
    out: Counter = Counter()
    parts = [(f"comp.{k}", v) for k, v in pipe.components.items()]
    parts += [(f"ingest.{k}", v) for k, v in pipe.ingestors.items()]
    parts += [("quarantine", pipe.quarantine), ("alerts", pipe.alerts)]
    for name, root in parts:
        stack = [(root, 0)]
        while stack:
            obj, depth = stack.pop()
            if id(obj) in seen or depth > 10 or isinstance(obj, (str, bytes, int, float, bool, type, np.generic)):
                continue
            seen.add(id(obj))
            if isinstance(obj, np.ndarray):
                own = obj
                while isinstance(own.base, np.ndarray):
                    own = own.base
                if id(own) not in owners:
                    owners.add(id(own))
                    out[name] += own.nbytes / 2**20
                continue
            if isinstance(obj, dict):
                children = list(obj.values())
            elif isinstance(obj, (list, tuple, set)):
                children = list(obj)
            elif hasattr(obj, "__dict__") and not callable(obj):
                children = list(vars(obj).values())
            else:
                continue
            stack.extend((c, depth + 1) for c in children)
    return out


def attribution_lines(sizes: Counter, seconds: dict, top: int = 6) -> list[str]:
    """Checkpoint MiB per component (and per other part), the ``top`` largest entries, and the
    day's seconds per pipeline step."""
    by_part: Counter = Counter()
    for k, v in sizes.items():
        by_part[k.split("::")[0]] += v
    parts = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in by_part.most_common() if v >= 2**18)
    lines = [f"      checkpoint MiB by part: {parts}"]
    lines.append(
        "      largest entries: " + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in sizes.most_common(top) if v >= 2**18)
    )
    lines.append("      seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items() if v >= 0.05))
    return lines


def _day_batches(day, d: int, topo_region):
    """The day's arrival-order batches with the soak's perturbations of day ``d`` (0-based)."""
    from telcoanalytics.records import TIME_FIELD

    t0 = day.start_ms
    held = []
    for source, rows, arrival, _origin in day.raw_batches(with_arrival=True):
        if source == "cdr":
            rows = rows.copy()
            rows["record_id"] += np.int64(d) << np.int64(40)  # each day its own record ids
        if d == 2 and source in ("equip", "qos") and len(rows):
            t = rows[TIME_FIELD[source]]
            late = (t >= t0 + 10 * 3_600_000) & (t < t0 + 11 * 3_600_000)
            if late.any():
                held.append((source, rows[late]))
                rows = rows[~late]
            if held and arrival[0] >= t0 + 13 * 3_600_000:
                yield from held
                held = []
        if d == 3 and len(rows) and t0 + 14 * 3_600_000 <= arrival[0] < t0 + 14.5 * 3_600_000:
            rows = rows.copy()
            rng = np.random.default_rng(int(arrival[0]))
            bad = rng.random(len(rows)) < 0.3
            rows[TIME_FIELD[source]][bad] = -(2**40)  # an impossible time stamp
        yield source, rows
    yield from held


def soak(
    n_elements: int = 1500,
    days: int = 7,
    seed: int = 7,
    out=None,
    say=print,
    attribute: bool = False,
    checkpoint_every_min: float | None = None,
) -> list[dict]:
    """Run the soak; returns one dict per day (rows, seconds, rss_mib, peak_mib, checkpoint_mib,
    outputs_mib; with ``attribute`` also ``checkpoint_entries``, bytes per entry, and
    ``step_seconds``, the day's seconds per pipeline step)."""
    from telcoanalytics.pipeline.replay import DEFAULTS, _outputs, attach_finding_logs, build_pipeline
    from telcoanalytics.pipeline.replay_report import rehome_plan
    from telcoanalytics.pipeline.run import (
        DEFAULT_CHECKPOINT_EVERY_MIN,
        IteratorSource,
        Runner,
        streaming_quarantine,
        use_quarantine,
    )
    from telcoanalytics.synth.network import SynthConfig, generate

    out = Path(out or tempfile.mkdtemp(prefix="soak_"))
    out.mkdir(parents=True, exist_ok=True)
    cfg0 = SynthConfig(n_elements=n_elements, days=1.0, seed=seed)
    settings = dict(DEFAULTS, out=str(out))
    pipe = runner = None
    rows = []
    every = DEFAULT_CHECKPOINT_EVERY_MIN if checkpoint_every_min is None else checkpoint_every_min
    say(
        f"soak: {n_elements:,} elements, {days} days, a checkpoint every {every:g} min, outputs and checkpoints in {out}/"
    )
    say("  day       rows  seconds  rows/s   RSS MiB  peak MiB  checkpoint MiB  outputs MiB")
    for d in range(days):
        t0 = time.perf_counter()
        day = generate(SynthConfig(**{**cfg0.__dict__, "start_ms": cfg0.start_ms + d * DAY_MS}))
        if pipe is None:
            logs = _outputs(out, settings, None)
            pipe = build_pipeline(settings, day.topology, logs["alerts"])
            use_quarantine(pipe, streaming_quarantine(logs["quarantine"], restored=pipe.quarantine))
            attach_finding_logs(pipe, out, settings, None, logs)
            runner = Runner(pipe, checkpoint_path=out / "checkpoint.npz", checkpoint_every_min=every, outputs=logs)
        if d == 4:  # a topology change at noon
            moved, new_site = rehome_plan(day, 0.01, seed=seed)
            at = day.start_ms + DAY_MS // 2

            def hook(source, r, moved=moved, new_site=new_site, at=at, pipe=pipe, runner=runner):
                from telcoanalytics.records import TIME_FIELD

                if not runner.driver.get("soak_rehomed") and len(r) and int(r[TIME_FIELD[source]].max()) >= at:
                    runner.driver["soak_rehomed"] = True
                    target, ch = pipe.topology.rehome_elements(moved, new_site)
                    pipe.change_topology(target, [ch])

            runner.hooks = [hook]
        n0 = runner.driver["n_in"]
        sec0 = dict(pipe.seconds, checkpoints=runner.checkpoint_s)
        runner.run(IteratorSource(_day_batches(day, d, None)))
        n = runner.driver["n_in"] - n0
        del day
        gc.collect()
        secs = time.perf_counter() - t0
        cur, peak = rss_mib()
        ck = (out / "checkpoint.npz").stat().st_size / 2**20 if (out / "checkpoint.npz").exists() else float("nan")
        outs = sum(p.stat().st_size for p in out.glob("*.jsonl*")) / 2**20
        rows.append(
            dict(day=d + 1, rows=n, seconds=secs, rss_mib=cur, peak_mib=peak, checkpoint_mib=ck, outputs_mib=outs)
        )
        say(f"  {d + 1:3d} {n:10,d} {secs:8.1f} {n / secs / 1e6:6.2f}M {cur:9.0f} {peak:9.0f} {ck:15.1f} {outs:12.1f}")
        if attribute and (out / "checkpoint.npz").exists():
            sizes = checkpoint_sizes(out / "checkpoint.npz")
            steps = {k: v - sec0.get(k, 0.0) for k, v in dict(pipe.seconds, checkpoints=runner.checkpoint_s).items()}
            held = state_mib(pipe)
            rows[-1].update(checkpoint_entries=dict(sizes), step_seconds=steps, state_mib=dict(held))
            for line in attribution_lines(sizes, steps):
                say(line)
            say(
                f"      arrays held MiB: total {sum(held.values()):.1f}; "
                + ", ".join(f"{k} {v:.1f}" for k, v in held.most_common() if v >= 0.25)
            )
    pipe.advance(pipe.max_event_ms + 1)
    pipe.finish()
    if len(rows) > 2:
        r1 = rows[1:]
        for key in ("rss_mib", "checkpoint_mib"):
            v = np.array([r[key] for r in r1])
            say(
                f"  {key} after day 1: min {v.min():.1f}, max {v.max():.1f} (spread {100 * (v.max() / v.min() - 1):.1f} %)"
            )
    say(f"  conservation: {'ok' if pipe.conserved() else 'VIOLATED'}; {runner.driver['n_checkpoints']} checkpoints")
    return rows


def test_soak(benchmark, tmp_path):
    """A small soak under pytest-benchmark (sizes from BENCH_SOAK_ELEMENTS / BENCH_SOAK_DAYS)."""
    n = int(os.environ.get("BENCH_SOAK_ELEMENTS", 300))
    days = int(os.environ.get("BENCH_SOAK_DAYS", 3))
    rows = benchmark.pedantic(soak, args=(n, days), kwargs={"out": tmp_path}, rounds=1, iterations=1)
    benchmark.extra_info["per_day"] = rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=1500)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", help="folder for outputs and checkpoints (default: a temporary folder)")
    ap.add_argument("--attribute", action="store_true", help="per day: checkpoint size per component, seconds per step")
    ap.add_argument("--checkpoint-every-min", type=float, help="event-time minutes between checkpoints (default 360)")
    a = ap.parse_args()
    soak(a.elements, a.days, a.seed, a.out, attribute=a.attribute, checkpoint_every_min=a.checkpoint_every_min)
    sys.exit(0)
