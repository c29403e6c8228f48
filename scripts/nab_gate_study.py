"""Study (not a product path): score post-processing of the product detector judged by NAB
leave-one-folder-out, emulated offline on the detector's own episodes and per-event scores.

The gate studied here is now the detector's own (``DetectorConfig.gate_g``, ``gate_halflife_s``,
``gate_cap``; ``kernels.detect``), and ``python -m telcoanalytics.evaluate nab`` chooses it with the
threshold and re-fire window on the training folders of each fold. This script stays as the offline
emulation (the raw runs switch the product gate off) for trying other post-processing rules.

The detector runs once per file and threshold with re-fire suppression off (``refire_s=0``; the
suppression never changes what is learned, so the episodes are the same), then the product's re-fire
rule is replayed in Python: an episode opening within ``refire_s`` of the last close is reported only
once its running peak exceeds the last closed peak (silent episodes extend the window, as in
``kernels.detect._episode``). With no gate this reproduces the product's LOFO figures exactly.

The gate studied: an episode is reported at its first alarm point (not before the re-fire rule would
report it) whose score stands out from the slot's own recent scores,
``(min(score, cap) - m) / max(s, 0.1) > G``, with ``m`` and ``s`` the exponentially weighted mean and
standard deviation of ``min(score, cap)`` over the slot's earlier points (half-life in time). An
episode whose points never pass the gate is silent. Every variant is printed with its LOFO figures;
the number of variants compared makes the best of them optimistic.

Run: ``PYTHONPATH=. python scripts/nab_gate_study.py [--data DIR]`` (about 10 minutes, 2 cores).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from telcoanalytics.anomaly.config import DetectorConfig
from telcoanalytics.anomaly.slots import AnomalyDetector
from telcoanalytics.evaluate import nab
from telcoanalytics.evaluate.evaluate import SHARED

FLOOR_SD = 0.1
"""Lower bound of the gate's score spread (a constant series would otherwise divide by ~0)."""


def kernel_runs(corpus: nab.NabCorpus, thresholds) -> dict:
    """(rows, scores, alarm mask) per (file, threshold), re-fire suppression off, season_snr on."""
    out = {}
    for name in corpus.names:
        _, ts, vals = corpus.data[name]
        for s in thresholds:
            cfg = DetectorConfig.for_interval(
                nab.series_interval_s(ts), season_snr=True, threshold=s, refire_s=0.0, gate_g=0.0
            )
            det = AnomalyDetector(1, cfg)
            rows = det.update(ts, np.zeros(len(ts), dtype=np.int64), vals)
            sc = np.where(np.isfinite(det.last.score), det.last.score, 0.0)
            out[(name, s)] = (rows, sc, (det.last.flags & 1) != 0)
    return out


def gate_z(score: np.ndarray, ts_ms: np.ndarray, halflife_s: float, cap: float) -> np.ndarray:
    """Standing of each point's capped score against the EW mean/sd of the earlier ones."""
    x = np.minimum(score, cap)
    z = np.empty(len(x))
    mu, var, last = 1.0 / np.log(10.0), 1.0 / np.log(10.0) ** 2, None
    for i in range(len(x)):
        z[i] = (x[i] - mu) / max(np.sqrt(var), FLOOR_SD)
        dt = 0.0 if last is None else max(ts_ms[i] - last, 0) / 1000.0
        a = 1.0 - 0.5 ** (max(dt, 1.0) / halflife_s)
        mu += a * (x[i] - mu)
        var += a * ((x[i] - mu) ** 2 - var)
        last = ts_ms[i]
    return z


def _report_point(lo, hi, sc, alarm, ts, closet, closep, refire_ms, gz, g):
    """Index where the episode of points lo..hi is reported (-1: silent) and its peak."""
    run = np.maximum.accumulate(np.where(alarm[lo : hi + 1], sc[lo : hi + 1], 0.0))
    if closet > 0 and ts[lo] - closet < refire_ms:
        k = np.flatnonzero(run > closep)
        rep = lo + int(k[0]) if len(k) else -1
    else:
        rep = lo
    if gz is not None and rep >= 0:
        ok = (np.arange(lo, hi + 1) >= rep) & (gz[lo : hi + 1] > g) & alarm[lo : hi + 1]
        k = np.flatnonzero(ok)
        rep = lo + int(k[0]) if len(k) else -1
    return rep, float(run[-1])


def replay(ts, run, refire_s: float, gz=None, g: float = 0.0) -> np.ndarray:
    """1.0 at the reported episode openings under the product's re-fire rule (and the gate)."""
    rows, sc, alarm = run
    out = np.zeros(len(ts))
    closet, closep, lo = 0, 0.0, None
    refire_ms = refire_s * 1000.0
    for j, r in enumerate(rows):
        if r["classification"] != "fault":
            continue
        i = int(np.searchsorted(ts, r["t_ms"]))
        if r["end_ms"] < 0:
            lo = i
            continue
        if lo is None:
            continue
        # a close followed by a change at the same time is the adaptation of a long episode
        adapt = j + 1 < len(rows) and rows[j + 1]["classification"] == "change" and rows[j + 1]["t_ms"] == r["t_ms"]
        rep, peak = _report_point(lo, i, sc, alarm, ts, closet, closep, refire_ms, gz, g)
        if rep >= 0:
            out[rep] = 1.0
        if not adapt:  # the kernel remembers closes, not adaptations
            closep = peak if rep >= 0 else max(closep, peak)
            closet = int(ts[i])
        lo = None
    if lo is not None:  # open at the end of the file
        rep, _ = _report_point(lo, len(ts) - 1, sc, alarm, ts, closet, closep, refire_ms, gz, g)
        if rep >= 0:
            out[rep] = 1.0
    return out


def lofo(corpus: nab.NabCorpus, detect, combos) -> dict:
    """Per held-out folder and profile: the combo with the best raw score on the other folders,
    scored on the held-out one. ``detect(name, *combo)`` gives a file's detections."""
    cache: dict = {}

    def score(names, combo):
        rows, wid = [], 0
        for n in names:
            if (n, combo) not in cache:
                cache[(n, combo)] = detect(n, *combo)
            rows.append(corpus.ns.prepare_file(n, corpus.data[n][0], cache[(n, combo)], corpus.windows[n], wid))
            wid += len(corpus.windows[n])
        return corpus.ns.score_corpus(rows, sum(len(corpus.windows[n]) for n in names), dict(nab._FIXED))["profiles"]

    out = {}
    for held in corpus.folders():
        train = [n for n in corpus.names if os.path.dirname(n) != held]
        test = [n for n in corpus.names if os.path.dirname(n) == held]
        for p in nab._FIXED:
            raws = [score(train, cb)[p]["raw"] for cb in combos]
            ch = combos[int(np.argmax(raws))]
            out[(held, p)] = (score(test, ch)[p]["score"], ch)
    return out


def line(corpus, tag, res) -> str:
    folds = [f for f in corpus.folders() if not np.isnan(res[(f, "standard")][0])]
    parts = []
    for p in nab._FIXED:
        v = [res[(f, p)][0] for f in folds]
        parts.append(f"{p} {np.mean(v):.1f} (" + " ".join(f"{x:.1f}" for x in v) + ")")
    return f"{tag:<44} " + " | ".join(parts) + f" | standard chose {[res[(f, 'standard')][1] for f in folds]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "nab"))
    args = ap.parse_args()
    corpus = nab.NabCorpus(args.data, SHARED)
    runs = kernel_runs(corpus, nab.THRESHOLD_GRID)
    ts_of = {n: corpus.data[n][1] for n in corpus.names}
    zs: dict = {}

    def detect(name, s, refire_s, halflife_d=None, g=None):
        if g is None:
            return replay(ts_of[name], runs[(name, s)], refire_s)
        key = (name, s, halflife_d)
        if key not in zs:
            zs[key] = gate_z(runs[(name, s)][1], ts_of[name], halflife_d * 86400.0, 50.0)
        return replay(ts_of[name], runs[(name, s)], refire_s, zs[key], g)

    base = [(s, r) for r in nab.REFIRE_GRID for s in nab.THRESHOLD_GRID]
    print(line(corpus, "product rule (no gate)", lofo(corpus, detect, base)), flush=True)
    for hl in (0.5, 1.0, 2.0, 3.0):
        for g in (2.0, 3.0, 4.0):
            combos = [c + (hl, g) for c in base]
            print(line(corpus, f"gate half-life {hl:g} d, G={g:g}", lofo(corpus, detect, combos)), flush=True)
    nested = base + [c + (hl, g) for c in base for hl in (0.5, 1.0, 2.0, 3.0) for g in (2.0, 3.0, 4.0)]
    print(line(corpus, "gate chosen on the training folders", lofo(corpus, detect, nested)), flush=True)


if __name__ == "__main__":
    main()
