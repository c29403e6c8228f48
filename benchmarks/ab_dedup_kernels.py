"""The ring duplicate kernel alone, this tree's against other trees' in one process (CPU time).

Run (the other trees: ``git worktree``s of commits that have ``kernels/dedup_batch.ring_dedup_compact``
with this tree's signature, e.g. main)::

    .venv/bin/python benchmarks/ab_dedup_kernels.py /work/main --sources flow,equip --batches 100000,2000000

Each other tree's ``kernels`` package is copied into a temporary directory under another name and
imported beside this tree's, so both kernels run in the same process on the same data
(``bench_ingest.make``, 0.1 % corrupted rows marked as rejected before the check) through this
tree's ``TimeBucketKeySet.check_rows`` with the kept rows gathered (what ``Ingestor`` does). The
decisions (marks, rows kept, element indices) are checked equal first; then, round by round (the
order rotating), each (source, batch size) is timed once per kernel with ``time.process_time``.
The table gives each kernel's best ns a row and its ratio to this tree's (best over best, median of
the per-round ratios; below 1: the other tree is faster), and the load average. A busy machine
slows both alike, so the ratios hold up better than a comparison of separate processes.
"""

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_ingest import _topology, make  # noqa: E402

import kernels.dedup_batch as this_kernels  # noqa: E402
from telcoanalytics.ingest.dedup import DedupClock, TimeBucketKeySet  # noqa: E402
from telcoanalytics.ingest.ingestor import DEDUP_HORIZON_MS  # noqa: E402

BAD = {
    "flow": lambda a: a["bytes"] < 0,
    "equip": lambda a: np.isnan(a["value"]),
    "qos": lambda a: np.isinf(a["latency_ms"]),
}


def _load_other(tree: str, tmp: str, name: str):
    dst = Path(tmp) / name
    shutil.copytree(Path(tree) / "kernels", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return importlib.import_module(f"{name}.dedup_batch")


def _run(kernel, source, a, bad, eidx, batch, keep=False):
    s, clock = TimeBucketKeySet(DEDUP_HORIZON_MS[source]), DedupClock()
    out = []
    for i in range(0, len(a), batch):
        r = a[i : i + batch]
        n = len(r)
        code, field = bad[i : i + batch].astype(np.int8), np.zeros(n, np.int8)
        acc, acc_eidx = np.empty(n, r.dtype), np.empty(n, np.int64)
        s.check_rows(r, kernel, clock, (9, 1), code, field, None, (eidx[i : i + batch], acc, acc_eidx))
        if keep:
            k = s.kept if s.kept is not None and s.kept >= 0 else 0
            out.append((code.tobytes(), s.kept, acc[:k].tobytes(), acc_eidx[:k].tobytes()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("others", nargs="+", help="other source trees (their kernels/ is copied)")
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sources", default="flow,equip")
    p.add_argument("--batches", default="100000,2000000")
    args = p.parse_args()
    topo = _topology()
    eids = topo.ids[topo.element_level]
    sources = args.sources.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="ab_dedup_") as tmp:
        sys.path.insert(0, tmp)
        kernels = {"this": this_kernels.ring_dedup_compact}
        for j, tree in enumerate(args.others):
            kernels[Path(tree).name] = _load_other(tree, tmp, f"kernels_other{j}").ring_dedup_compact
        data = {}
        for s in sources:
            a = make(s, args.n, eids)
            el = a["src_element_id"] if s == "flow" else a["element_id"]
            data[s] = (a, BAD[s](a), np.searchsorted(eids, el))
        for s in sources:
            for b in batches:
                ref = _run(kernels["this"], s, *data[s], b, keep=True)
                for name, k in kernels.items():
                    assert _run(k, s, *data[s], b, keep=True) == ref, f"{name} decides differently ({s}, {b})"
        times: dict = {}
        load0 = os.getloadavg()
        names = list(kernels)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for s in sources:
                for b in batches:
                    for name in order:
                        t0 = time.process_time()
                        _run(kernels[name], s, *data[s], b)
                        times.setdefault((s, b, name), []).append(time.process_time() - t0)
    print(f"{args.rounds} rounds, {args.n:,} rows, CPU ns a row (best); load {load0} -> {os.getloadavg()}")
    for s in sources:
        for b in batches:
            a = np.array(times[(s, b, "this")])
            cells = [f"this {a.min() / args.n * 1e9:6.2f}"]
            for name in names[1:]:
                o = np.array(times[(s, b, name)])
                cells.append(
                    f"{name} {o.min() / args.n * 1e9:6.2f} (best/best {o.min() / a.min():5.3f}, "
                    f"median pair {np.median(o / a):5.3f})"
                )
            print(f"  {s:6s} batch {b:>9,}  " + "  ".join(cells) + "  (same decisions)")


if __name__ == "__main__":
    main()
