"""The replay in-process against ``--workers N`` (the pipeline partitioned by region on a local Dask
cluster of N processes): wall time and CPU time of the whole command, alternated.

Run: ``.venv/bin/python benchmarks/bench_replay_workers.py --elements 1000 2000 --workers 0 1 2
--repeat 2`` (``--workers 0`` is the in-process replay). Each run is ``python -m telcoanalytics
replay --elements E --seed S --workers N --out DIR`` in a fresh process, as a user types it; the
CPU time is the command's and its reaped children's (the Dask workers and nannies), from
``os.wait4``; the driver's own share, the replay's time line and the load average are printed
beside it. The configurations of one repetition run back to back, in the order given, so a
change in the machine's load hits all of them; on a shared machine compare CPU times first.

Prints one line per run and a summary table (median per configuration); ``--json FILE`` also
writes every run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(elements: int, workers: int, seed: int, out: Path, extra=(), tree=None) -> dict:
    """One replay in a fresh process; returns its wall, CPU (user + system, with children) and
    the report's time line."""
    cmd = [sys.executable, "-m", "telcoanalytics", "replay", "--elements", str(elements), "--seed", str(seed)]
    cmd += ["--workers", str(workers), "--out", str(out), *extra]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    env = dict(os.environ)
    if tree:  # another source tree of telcoanalytics (e.g. the code before a change), first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    # run from the output folder: ``python -m`` puts the working directory first on the path, which
    # would shadow --tree with the source tree the benchmark was started from
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmd[cmd.index("--out") + 1] = str(out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out)
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    m = re.search(r"^== time: (.*); total ([0-9.]+) s(.*)$", stdout, re.M)
    ingest = re.search(r"^== ingested ([0-9,]+) rows in .* in ([0-9.]+) s", stdout, re.M)
    return {
        "elements": elements,
        "workers": workers,
        "seed": seed,
        "wall_s": round(wall, 2),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "max_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "report_total_s": float(m.group(2)) if m else None,
        "time_line": m.group(0) if m else None,
        "rows": int(ingest.group(1).replace(",", "")) if ingest else None,
        "feed_s": float(ingest.group(2)) if ingest else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--elements", type=int, nargs="+", default=[1000, 2000])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="0: in-process")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="write every run to this file")
    ap.add_argument("--keep", help="keep the outputs under this folder (default: a temporary one)")
    ap.add_argument("--tree", action="append", default=[], help="also run this source tree (A/B, alternated)")
    ap.add_argument("extra", nargs="*", help="further replay options (after --)")
    a = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(a.keep or tmp)
        for rep in range(a.repeat):
            for e in a.elements:
                for w in a.workers:
                    for ti, tree in enumerate([None, *a.tree]):
                        r = run_once(e, w, a.seed, base / f"e{e}_w{w}_t{ti}_r{rep}", a.extra, tree)
                        r["tree"] = tree or "this"
                        runs.append(r)
                        print(
                            f"{r['tree'][-12:]:>12} elements {e:>6,} workers {w}: wall {r['wall_s']:6.1f} s  cpu {r['cpu_s']:6.1f} s  "
                            f"rss {r['max_rss_mib']:7.0f} MiB  load {r['load_before']:.1f}->{r['load_after']:.1f}  "
                            f"| {r['time_line']}",
                            flush=True,
                        )
    print("\nmedian per configuration (wall s / cpu s):")
    for tree in ["this", *a.tree]:
        for e in a.elements:
            cells = []
            for w in a.workers:
                sel = [r for r in runs if r["elements"] == e and r["workers"] == w and r["tree"] == tree]
                ws = sorted(r["wall_s"] for r in sel)
                cs = sorted(r["cpu_s"] for r in sel)
                label = "in-process" if w == 0 else f"{w} workers"
                cells.append(f"{label}: {ws[len(ws) // 2]:.1f} / {cs[len(cs) // 2]:.1f}")
            print(f"  {tree[-12:]:>12} {e:>6,} elements  " + "   ".join(cells))
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
