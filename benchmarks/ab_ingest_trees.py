"""Clean-ingest rate of two source trees, back to back (CPU time): this tree against another.

Run (the other tree a ``git worktree`` of an older commit; same venv)::

    .venv/bin/python benchmarks/ab_ingest_trees.py /work/wt/ee40f71_ingest --rounds 4 --n 2000000

The data are ``bench_ingest.make``'s (seeded, 0.1 % corrupted rows) for each source, written once
to ``.npy`` files; each round runs one fresh process per tree, the trees' order alternating from
round to round. A process warms the JIT, then times ``Ingestor(source, topology=...)`` on the
whole array and on 100k-row batches (one Ingestor, state carried), ``BENCH_REPS`` times each,
with ``time.process_time``. The table gives the best rate of each (tree, source, mode) over all
rounds, and the load average at the start and end.
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
d, sources, reps, batch = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
ids = np.load(f"{d}/ids.npy")
topo = Topology.from_columns(ids, {"region": np.arange(len(ids)) // 2000, "site": np.arange(len(ids)) // 4})
out = {}
for s in sources:
    a = np.load(f"{d}/{s}.npy")
    ing = Ingestor(s, topology=topo)
    for i in range(0, 300_000, batch):  # warm every path (whole arrays and batches)
        ing.ingest(a[i : i + batch])
    Ingestor(s, topology=topo).ingest(a[:300_000])
    for mode in ("whole", "batches"):
        best = float("inf")
        for _ in range(reps):
            ing = Ingestor(s, topology=topo)
            t0 = time.process_time()
            if mode == "whole":
                r = ing.ingest(a)
            else:
                for i in range(0, len(a), batch):
                    ing.ingest(a[i : i + batch])
            best = min(best, time.process_time() - t0)
        out[f"{s}/{mode}"] = [best, ing.n_accepted, ing.n_read - ing.n_accepted]
print(json.dumps(out))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("other", help="the other source tree (e.g. a worktree of ee40f71)")
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=100_000)
    p.add_argument("--sources", default="equip,flow,qos,cdr")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_ingest import _topology, make

    topo = _topology()
    eids = topo.ids[topo.element_level]
    trees = {"this": str(REPO), "other": str(Path(args.other).resolve())}
    best: dict = {}
    counts: dict = {}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ab_ingest_") as d:
        np.save(f"{d}/ids.npy", eids)
        for s in args.sources.split(","):
            np.save(f"{d}/{s}.npy", make(s, args.n, eids))
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for name in order:
                env = dict(os.environ, PYTHONPATH=trees[name])
                cmd = [sys.executable, "-c", WORKER, d, args.sources, str(args.reps), str(args.batch)]
                res = json.loads(
                    subprocess.run(cmd, cwd=trees[name], env=env, capture_output=True, text=True, check=True).stdout
                )
                for k, (dt, acc, q) in res.items():
                    best[(name, k)] = min(best.get((name, k), np.inf), dt)
                    counts.setdefault(k, {})[name] = (acc, q)
                print(
                    f"round {r} {name}: " + "  ".join(f"{k} {args.n / v[0] / 1e6:.1f}" for k, v in res.items()),
                    flush=True,
                )
    load1 = os.getloadavg()
    print(
        f"\nbest of {args.rounds} rounds x {args.reps} reps, {args.n:,} rows, CPU (M rows/s); load {load0} -> {load1}"
    )
    for k in counts:
        a, b = best[("this", k)], best[("other", k)]
        same = "same counts" if counts[k]["this"] == counts[k]["other"] else f"counts {counts[k]}"
        print(f"  {k:16s} this {args.n / a / 1e6:6.1f}  other {args.n / b / 1e6:6.1f}  ratio {b / a:5.3f}  ({same})")


if __name__ == "__main__":
    main()
