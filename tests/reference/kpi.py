"""Slow, obvious references for the KPI kernels: loops over records, plain Python arithmetic."""

import math

import numpy as np

from telcoanalytics.records import CAUSE_CONGESTION, CAUSE_FAILURE, CAUSE_NORMAL, CAUSE_USER, SERVICES

MIN = 60_000


def cdr_sums(cdr, element_ids, t0_ms, t1_ms, service=None):
    """Per element id: dict of counter sums over CDRs with start in [t0, t1)."""
    out = {
        int(e): dict(attempts=0, setup_ok=0, answered=0, drops=0, blocked=0, failures=0, normal=0, user=0, hold_s=0.0)
        for e in element_ids
    }
    for r in cdr:
        if not (t0_ms <= r["start_ms"] < t1_ms) or int(r["element_id"]) not in out:
            continue
        if service is not None and SERVICES[r["service"]] != service:
            continue
        c = int(r["cause"])
        ans = r["answer_ms"] >= 0
        ok_cause = c in CAUSE_NORMAL or c in CAUSE_USER
        d = out[int(r["element_id"])]
        d["attempts"] += 1
        d["setup_ok"] += int(ans or ok_cause)
        d["answered"] += int(ans)
        d["drops"] += int(ans and not ok_cause)
        d["blocked"] += int(c in CAUSE_CONGESTION)
        d["failures"] += int(c in CAUSE_FAILURE)
        d["normal"] += int(c in CAUSE_NORMAL)
        d["user"] += int(c in CAUSE_USER)
        if ans:
            d["hold_s"] += (r["end_ms"] - r["answer_ms"]) / 1000.0
    return out


def call_kpis(s, window_s):
    """KPI values from summed counters (NaN where the denominator is zero)."""

    def ratio(a, b, scale=100.0):
        return scale * a / b if b else float("nan")

    return {
        "call_setup_success_pct": ratio(s["setup_ok"], s["attempts"]),
        "call_drop_pct": ratio(s["drops"], s["answered"]),
        "blocking_pct": ratio(s["blocked"], s["attempts"]),
        "failure_pct": ratio(s["failures"], s["attempts"]),
        "normal_clearing_pct": ratio(s["normal"], s["attempts"]),
        "user_cause_pct": ratio(s["user"], s["attempts"]),
        "asr_pct": ratio(s["answered"], s["attempts"]),
        "mean_holding_s": ratio(s["hold_s"], s["answered"], 1.0),
        "traffic_erl": s["hold_s"] / window_s,
    }


def add_sums(a, b):
    return {k: a[k] + b[k] for k in a}


def equip_kpis(equip, element_ids, t0_ms, t1_ms, pm_interval_s):
    """Per element id: availability, utilisation, throughput, errors per minute."""
    acc = {int(e): dict(period=0.0, up=0.0, cpu=[], prb=[], thr=[], err=0.0) for e in element_ids}
    for r in equip:
        e = int(r["element_id"])
        if not (t0_ms <= r["ts_ms"] < t1_ms) or e not in acc:
            continue
        v = float(r["value"])
        m = int(r["metric_id"])
        a = acc[e]
        if m == 3:
            u = min(v, pm_interval_s)
            a["period"] += pm_interval_s
            a["up"] += pm_interval_s - u
        elif m == 0:
            a["cpu"].append(v)
        elif m == 1:
            a["prb"].append(v)
        elif m == 2:
            a["thr"].append(v)
        elif m == 4:
            a["err"] += v
    window_s = (t1_ms - t0_ms) / 1000.0
    out = {}
    for e, a in acc.items():
        out[e] = {
            "availability_pct": 100.0 * a["up"] / a["period"] if a["period"] else float("nan"),
            "cpu_util_pct": float(np.mean(a["cpu"])) if a["cpu"] else float("nan"),
            "prb_util_pct": float(np.mean(a["prb"])) if a["prb"] else float("nan"),
            "throughput_mbps": float(np.mean(a["thr"])) if a["thr"] else float("nan"),
            "errors_per_min": 60.0 * a["err"] / window_s,
        }
    return out


def hist_bin(x, lo, bpo, n_bins):
    if x < lo:
        return 0
    return min(1 + int(math.floor(math.log2(x / lo) * bpo)), n_bins - 1)


def hist_quantile(values, q, lo=1.0, bpo=3, octaves=11):
    """The documented histogram quantile, computed from a Python list of latencies."""
    n_bins = bpo * octaves + 2
    counts = [0] * n_bins
    for x in values:
        counts[hist_bin(x, lo, bpo, n_bins)] += 1
    total = sum(counts)
    if total == 0:
        return float("nan")
    target = q * total
    cum = 0
    top = lo * 2.0 ** ((n_bins - 2) / bpo)
    for b, c in enumerate(counts):
        if c > 0 and cum + c >= target:
            frac = (target - cum) / c
            if b == 0:
                return lo * frac
            if b == n_bins - 1:
                return top
            return lo * 2.0 ** ((b - 1 + frac) / bpo)
        cum += c
    return top


def emodel_mos(latency_ms, jitter_ms, loss_pct):
    """ITU-T G.107 simplified as documented in kernels.kpi.kpi_emodel_mos."""
    d = latency_ms + 2 * jitter_ms
    i_d = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ie = 95.0 * loss_pct / (loss_pct + 25.1)
    r = 93.2 - i_d - ie
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


def qos_kpis(qos, element_ids, t0_ms, t1_ms):
    acc = {int(e): dict(lat=[], jit=[], loss=[], mos=[]) for e in element_ids}
    for r in qos:
        e = int(r["element_id"])
        if not (t0_ms <= r["ts_ms"] < t1_ms) or e not in acc:
            continue
        a = acc[e]
        if np.isfinite(r["latency_ms"]) and r["latency_ms"] >= 0:
            a["lat"].append(float(r["latency_ms"]))
        if np.isfinite(r["jitter_ms"]) and r["jitter_ms"] >= 0:
            a["jit"].append(float(r["jitter_ms"]))
        if np.isfinite(r["loss_pct"]) and 0 <= r["loss_pct"] <= 100:
            a["loss"].append(float(r["loss_pct"]))
        if np.isfinite(r["mos"]) and 1 <= r["mos"] <= 5:
            a["mos"].append(float(r["mos"]))
    out = {}
    for e, a in acc.items():
        mean = lambda x: float(np.mean(x)) if x else float("nan")  # noqa: E731
        out[e] = {
            "latency_ms": mean(a["lat"]),
            "jitter_ms": mean(a["jit"]),
            "loss_pct": mean(a["loss"]),
            "mos_measured": mean(a["mos"]),
            "latency_p50_ms": hist_quantile(a["lat"], 0.5),
            "latency_p95_ms": hist_quantile(a["lat"], 0.95),
            "latency_p99_ms": hist_quantile(a["lat"], 0.99),
            "mos_emodel": (
                emodel_mos(mean(a["lat"]), mean(a["jit"]), mean(a["loss"]))
                if a["lat"] and a["jit"] and a["loss"]
                else float("nan")
            ),
        }
    return out


def lifecycle(codes, for_ticks, clear_for_ticks):
    """Reference lifecycle over a list of condition codes (0 insufficient, 1 breach, 2 clear, 3 band).

    Returns a list of (tick_index, event) with event in pending/firing/resolved/cancelled.
    """
    state, count, out = "inactive", 0, []
    for i, c in enumerate(codes):
        if c == 0:
            continue
        if state == "inactive":
            if c == 1:
                count = 1
                if count > for_ticks:
                    state, count = "firing", 0
                    out.append((i, "firing"))
                else:
                    state = "pending"
                    out.append((i, "pending"))
        elif state == "pending":
            if c == 1:
                count += 1
                if count > for_ticks:
                    state, count = "firing", 0
                    out.append((i, "firing"))
            else:
                state, count = "inactive", 0
                out.append((i, "cancelled"))
        else:
            if c == 1 or c == 3:
                count = 0
            else:
                count += 1
                if count > clear_for_ticks:
                    state, count = "inactive", 0
                    out.append((i, "resolved"))
    return out
