"""A/B of the replay's checkpoint writers in one process, alternated: foreground (the state copied by
``to_state``, encoded, written and fsynced while the run waits) against a forked writer (the run
forks and goes on; the child writes the state as it was at the fork).

Run: ``PYTHONPATH=. python benchmarks/bench_checkpoint_fork.py --elements 2000 --rounds 2``.

Per run it prints the parent's CPU (user, system) and minor page faults, the writers' CPU (reaped
children), the wall time, the seconds the run waited for checkpoints (the report's checkpoint
line), the seconds spent in the components' ``to_state`` copies in this process (the foreground
writer's share that a copy-free ``to_state`` would save) and the peak resident memory of this
process (``VmHWM``, reset before each run). Outputs of the two writers are compared byte for byte
(the report without timings, the finding files, the final state's entries written with
``--checkpoint``); ``--modes none`` adds a run without periodic checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path


def _hwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def _reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # pragma: no cover - not Linux
        pass


def one_run(mode, elements: int, out: Path, extra: dict) -> dict:
    from telcoanalytics.pipeline import checkpoint as ck
    from telcoanalytics.pipeline import run as run_module
    from telcoanalytics.pipeline.replay import run_replay

    to_state = {"s": 0.0, "cpu": 0.0}
    real = ck.pipeline_entries

    def timed(pipe):
        t, c = time.perf_counter(), time.process_time()
        try:
            return real(pipe)
        finally:
            to_state["s"] += time.perf_counter() - t
            to_state["cpu"] += time.process_time() - c

    ck.pipeline_entries = timed
    run_module.CHECKPOINT_WRITER = False if mode == "none" else mode
    lines = []
    _reset_hwm()
    s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        settings = dict({"elements": elements, "out": str(out), "checkpoints": mode != "none"}, **extra)
        rc = run_replay(settings, checkpoint=out / "final.npz", say=lines.append)
    finally:
        ck.pipeline_entries = real
    wall = time.perf_counter() - t0
    s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in lines if x.startswith("== time:"))
    m = re.search(r"(\d+) checkpoints \(([\d.]+) s in this process", line)
    return {
        "mode": str(mode),
        "rc": rc,
        "wall_s": wall,
        "user_s": s1.ru_utime - s0.ru_utime,
        "sys_s": s1.ru_stime - s0.ru_stime,
        "minflt": s1.ru_minflt - s0.ru_minflt,
        "child_cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
        "n_ck": int(m.group(1)) if m else 0,
        "wait_s": float(m.group(2)) if m else 0.0,
        "to_state_s": to_state["s"],
        "to_state_cpu_s": to_state["cpu"],
        "hwm_mib": _hwm_mib(),
        "line": line,
        "writer_mib": float(w.group(1).replace(",", "")) if (w := re.search(r"up to ([\d,]+) MiB", line)) else 0.0,
    }


def _untimed(v):
    """A JSON value without its ``seconds`` members (timings differ between runs)."""
    if isinstance(v, dict):
        return {k: _untimed(w) for k, w in v.items() if k != "seconds"}
    if isinstance(v, list):
        return [_untimed(w) for w in v]
    return v


def _key(name: str, a):
    """What must be equal of a state entry: dtype, shape and bytes; JSON text without timings."""
    if name.endswith("::__json__"):
        v = json.loads(bytes(a))
        return _untimed(json.loads(v) if isinstance(v, str) and v.startswith("{") else v)
    return a.dtype.str, a.shape, a.tobytes()


def _compare(a: Path, b: Path) -> str:
    """Which outputs of two runs differ: report (without timings), alerts, quarantine, and the final
    checkpoint's entries (names of those that differ)."""
    from telcoanalytics.pipeline.checkpoint import read_checkpoint

    def report(p):
        text = re.sub(r"\d+(\.\d+)? (s|ms|M rows/s|MiB)\b", "X", (p / "report.txt").read_text())
        return [x for x in text.splitlines() if not x.startswith("== time:")]

    names = ("alerts.jsonl", "quarantine.jsonl", "incidents.jsonl", "sla_events.jsonl", "anomalies.jsonl")
    diff = [n for n in names if (a / n).read_bytes() != (b / n).read_bytes()]
    diff += ["report.txt"] if report(a) != report(b) else []
    x, y = read_checkpoint(a / "final.npz")[0], read_checkpoint(b / "final.npz")[0]
    diff += sorted(set(x) ^ set(y))
    diff += [f"final state {k}" for k in sorted(set(x) & set(y)) if _key(k, x[k]) != _key(k, y[k])]
    return "identical" if not diff else "differ: " + ", ".join(diff)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--modes", nargs="+", default=["foreground", "fork"], help="foreground, fork, thread, none")
    args = ap.parse_args(argv)
    from telcoanalytics._malloc import tune_malloc

    tune_malloc()
    extra = {"days": args.days}
    with tempfile.TemporaryDirectory(prefix="bench_ckfork_") as tmp:
        rows, outs = [], {}
        for r in range(args.rounds):
            for mode in args.modes if r % 2 == 0 else args.modes[::-1]:
                out = Path(tmp) / f"{mode}_{r}"
                res = one_run({"foreground": False}.get(mode, mode), args.elements, out, extra)
                res["load"] = os.getloadavg()[0]
                rows.append(res)
                outs.setdefault(mode, out)
                print(
                    f"{mode:>10} round {r}: wall {res['wall_s']:6.1f} s, user {res['user_s']:6.1f} s, "
                    f"sys {res['sys_s']:5.1f} s, minflt {res['minflt']:>9,}, writers' cpu {res['child_cpu_s']:5.1f} s, "
                    f"{res['n_ck']} checkpoints waited {res['wait_s']:5.1f} s (to_state here {res['to_state_s']:4.1f} s, cpu {res['to_state_cpu_s']:4.1f} s), "
                    f"peak {res['hwm_mib']:,.0f} MiB (+ writer {res['writer_mib']:,.0f} MiB), load {res['load']:.1f}",
                    flush=True,
                )
        modes = list(outs)
        for i, m1 in enumerate(modes):
            for m2 in modes[i + 1 :]:
                print(f"outputs of {m1} and {m2} (report, finding files, final state):", _compare(outs[m1], outs[m2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
