"""NAB evaluation of the product detector: the same :class:`~telcoanalytics.anomaly.slots.AnomalyDetector`
with the same defaults as the pipeline (``DetectorConfig.for_interval`` of each file's interval).

A detection is an episode opening (what the product reports); the NAB results file holds 1.0 at
those rows and 0 elsewhere, scored at the fixed threshold 0.5 by the shared scorer
(``shared/tools/nab_score.py``, imported, not copied). The free choices, the score threshold
``S``, the re-fire window and the score gate (``gate_g``, ``gate_halflife_s``), are chosen together
by leave-one-folder-out (:func:`nab_lofo`): on three folders, scored on the fourth.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from telcoanalytics.anomaly.config import DetectorConfig
from telcoanalytics.anomaly.slots import AnomalyDetector

NAB_PREFIX = "telco"
THRESHOLD_GRID = (2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)
"""Score thresholds (``-log10`` tail probability) among which :func:`nab_lofo` chooses."""
REFIRE_GRID = (4 * 3600.0, 86400.0)
"""Re-fire suppression windows (s) among which :func:`nab_lofo` chooses (the other default it
selects on the training folders)."""
GATE_GRID = ((0.0, 86400.0),) + tuple((g, hl * 86400.0) for hl in (0.5, 1.0, 2.0, 3.0) for g in (2.0, 3.0, 4.0))
"""Score gates ``(gate_g, gate_halflife_s)`` among which :func:`nab_lofo` chooses (``gate_g = 0``:
no gate); the grid of the offline study ``scripts/nab_gate_study.py``."""
_FIXED = {"standard": 0.5, "reward_low_FP_rate": 0.5, "reward_low_FN_rate": 0.5}


def load_nab_scorer(path=None, shared=None):
    """Import the shared NAB scorer module (``shared/tools/nab_score.py``) without copying it."""
    p = Path(path) if path is not None else Path(shared) / "tools" / "nab_score.py"
    if not p.exists():
        raise FileNotFoundError(f"NAB scorer not found at {p}; set TELCO_SHARED to the shared/ folder")
    spec = importlib.util.spec_from_file_location("nab_score", p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("nab_score", mod)  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


def read_nab_csv(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Timestamps (as in the file), int64 ms UTC and float values of one NAB data file."""
    stamps, vals = [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        if header[:2] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected columns timestamp,value, got {header}")
        for lineno, row in enumerate(reader, start=2):
            if row:
                try:
                    vals.append(float(row[1]))
                except (IndexError, ValueError) as e:
                    raise ValueError(f"{path}, line {lineno}: value {row[1:2]} is not a number") from e
                stamps.append(row[0].strip())
    ts = np.array([s.replace(" ", "T") for s in stamps], dtype="datetime64[ms]").astype(np.int64)
    return stamps, ts, np.array(vals, dtype=np.float64)


def series_interval_s(ts_ms: np.ndarray) -> float:
    """The series' sampling interval (median gap), clipped to the supported 1 s .. 1 h."""
    gap = float(np.median(np.diff(ts_ms))) / 1000.0 if len(ts_ms) > 1 else 300.0
    return min(max(gap, 1.0), 3600.0)


def detections(ts_ms, values, threshold: float | None = None, **overrides) -> np.ndarray:
    """1.0 at the rows where the product detector (defaults for the series' interval) opens an
    episode, 0 elsewhere."""
    cfg = DetectorConfig.for_interval(series_interval_s(ts_ms), **overrides)
    if threshold is not None:
        cfg = replace(cfg, threshold=float(threshold))
    det = AnomalyDetector(1, cfg)
    rows = det.update(ts_ms, np.zeros(len(ts_ms), dtype=np.int64), values)
    out = np.zeros(len(ts_ms))
    op = rows[(rows["end_ms"] < 0) & (rows["classification"] == "fault")]
    out[np.searchsorted(ts_ms, op["t_ms"])] = 1.0
    return out


def parse_overrides(items) -> dict:
    """Detector settings from ``NAME=VALUE`` strings (the command line's ``--set``), typed as the
    :class:`DetectorConfig` field they name.

    >>> parse_overrides(["season_snr=true", "recur_tol=0.3"])
    {'season_snr': True, 'recur_tol': 0.3}
    """
    kinds = {f.name: f.type for f in fields(DetectorConfig)}
    out: dict = {}
    for item in items or ():
        name, sep, text = str(item).partition("=")
        name, text = name.strip(), text.strip()
        if not sep or name not in kinds:
            raise ValueError(
                f"detector setting {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(kinds))}"
            )
        kind = str(kinds[name])
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"detector setting {name}: {text!r} is not a boolean (use true or false)")
            out[name] = text.lower() in ("true", "1")
        elif kind == "str":
            out[name] = text
        else:
            try:
                out[name] = int(text) if kind == "int" else float(text)
            except ValueError as e:
                raise ValueError(f"detector setting {name}: {text!r} is not a {kind}") from e
    return out


class NabCorpus:
    """The NAB files in memory, scored with the shared scorer without writing result files.

    ``overrides`` (a dict of :class:`DetectorConfig` fields) apply to every file's defaults, so a
    detector variant is judged by the same leave-one-folder-out as the defaults (e.g.
    ``{"season_snr": True}``); the threshold and re-fire window stay the ones being chosen.
    """

    def __init__(self, data_dir, shared, overrides: dict | None = None):
        self.overrides = dict(overrides or {})
        allowed = {f.name for f in fields(DetectorConfig)} - set(CHOSEN)
        bad = sorted(set(self.overrides) - allowed)
        if bad:
            raise ValueError(
                f"overrides {bad} are not DetectorConfig fields the corpus may fix ({', '.join(CHOSEN)} are "
                "chosen by nab_lofo; pass them to score())"
            )
        self.ns = load_nab_scorer(shared=shared)
        data_dir = Path(data_dir)
        self.windows = self.ns.load_windows(str(data_dir / "windows.json"))
        self.names = sorted(self.windows)
        self.data = {}
        for name in self.names:
            stamps, ts, vals = read_nab_csv(data_dir / name)
            self.data[name] = (self.ns.parse_times(stamps), ts, vals)
        self._cache: dict = {}

    def folders(self) -> list[str]:
        return sorted({os.path.dirname(n) for n in self.names})

    def file_rows(self, names, threshold: float, *chosen) -> list:
        out, wid = [], 0
        for name in names:
            key = (name, threshold, *chosen)
            if key not in self._cache:
                _, ts, vals = self.data[name]
                kw = dict(self.overrides)
                kw.update({k: float(v) for k, v in zip(CHOSEN[1:], chosen) if v is not None})
                self._cache[key] = detections(ts, vals, threshold, **kw)
            out.append(self.ns.prepare_file(name, self.data[name][0], self._cache[key], self.windows[name], wid))
            wid += len(self.windows[name])
        return out

    def score(self, names, threshold: float, *chosen) -> dict:
        """NAB result (``score_corpus`` dict) of ``names`` at the detector threshold ``threshold``
        and, in the order of :data:`CHOSEN`, the re-fire window, gate and gate half-life that
        follow it (missing or None: the product default)."""
        names = list(names)
        return self.ns.score_corpus(
            self.file_rows(names, threshold, *chosen), sum(len(self.windows[n]) for n in names), dict(_FIXED)
        )


CHOSEN = ("threshold", "refire_s", "gate_g", "gate_halflife_s")
"""The settings :func:`nab_lofo` chooses on the training folders, in the order of a grid entry."""


def _grid(grid, refire_grid, gate_grid=((None, None),)) -> list:
    return [(s, r, *g) for g in gate_grid for r in refire_grid for s in grid]


def nab_lofo(corpus: NabCorpus, grid=THRESHOLD_GRID, refire_grid=REFIRE_GRID, gate_grid=GATE_GRID) -> dict:
    """Leave-one-folder-out: per profile, the (threshold, re-fire window, gate, gate half-life)
    with the best raw score on the other folders scores the held-out folder. Returns per-fold,
    mean and pooled scores and the number of settings compared (``len(grid)``)."""
    folds = []
    combos = _grid(grid, refire_grid, gate_grid)
    for held in corpus.folders():
        train = [n for n in corpus.names if os.path.dirname(n) != held]
        test = [n for n in corpus.names if os.path.dirname(n) == held]
        chosen, scores, parts = {}, {}, {}
        train_res = [corpus.score(train, *c)["profiles"] for c in combos]
        for prof in _FIXED:
            raws = [r[prof]["raw"] for r in train_res]
            chosen[prof] = combos[int(np.argmax(raws))]
            v = corpus.score(test, *chosen[prof])["profiles"][prof]
            scores[prof] = v["score"]
            parts[prof] = (v["raw"], v["null_raw"], v["perfect_raw"])
        folds.append({"folder": held, "files": len(test), "threshold": chosen, "score": scores, "parts": parts})
    # a folder without windows has no normalised score (perfect == null): the mean is over the
    # others, and the pooled figure sums raw, null and perfect over all folds (NAB's own sums)
    mean = {p: float(np.nanmean([f["score"][p] for f in folds])) for p in _FIXED}
    pooled = {}
    for p in _FIXED:
        raw, null, perf = (sum(f["parts"][p][k] for f in folds) for k in range(3))
        pooled[p] = 100.0 * (raw - null) / (perf - null)
    return {"folds": folds, "mean": mean, "pooled": pooled, "grid": combos, "overrides": dict(corpus.overrides)}


def choose_threshold(corpus: NabCorpus, grid=THRESHOLD_GRID, profile: str = "standard") -> float:
    """The threshold with the best raw ``profile`` score on the whole corpus at the product's other
    defaults (for threshold transfer)."""
    raws = [corpus.score(corpus.names, s)["profiles"][profile]["raw"] for s in grid]
    return float(grid[int(np.argmax(raws))])


def choose_defaults(corpus: NabCorpus, grid=THRESHOLD_GRID, refire_grid=REFIRE_GRID, gate_grid=GATE_GRID) -> tuple:
    """The (threshold, re-fire window, gate, gate half-life) with the best raw standard score on
    all files: how the product defaults were chosen (their held-out estimate is :func:`nab_lofo`)."""
    combos = _grid(grid, refire_grid, gate_grid)
    raws = [corpus.score(corpus.names, *c)["profiles"]["standard"]["raw"] for c in combos]
    return combos[int(np.argmax(raws))]


def lofo_table(res: dict) -> str:
    fixed = ", ".join(f"{k}={v}" for k, v in res.get("overrides", {}).items())
    lines = [
        "NAB leave-one-folder-out ("
        + (f"{len(res['grid'])} settings of " if "grid" in res else "")
        + "threshold, re-fire window and score gate chosen on the other folders, product defaults otherwise"
        + (f"; fixed for every file: {fixed})" if fixed else ")")
    ]
    for f in res["folds"]:
        lines.append(
            f"  {f['folder']:<24}{f['files']:>3} files  "
            + "  ".join(
                f"{p}: {f['score'][p]:6.1f} (raw {f['parts'][p][0]:.2f}, S={f['threshold'][p][0]:g}, "
                f"refire {f['threshold'][p][1] / 3600:g} h{_gate_text(f['threshold'][p])})"
                for p in f["score"]
            )
        )
    lines.append("  mean of scorable folds: " + ", ".join(f"{p} {v:.1f}" for p, v in res["mean"].items()))
    lines.append("  pooled over all folds:  " + ", ".join(f"{p} {v:.1f}" for p, v in res["pooled"].items()))
    return "\n".join(lines)


def _gate_text(combo) -> str:
    g = combo[2] if len(combo) > 2 else None
    if g is None:
        return ""
    return ", no gate" if g == 0 else f", gate {g:g} hl {combo[3] / 86400:g} d"
