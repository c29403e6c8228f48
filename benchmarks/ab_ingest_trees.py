"""Clean-ingest rate of source trees, back to back (CPU time): this tree against others.

Run (the other trees ``git worktree``s of older commits; same venv)::

    .venv/bin/python benchmarks/ab_ingest_trees.py /work/wt/ee40f71_ingest /work/wt/main_base --rounds 10

The data are ``bench_ingest.make``'s (seeded, 0.1 % corrupted rows) for each source, written once
to ``.npy`` files. One worker process per tree loads them and warms the JIT; then, round by round,
each (source, mode) is timed once in each tree, one right after the other (the order rotating
from round to round), so a busy machine slows all alike. A run is
``Ingestor(source, topology=...)`` on the whole array or on 100k-row batches (one Ingestor, state
carried), timed with ``time.process_time``. The table gives each tree's best rate over the rounds,
its ratio to this tree's (best over best, and the median of the per-round ratios; above 1: this
tree is faster), and the load average at start and end.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

WORKER = r"""
import json, sys, time
import numpy as np
try:
    from telcoanalytics.ingest.ingestor import Ingestor
except ImportError:
    from telcoanalytics.ingest import Ingestor
try:
    from telcoanalytics.topology.model import Topology
except ImportError:
    from telcoanalytics.topology import Topology
d, sources, batch = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
ids = np.load(f"{d}/ids.npy")
topo = Topology.from_columns(ids, {"region": np.arange(len(ids)) // 2000, "site": np.arange(len(ids)) // 4})
data = {s: np.load(f"{d}/{s}.npy") for s in sources}
for s, a in data.items():  # warm every path (whole arrays and batches)
    ing = Ingestor(s, topology=topo)
    for i in range(0, 300_000, batch):
        ing.ingest(a[i : i + batch])
    Ingestor(s, topology=topo).ingest(a[:300_000])
print("ready", flush=True)
for line in sys.stdin:
    s, mode = line.split()
    a = data[s]
    ing = Ingestor(s, topology=topo)
    t0 = time.process_time()
    if mode == "whole":
        ing.ingest(a)
    else:
        for i in range(0, len(a), batch):
            ing.ingest(a[i : i + batch])
    dt = time.process_time() - t0
    print(json.dumps([dt, ing.n_accepted, ing.n_read - ing.n_accepted]), flush=True)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("others", nargs="+", help="the other source trees (e.g. a worktree of ee40f71)")
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--batch", type=int, default=100_000)
    p.add_argument("--sources", default="equip,flow,qos,cdr")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_ingest import _topology, make

    topo = _topology()
    eids = topo.ids[topo.element_level]
    trees = {"this": str(REPO)}
    trees.update({Path(o).name: str(Path(o).resolve()) for o in args.others})
    times: dict = {}
    counts: dict = {}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ab_ingest_") as d:
        np.save(f"{d}/ids.npy", eids)
        for s in args.sources.split(","):
            np.save(f"{d}/{s}.npy", make(s, args.n, eids))
        procs = {}
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=tree)
            cmd = [sys.executable, "-c", WORKER, d, args.sources, str(args.batch)]
            procs[name] = subprocess.Popen(
                cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        for w in procs.values():
            assert w.stdout.readline().strip() == "ready"
        try:
            for r in range(args.rounds):
                names = list(trees)
                order = names[r % len(names) :] + names[: r % len(names)]
                for s in args.sources.split(","):
                    for mode in ("whole", "batches"):
                        for name in order:
                            w = procs[name]
                            w.stdin.write(f"{s} {mode}\n")
                            w.stdin.flush()
                            dt, acc, q = json.loads(w.stdout.readline())
                            times.setdefault((name, f"{s}/{mode}"), []).append(dt)
                            counts.setdefault(f"{s}/{mode}", {})[name] = (acc, q)
                print(f"round {r} done, load {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            for w in procs.values():
                w.stdin.close()
                w.wait()
    load1 = os.getloadavg()
    print(f"\n{args.rounds} rounds, {args.n:,} rows, CPU (M rows/s, best); load {load0} -> {load1}")
    for k in counts:
        a = np.array(times[("this", k)])
        cells = [f"this {args.n / a.min() / 1e6:6.1f}"]
        for name in list(trees)[1:]:
            b = np.array(times[(name, k)])
            cells.append(
                f"{name} {args.n / b.min() / 1e6:6.1f} (best/best {b.min() / a.min():5.3f}, "
                f"median pair {np.median(b / a):5.3f})"
            )
        same = "same counts" if len(set(counts[k].values())) == 1 else f"counts {counts[k]}"
        print(f"  {k:16s} " + "  ".join(cells) + f"  ({same})")


if __name__ == "__main__":
    main()
