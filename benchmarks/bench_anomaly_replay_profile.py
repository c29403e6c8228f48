"""Where the replay's per-component anomaly line goes: a full replay (all components, no
checkpoints) with the anomaly component's calls and their parts timed in wall and CPU time, and the
garbage collector's passes that ran inside those calls.

    python benchmarks/bench_anomaly_replay_profile.py [ELEMENTS] [SEED]   # PROFILE_OUT=DIR keeps the outputs
    # PROFILE_COMPONENTS="anomaly alerts" runs only those components

Prints, for the anomaly component: the pipeline's own figure (``seconds['anomaly']``, wall), the
wall and CPU time of its update / advance / finish calls, and inside them: event building, the
detector (``_update_events``), silence checks, relabelling and the findings log, the paging
policy, and the time of the cyclic garbage collector's passes that ran during those calls (with
their generations). Run with ``PYTHONPATH`` pointing at other code for an A/B.
"""

import gc
import os
import sys
import tempfile
import time
from collections import defaultdict

from telcoanalytics._malloc import tune_malloc

tune_malloc()  # as the command does, before NumPy's users load

W = defaultdict(float)  # wall seconds
C = defaultdict(float)  # CPU seconds
N = defaultdict(int)
MX = defaultdict(float)  # the longest call's CPU seconds
_inside = [0]
_gc_t = [0.0, 0.0]
GC = defaultdict(float)
GCN = defaultdict(int)
MX = defaultdict(float)  # the longest call's CPU seconds


def _gc_cb(phase, info):
    if phase == "start":
        _gc_t[0], _gc_t[1] = time.perf_counter(), time.process_time()
        return
    dw, dc = time.perf_counter() - _gc_t[0], time.process_time() - _gc_t[1]
    where = "anomaly" if _inside[0] else "elsewhere"
    GC[f"{where} wall gen{info['generation']}"] += dw
    GC[f"{where} cpu gen{info['generation']}"] += dc
    GCN[f"{where} gen{info['generation']}"] += 1


def _wrap(owner, name, key, top=False):
    orig = getattr(owner, name)

    def f(*a, **k):
        if top:
            _inside[0] += 1
        w, c = time.perf_counter(), time.process_time()
        try:
            return orig(*a, **k)
        finally:
            W[key] += time.perf_counter() - w
            dc = time.process_time() - c
            C[key] += dc
            MX[key] = max(MX[key], dc)
            N[key] += 1
            if top:
                _inside[0] -= 1

    setattr(owner, name, f)


def main(n_elements=2000, seed=7):
    from telcoanalytics.anomaly import network, policy
    from telcoanalytics.pipeline import components as Cm
    from telcoanalytics.pipeline import replay as R

    A = Cm.AnomalyComponent
    for m in ("update", "advance", "finish"):
        _wrap(A, m, f"call {m}", top=True)
    _wrap(A, "_write", "  advance: findings log (_write)")
    _wrap(network.NetworkAnomalyDetector, "_update_events", "  update: detector (_update_events)")
    _wrap(network.NetworkAnomalyDetector, "_classify", "    _classify")
    _wrap(network.NetworkAnomalyDetector, "check_silence", "  advance: check_silence")
    _wrap(policy.PagingPolicy, "page", "  advance: policy.page")
    _wrap(policy, "relabel_benign", "  advance: relabel_benign")
    from telcoanalytics.anomaly import slots

    _wrap(slots.AnomalyDetector, "_score", "    detector _score (detect_batch)")
    gc.callbacks.append(_gc_cb)
    pipe_box = {}
    from telcoanalytics.pipeline import replay_report as RR

    orig_report = RR.replay_report

    def report(pipe, *a, **k):
        pipe_box["pipe"] = pipe
        return orig_report(pipe, *a, **k)

    RR.replay_report = report
    t0c = time.process_time()
    keep = os.environ.get("PROFILE_OUT")  # keep the replay's outputs in this folder
    names = os.environ.get("PROFILE_COMPONENTS")  # e.g. "anomaly alerts": only those (less memory)
    only = {"components": names.split()} if names else {}
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or tmp
        R.run_replay(
            {"elements": n_elements, "seed": seed, "checkpoints": False, "out": out, **only},
            say=lambda m: None,
            progress=None,
        )
    total_c = time.process_time() - t0c
    pipe = pipe_box["pipe"]
    print(f"replay {n_elements:,} elements seed {seed}: CPU {total_c:.1f} s, load {os.getloadavg()}")
    print("pipeline seconds (wall): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(pipe.seconds.items())))
    for k in sorted(W):
        print(f"{k:<44} wall {W[k]:7.3f}  cpu {C[k]:7.3f}  calls {N[k]:>7,}  longest cpu {MX[k]:.3f}")
    for k in sorted(GC):
        print(f"gc {k:<40} {GC[k]:7.3f}")
    print("gc passes: " + ", ".join(f"{k} {v}" for k, v in sorted(GCN.items())))
    print(f"gc thresholds {gc.get_threshold()}, tracked objects at the end {len(gc.get_objects()):,}")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:3]))
