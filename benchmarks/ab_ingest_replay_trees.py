"""Ingest CPU time on the replay's own batches: one source tree against another, back to back.

Run (trees: ``git worktree``s or ``git archive`` copies of two commits; A first, B second)::

    .venv/bin/python benchmarks/ab_ingest_replay_trees.py /path/to/tree_A /path/to/tree_B [rounds] [elements] [--streaming] [--evict-mb=64]

The batches are those ``telcoanalytics replay`` hands the pipeline (its synthetic day at 2,000
elements by default: many small batches and one large one per source every 5 min), generated once
with tree A's code and pickled. One worker process per tree loads them and warms the JIT; then,
round by round, each source's batches go through a fresh ``Ingestor(source, topology=...)`` in
each tree (the order alternating), timed with ``time.process_time``. The table gives each tree's
best time, B/A (best over best, and the median of the per-round ratios; below 1: B is faster),
whether the accepted counts agree, and the load average at start and end.

With ``--streaming`` (after the positional arguments) each Ingestor's quarantine is the replay's
(``telcoanalytics.pipeline.run.streaming_quarantine``: every rejected row written to a JSON-lines
log as it comes, what ``replay`` does), so the quarantine's per-row text is timed too. With
``--evict-mb=M`` a buffer of M MiB is written (one byte a cache line) before each batch, outside
the timing: the batch then meets cold caches, as in a pipeline whose components run between
batches (the ingest's CPU inside ``replay`` is 2-3x this harness's without it).
"""

import json
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np

WORKER = r"""
import sys, time, json, pickle
import numpy as np
from telcoanalytics.ingest.ingestor import Ingestor
d = sys.argv[1]
streaming = len(sys.argv) > 2 and sys.argv[2] == "1"
def make_ingestor(s, topo):
    if not streaming:
        return Ingestor(s, topology=topo)
    import tempfile
    from pathlib import Path
    from telcoanalytics.pipeline.run import OutputLog, streaming_quarantine
    log = OutputLog(Path(tempfile.mkdtemp(prefix="abq_")) / "quarantine.jsonl")
    return Ingestor(s, topology=topo, quarantine=streaming_quarantine(log))
with open(f"{d}/b.pkl", "rb") as f: raw, topo = pickle.load(f)
for s, bl in raw.items():
    ing = make_ingestor(s, topo)
    for b in bl[:50]: ing.ingest(b)
print("ready", flush=True)
evict = np.zeros(int(sys.argv[3]) << 20, np.uint8) if len(sys.argv) > 3 and int(sys.argv[3]) else None
for line in sys.stdin:
    s = line.strip()
    ing = make_ingestor(s, topo)
    dt = 0.0
    for b in raw[s]:
        if evict is not None:  # the caches filled with other data, as a pipeline's components do between batches
            evict[::64] += 1
        t0 = time.process_time()
        ing.ingest(b)
        dt += time.process_time() - t0
    print(json.dumps([dt, ing.n_accepted, ing.n_read]), flush=True)
"""


def main() -> None:
    streaming = "--streaming" in sys.argv
    evict = next((a.split("=")[1] for a in sys.argv if a.startswith("--evict-mb=")), "0")
    argv = [a for a in sys.argv if a != "--streaming" and not a.startswith("--evict-mb=")]
    trees = argv[1:3]
    rounds = int(argv[3]) if len(argv) > 3 else 5
    elements = int(argv[4]) if len(argv) > 4 else 2000
    sys.path.insert(0, trees[0])
    from telcoanalytics.pipeline.replay import DEFAULTS, SyntheticSource

    src = SyntheticSource(dict(DEFAULTS, elements=elements), say=lambda *a: None)
    raw: dict = {}
    for s, b in src:
        raw.setdefault(s, []).append(np.array(b))
    d = tempfile.mkdtemp(prefix="abr_")
    with open(f"{d}/b.pkl", "wb") as f:
        pickle.dump((raw, src.topology), f)
    print({s: (len(bl), sum(len(b) for b in bl)) for s, bl in raw.items()}, flush=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, d, "1" if streaming else "0", evict],
            cwd=t,
            env=dict(os.environ, PYTHONPATH=t),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for t in trees
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    times: dict = {}
    load0 = os.getloadavg()
    for r in range(rounds):
        for s in raw:
            for p in procs if r % 2 == 0 else procs[::-1]:
                p.stdin.write(s + "\n")
                p.stdin.flush()
                times.setdefault((procs.index(p), s), []).append(json.loads(p.stdout.readline()))
    print("load", load0, "->", os.getloadavg())
    tot = [0.0, 0.0]
    for s in raw:
        a = np.array([x[0] for x in times[(0, s)]])
        b = np.array([x[0] for x in times[(1, s)]])
        tot[0] += a.min()
        tot[1] += b.min()
        same = {tuple(x[1:]) for x in times[(0, s)]} == {tuple(x[1:]) for x in times[(1, s)]}
        print(
            f"{s:10s} A {a.min():.3f}s  B {b.min():.3f}s  B/A {b.min() / a.min():.3f} "
            f"median pair {np.median(b / a):.3f}  counts same: {same}"
        )
    print(f"total      A {tot[0]:.3f}s  B {tot[1]:.3f}s  B/A {tot[1] / tot[0]:.3f}")
    for p in procs:
        p.stdin.close()
        p.wait()


if __name__ == "__main__":
    main()
