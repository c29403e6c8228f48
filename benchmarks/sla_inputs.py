"""Record the SLA component's inputs in a replay once, then replay them into a fresh monitor:
CPU seconds of the monitor alone (no generation, ingest or other components) and a fingerprint of
its work (every lifecycle's conditions at every tick, the final state, the events) to compare two
versions of the code exactly.

    python benchmarks/sla_inputs.py record --elements 5000 sla5000.pkl   # ~400 MB at 5,000 elements
    python benchmarks/sla_inputs.py play sla5000.pkl --fingerprint a.json
    PYTHONPATH=/path/to/other/checkout python benchmarks/sla_inputs.py play sla5000.pkl --fingerprint b.json
    python benchmarks/sla_inputs.py compare a.json b.json

Compare versions in separate processes run back to back, alternating: feeding two monitors in one
process favours the second (it finds each batch in cache; ~16% at 2,000 elements).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time


def record(elements: int, path: str):
    from telcoanalytics.pipeline import components as C
    from telcoanalytics.pipeline.replay import run_replay

    f = open(path, "wb")  # noqa: SIM115 - closed after the replay
    init = C.SlaComponent.__init__

    def recorded_init(self, topology, rules=None, _mon=None, **kw):
        pickle.dump(("init", topology, rules, kw), f, protocol=5)
        init(self, topology, rules, _mon, **kw)

    C.SlaComponent.__init__ = recorded_init
    for meth in ("update", "advance", "topology_changed"):
        orig = getattr(C.SlaComponent, meth)

        def wrapped(self, *a, _orig=orig, _meth=meth):
            if _meth != "update":
                pickle.dump((_meth, *a), f, protocol=5)
            elif a[0].source in ("cdr", "equip", "qos"):
                pickle.dump(("update", a[0].source, a[0].rows, a[0].element_index), f, protocol=5)
            return _orig(self, *a)

        setattr(C.SlaComponent, meth, wrapped)
    run_replay({"elements": elements, "out": path + ".out", "components": ["sla"], "checkpoints": False}, say=print)
    f.close()


def play(path: str, fingerprint: str | None):
    import numpy as np

    import telcoanalytics
    from telcoanalytics.pipeline.components import SlaComponent
    from telcoanalytics.sla import monitor as M

    ticks = []
    if fingerprint:
        step = M.SlaMonitor._evaluate_tick

        def hashed(self, tick, cached=None):
            out = step(self, tick, cached)
            b = self._bank
            ticks.append((tick, hashlib.sha1(b.cur_codes.tobytes() + b.cur_values.tobytes()).hexdigest()))
            return out

        M.SlaMonitor._evaluate_tick = hashed
    cpu = {"update": 0.0, "advance": 0.0, "topology_changed": 0.0}
    mon, events = None, []
    with open(path, "rb") as f:
        while True:
            try:
                rec = pickle.load(f)
            except EOFError:
                break
            if rec[0] == "init":
                mon = SlaComponent(rec[1], rec[2], **rec[3]).mon
                continue
            t = time.process_time()
            if rec[0] == "update":
                mon.update(rec[1], rec[2], rec[3])
            elif rec[0] == "advance":
                events += mon.advance(int(rec[1]))
            else:
                events += mon.set_topology(rec[1], rec[2])
            cpu[rec[0]] += time.process_time() - t
    print(
        f"{telcoanalytics.__file__}: {len(events)} events, CPU s "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        + f", total {sum(cpu.values()):.2f}"
    )
    if fingerprint:
        state = {
            k: hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest() if isinstance(v, np.ndarray) else repr(v)
            for k, v in mon.to_state().items()
        }
        with open(fingerprint, "w") as g:
            json.dump({"ticks": ticks, "state": state, "events": [e.to_dict() for e in events]}, g)


def compare(a: str, b: str) -> int:
    x, y = json.load(open(a)), json.load(open(b))
    same = True
    for k in x:
        print(f"{k}: {'equal' if x[k] == y.get(k) else 'DIFFERENT'}")
        same &= x[k] == y.get(k)
    return 0 if same else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--elements", type=int, default=5000)
    r.add_argument("path")
    q = sub.add_parser("play")
    q.add_argument("path")
    q.add_argument("--fingerprint")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args(argv)
    if args.cmd == "record":
        record(args.elements, args.path)
    elif args.cmd == "play":
        play(args.path, args.fingerprint)
    else:
        return compare(args.a, args.b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
