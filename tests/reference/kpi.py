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


def ratio_kpi_step_by_step(calc, kd, level, end_minute, window_min, element_mask=None, min_samples=None):
    """A ratio KPI over all elements, step by step: the calculator's per-element window sums
    (``counter_sums``, ``activity``), a roll-up in row order (``np.bincount``), the value
    ``scale * num / den`` and the documented status rules, in NumPy.

    The production path fuses these steps in one kernel (``kernels.kpi.kpi_ratio_nodes``) with the
    same additions in the same order, so the results are expected to be equal bit for bit.
    Returns ``(value, samples, status)``.
    """
    topo = calc.store.topology
    n_nodes = topo.n_nodes(level)
    names = list(dict.fromkeys(list(kd.numerator) + list(kd.denominator) + [kd.samples_counter]))
    sums = calc.counter_sums(names, kd.service, end_minute, window_min)
    seg = topo.element_to(level).copy()
    if element_mask is not None:
        seg[~element_mask] = -1
    inside = seg >= 0

    def roll(v):
        return np.bincount(seg[inside], weights=np.asarray(v, np.float64)[inside], minlength=n_nodes)

    agg = {c: roll(sums[c]) for c in names}
    num = sum(agg[c] for c in kd.numerator)
    den = sum(agg[c] for c in kd.denominator)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(den != 0, kd.scale * num / np.where(den != 0, den, 1.0), np.nan)
    samples = agg[kd.samples_counter]
    ms = kd.min_samples if min_samples is None else float(min_samples)
    status = np.zeros(n_nodes, np.int8)
    status[(samples < ms) | ~np.isfinite(value) | (samples <= 0)] = 1  # insufficient
    if kd.source in calc.gap_sources:  # fewer active minutes than gap_fraction of the expected
        active, expected = calc.activity(kd.source, end_minute, window_min)
        n_act, n_exp = roll(active), roll(expected)
        status[(n_exp > 0) & (n_act < calc.gap_fraction * n_exp)] = 2
    status[np.bincount(seg[inside], minlength=n_nodes) == 0] = 3  # no element in scope
    return np.where(status == 0, value, np.nan), samples, status


def g107_delay_impairment(t_ms):
    """Delay impairment ``Id = Idte + Idle + Idd`` of the full ITU-T G.107 (06/2015) E-model at its
    default parameters, for a one-way delay ``T = Ta = t_ms`` and round trip ``Tr = 2 t_ms``
    (equations 7-2 to 7-27 of the Recommendation; independent of the simplified kernel).

    Returns ``(Id, Ro)``; with the defaults ``Ro = 94.77`` as the Recommendation lists.
    """
    slr, rlr, stmr, lstr, ds, telr, wepl = 8.0, 2.0, 15.0, 18.0, 3.0, 65.0, 110.0
    nc, nfor, ps, pr = -70.0, -64.0, 35.0, 35.0
    t = ta = float(t_ms)
    tr = 2.0 * t
    olr = slr + rlr
    nfo = nfor + rlr
    pre = pr + 10 * math.log10(1 + 10 ** ((10 - lstr) / 10))
    nor = rlr - 121 + pre + 0.008 * (pre - 35) ** 2
    nos = ps - slr - ds - 100 + 0.004 * (ps - olr - ds - 14) ** 2
    no = 10 * math.log10(10 ** (nc / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    ro = 15 - 1.5 * (slr + no)
    # talker echo (STMR = 15: no sidetone correction of TERV, no Idtes)
    assert 9 <= stmr <= 20
    terv = telr - 40 * math.log10((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t**2)
    roe = -1.5 * (no - rlr)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-t))
    # listener echo
    rle = 10.5 * (wepl + 7) * (tr + 1) ** (-0.25)
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    # absolute delay
    idd = 0.0
    if ta > 100:
        x = math.log10(ta / 100) / math.log10(2)
        idd = 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    return idte + idle + idd, ro


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
