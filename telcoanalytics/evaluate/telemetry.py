"""Router telemetry evaluation: the product detector with its 10-s defaults and no history over
every scenario of ``shared/data/cisco``, scored by the shared ``event_score.py`` (events found
within 5 minutes, delay, false alarms per hour)."""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from telcoanalytics.anomaly.config import DetectorConfig
from telcoanalytics.anomaly.telemetry import read_scenario, telemetry_detector

REPORTED = ("fault", "crowd", "surge", "inhibited")
"""Classifications that count as alarms (changes and silences are not alarms here)."""


def load_event_scorer(shared: Path):
    """Import ``shared/tools/event_score.py`` without copying it."""
    p = Path(shared) / "tools" / "event_score.py"
    if not p.exists():
        raise FileNotFoundError(f"event scorer not found at {p}; set TELCO_SHARED to the shared/ folder")
    spec = importlib.util.spec_from_file_location("event_score", p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("event_score", mod)
    spec.loader.exec_module(mod)
    return mod


def scenario_alarms(
    folder, config: DetectorConfig | None = None, step_ms: int = 10_000, resolutions: bool = False
) -> list[dict]:
    """Alarms (episode openings) of one scenario, replayed causally in ``step_ms`` batches; with
    ``resolutions`` also the episode closings (an operator's "resolved" notice), timed at the
    point where the episode closes (the close row's ``t_ms``)."""
    ts, el, me, va = read_scenario(folder)
    net = telemetry_detector(el, config)
    eidx = net.element_index(el)
    midx = net.metric_index(me)
    names = net.topology.names["element"]
    out = []
    cuts = np.searchsorted(ts, np.arange(ts[0], ts[-1] + step_ms, step_ms), side="left")[1:]
    lo = 0
    for hi in list(cuts) + [len(ts)]:
        if hi <= lo:
            continue
        rows = net.update(ts[lo:hi], eidx[lo:hi], midx[lo:hi], va[lo:hi])
        keep = np.isin(rows["classification"], REPORTED) & ((rows["end_ms"] < 0) | resolutions)
        for r in rows[keep]:
            el_name = str(names[int(r["slot"]) // net.n_metrics])
            dev, itf = el_name.split("|", 1)
            out.append(
                {
                    "timestamp": (int(r["start_ms"]) if r["end_ms"] < 0 else int(r["t_ms"])) / 1000.0,
                    "device": dev,
                    "interface": "" if itf == "-" else itf,
                    "series": f"{el_name}|{r['metric']}",
                    "classification": str(r["classification"]),
                    "score": float(r["peak_score"]),
                }
            )
        lo = hi
    return out


def evaluate_telemetry(
    data_dir, shared, config: DetectorConfig | None = None, threshold: float | None = None, resolutions: bool = False
) -> dict:
    """Score every scenario of ``data_dir``; ``threshold`` overrides the configured one;
    ``resolutions`` counts episode closings as notices too (see :func:`scenario_alarms`).

    Returns ``{"scenarios": [...], "events": n, "detected": k, "recall": k / n, "median_delay_s",
    "false_alarms", "hours", "routers", "fa_per_hour_per_router"}`` (false episodes per hour per
    recorded router, averaged over scenarios weighted by their hours).
    """
    es = load_event_scorer(Path(shared))
    cfg = config if config is not None else DetectorConfig.for_interval(10)
    if threshold is not None:
        cfg = replace(cfg, threshold=float(threshold))
    res = []
    delays = []
    fa_rate_sum = hours_sum = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for sc in sorted(os.listdir(data_dir)):
            folder = Path(data_dir) / sc
            if not (folder / "events.csv").exists():
                continue
            alarms = scenario_alarms(folder, cfg, resolutions=resolutions)
            path = Path(tmp) / f"{sc}.csv"
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, ["timestamp", "device", "interface", "series"], extrasaction="ignore")
                w.writeheader()
                w.writerows(alarms)
            s = es.score(str(folder), str(path))
            n_routers = sum(1 for d in os.listdir(folder) if (folder / d).is_dir())
            s["routers"] = n_routers
            res.append(s)
            delays += [e["delay_s"] for e in s["events"] if e["scored"] and e["detected"]]
            fa_rate_sum += s["false_alarms"] / n_routers
            hours_sum += s["hours_outside"]
    n_ev = sum(s["n_scored"] for s in res)
    n_det = sum(s["n_detected"] for s in res)
    return {
        "scenarios": res,
        "events": n_ev,
        "detected": n_det,
        "recall": n_det / n_ev if n_ev else float("nan"),
        "median_delay_s": float(np.median(delays)) if delays else float("nan"),
        "false_alarms": sum(s["false_alarms"] for s in res),
        "hours": hours_sum,
        "fa_per_hour_per_router": fa_rate_sum / hours_sum if hours_sum else float("nan"),
        "threshold": cfg.threshold,
        "resolutions": resolutions,
    }


def telemetry_table(res: dict) -> str:
    """Text table of :func:`evaluate_telemetry` results."""
    lines = [f"{'scenario':<30}{'events':>8}{'found':>7}{'median delay':>14}{'false':>7}{'per h/router':>14}"]
    for s in res["scenarios"]:
        rate = s["false_alarms"] / s["routers"] / s["hours_outside"] if s["hours_outside"] else float("nan")
        md = s["median_delay_s"]
        lines.append(
            f"{s['scenario']:<30}{s['n_scored']:>8}{s['n_detected']:>7}"
            f"{(f'{md:.0f} s' if md is not None else '-'):>14}{s['false_alarms']:>7}{rate:>14.2f}"
        )
    lines.append(
        f"all: {res['detected']}/{res['events']} events within 5 min ({100 * res['recall']:.0f} %), median delay "
        f"{res['median_delay_s']:.0f} s, {res['false_alarms']} false alarms = "
        f"{res['fa_per_hour_per_router']:.2f} per hour per router (threshold {res['threshold']:g}"
        + (", episode closings counted as notices)" if res["resolutions"] else ", alarm starts only)")
    )
    return "\n".join(lines)
