"""A/B and profile helper for the replay's anomaly component (the calls recorded as in
``bench_anomaly_component.py``, kept in a pickle so two code versions replay the very same calls).

``python benchmarks/bench_anomaly_ab.py record FILE [ELEMENTS]`` records one replay's calls;
``python benchmarks/bench_anomaly_ab.py run FILE [--rounds K] [--profile] [--log]`` replays them on a
fresh component restored from the learned state (``--log``: streaming its findings to an
``anomalies.jsonl`` as the replay's component does; the file's bytes join the rows digest) and prints CPU time per call kind, the digest of
every call's outputs and of the final state (equal digests: bit-identical outputs and state), and
with ``--profile`` the cProfile table. Run with ``PYTHONPATH`` pointing at the code to measure.
"""

import hashlib
import os
import pickle
import sys
import time

import numpy as np


def _record(path, n_elements):
    import tempfile

    from telcoanalytics.pipeline import components as C
    from telcoanalytics.pipeline.contract import RoutedBatch
    from telcoanalytics.pipeline.replay import run_replay

    calls, rec = [], {}
    cls = C.AnomalyComponent
    orig = cls.update, cls.advance, cls.topology_changed, cls.learn

    def update(self, batch):
        if batch.source in ("equip", "qos"):
            calls.append(
                ("u", RoutedBatch(batch.source, batch.rows.copy(), batch.element_index.copy(), batch.partition))
            )
        return orig[0](self, batch)

    def advance(self, wm):
        calls.append(("a", int(wm)))
        return orig[1](self, wm)

    def topology_changed(self, topology, changes):
        calls.append(("t", topology))
        return orig[2](self, topology, changes)

    def learn(self, day, until_ms):
        orig[3](self, day, until_ms)
        rec["state"], rec["topology"] = self.to_state(), self.topology

    cls.update, cls.advance, cls.topology_changed, cls.learn = update, advance, topology_changed, learn
    try:
        with tempfile.TemporaryDirectory() as out:
            settings = {"elements": n_elements, "components": ["anomaly"], "checkpoints": False, "out": out}
            run_replay(settings, say=lambda m: None, progress=None)
    finally:
        cls.update, cls.advance, cls.topology_changed, cls.learn = orig
    with open(path, "wb") as f:
        pickle.dump((rec["state"], rec["topology"], calls), f, protocol=5)


def _h(obj, h):
    if isinstance(obj, np.ndarray):
        h.update(str(obj.dtype).encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _h(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update(b"[%d" % len(obj))
        for x in obj:
            _h(x, h)
    else:
        h.update(repr(obj).encode())


def _fresh(state, topology, log_dir):
    """A component restored from the learned state, streaming its findings to ``anomalies.jsonl``
    in ``log_dir`` as the replay's does (None: findings kept in memory)."""
    from telcoanalytics.pipeline import components as C
    from telcoanalytics.pipeline.run import OutputLog

    comp = C.AnomalyComponent.from_state(state, topology)
    if log_dir is not None:
        comp.attach_log(OutputLog(os.path.join(log_dir, "anomalies.jsonl")))
    return comp


def _run(path, rounds, profile, log_dir=None):
    from telcoanalytics.pipeline import components as C

    with open(path, "rb") as f:
        state, topology, calls = pickle.load(f)
    comp = _fresh(state, topology, log_dir)
    for kind, arg in calls[:200]:  # JIT
        comp.update(arg) if kind == "u" else comp.advance(arg) if kind == "a" else comp.topology_changed(arg, [])
    best = None
    for r in range(rounds):
        comp = _fresh(state, topology, log_dir)
        sec = {"u": 0.0, "a": 0.0, "t": 0.0}
        outs = []
        prof = None
        if profile and r == rounds - 1:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        for kind, arg in calls:
            t0 = time.process_time()
            if kind == "u":
                res = comp.update(arg)
            elif kind == "a":
                res = comp.advance(arg)
            else:
                res = comp.topology_changed(arg, [])
            sec[kind] += time.process_time() - t0
            if r == 0:
                outs.append(res)
        if prof is not None:
            prof.disable()
        if r == 0:
            h = hashlib.sha256()
            for res in outs:
                _h([repr(x) for x in res], h)
            hs = hashlib.sha256()
            _h(comp.to_state(), hs)
            hp = hashlib.sha256()
            _h(comp._pending, hp)
            _h(comp._rows, hp)
            n_pages = sum(len(x) for x in outs)
            if log_dir is not None:
                comp._log.close()
                with open(os.path.join(log_dir, "anomalies.jsonl"), "rb") as f:
                    hp.update(f.read())
        tot = sum(sec.values())
        print(
            f"round {r}: total {tot:.3f} s CPU (updates {sec['u']:.3f}, advances {sec['a']:.3f}, topology {sec['t']:.3f})"
            f"  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        best = tot if best is None else min(best, tot)
    print(
        f"digests: outputs {h.hexdigest()[:16]} state {hs.hexdigest()[:16]} rows {hp.hexdigest()[:16]}; pages {n_pages}"
    )
    print(f"best {best:.3f} s; code {C.__file__}")
    if profile:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "record":
        _record(path, int(sys.argv[3]) if len(sys.argv) > 3 else 2000)
    else:
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
        if "--log" in sys.argv:  # findings streamed to a file, as in the replay
            import tempfile

            with tempfile.TemporaryDirectory() as d:
                _run(path, rounds, "--profile" in sys.argv, d)
        else:
            _run(path, rounds, "--profile" in sys.argv)
