"""Slow, obvious references for windows, decay and sketches, recomputed from raw events."""

from __future__ import annotations

import math

import numpy as np


def ref_status(ts, record_id, allowed_lateness_ms, value=None):
    """Per-event outcome by a plain loop: 0 accepted, 1 late, 2 duplicate, 3 invalid value."""
    st = np.zeros(len(ts), dtype=np.int8)
    max_ts = None
    seen = {}
    for i in range(len(ts)):
        if value is not None and not math.isfinite(value[i]):
            st[i] = 3
            continue
        t = int(ts[i])
        if max_ts is not None and t < max_ts - allowed_lateness_ms:
            st[i] = 1
            continue
        if record_id is not None:
            # ids are remembered forever here; the kernel forgets ids behind the watermark,
            # which changes nothing when a repeated record carries its original time (it is late)
            k = int(record_id[i])
            if k in seen:
                st[i] = 2
                continue
            seen[k] = t
        max_ts = t if max_ts is None else max(max_ts, t)
    return st


def ref_window_stats(ts, slot, value, n_slots, width_ms, n_buckets, t_query_ms, weights, max_ts=None):
    """Weighted window statistics per slot from raw (accepted) events.

    Every event in bucket ``b = ts // width_ms`` gets weight ``weights[bq - b]`` for
    ``bq = t_query_ms // width_ms``, ``0 <= bq - b < len(weights)``; buckets older than the ring
    span relative to ``max_ts`` are invisible. Two-pass variance with ``math.fsum``.
    """
    ts = np.asarray(ts, dtype=np.int64)
    bq = t_query_ms // width_ms
    b = ts // width_ms
    age = bq - b
    n_span = len(weights)
    visible = (age >= 0) & (age < n_span)
    if max_ts is not None:
        visible &= b > (max_ts // width_ms) - n_buckets
    exposure_ms = sum(weights[k] * (width_ms if k else (t_query_ms - bq * width_ms + 1)) for k in range(n_span))
    out = {
        k: np.zeros(n_slots) for k in ("count", "sum", "mean", "var", "std", "min", "max", "rate_per_s", "sum_per_s")
    }
    for s in range(n_slots):
        m = visible & (slot == s)
        w = np.asarray(weights)[age[m]] if m.any() else np.zeros(0)
        x = value[m]
        keep = w > 0
        w, x = w[keep], x[keep]
        W = math.fsum(w)
        if W <= 0:
            out["count"][s] = out["sum"][s] = out["rate_per_s"][s] = out["sum_per_s"][s] = 0.0
            for k in ("mean", "var", "std", "min", "max"):
                out[k][s] = np.nan
            continue
        S = math.fsum(w * x)
        mean = S / W
        var = math.fsum(w * (x - mean) ** 2) / W
        out["count"][s], out["sum"][s], out["mean"][s] = W, S, mean
        out["var"][s], out["std"][s] = var, math.sqrt(var)
        out["min"][s], out["max"][s] = x.min(), x.max()
        out["rate_per_s"][s] = W * 1000.0 / exposure_ms
        out["sum_per_s"][s] = S * 1000.0 / exposure_ms
    return out


def ref_ew(ts, slot, value, n_slots, half_lives_s, t_query_ms):
    """Closed-form EW statistics: weight ``2**(-(T - t)/h)`` relative to the query time."""
    hl = np.asarray(half_lives_s, dtype=np.float64)
    out = {k: np.zeros((n_slots, len(hl))) for k in ("weight", "sum", "mean", "var")}
    for s in range(n_slots):
        m = slot == s
        t = ts[m].astype(np.float64)
        x = value[m]
        for h in range(len(hl)):
            if not m.any():
                out["weight"][s, h] = out["sum"][s, h] = 0.0
                out["mean"][s, h] = out["var"][s, h] = np.nan
                continue
            if math.isinf(hl[h]):
                w = np.ones(len(t))
            else:
                w = np.exp2(-(t_query_ms - t) / (hl[h] * 1000.0))
            W = math.fsum(w)
            mean = math.fsum(w * x) / W
            out["weight"][s, h] = W
            out["sum"][s, h] = W * mean
            out["mean"][s, h] = mean
            out["var"][s, h] = math.fsum(w * (x - mean) ** 2) / W
    return out


def ref_lower_quantile(x, q):
    """NumPy's ``method="lower"`` order statistic, the quantity the sketch approximates."""
    return np.quantile(np.asarray(x, dtype=np.float64), q, method="lower")
