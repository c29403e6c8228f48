"""The one-pass add kernels (kernels.kpi.kpi_add_scan, kpi_add_cdr / kpi_add_equip / kpi_add_qos)
against a plain Python reference: per row its reason, its counter increments (rules written out
per record type), float32 cells accumulated row by row; running sums moved by the change of each
cell inside their interval; the routing marks and the accepted rows' elements and minutes."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from telcoanalytics.kpi.definitions import MINUTE_MS, cause_class_table

N_SLOTS = 8
N_EL = 5
CLS = cause_class_table()


def _ref_cdr(row, n_services):
    start, answer, end, service, cause = row
    if not 0 <= service < n_services:
        return K.R_BAD_SERVICE, {}
    if not 1 <= cause < len(CLS):
        return K.R_BAD_CAUSE, {}
    answered = answer >= 0
    if end < start or (answered and not (start <= answer <= end)):
        return K.R_BAD_TIME, {}
    cls = int(CLS[cause])
    good = cls in (K.CLS_NORMAL, K.CLS_USER)
    inc = {
        K.C_ATTEMPTS: 1.0,
        K.C_SETUP_OK: float(answered or good),
        K.C_ANSWERED: float(answered),
        K.C_DROPS: float(answered and not good),
        K.C_BLOCKED: float(cls == K.CLS_CONGESTION),
        K.C_FAILURES: float(cls == K.CLS_FAILURE),
        K.C_NORMAL: float(cls == K.CLS_NORMAL),
        K.C_USER: float(cls == K.CLS_USER),
        K.C_HOLD_S: (end - answer) / 1000.0 if answered else 0.0,
    }
    return 0, {service * K.N_CDR + c: v for c, v in inc.items()}


def _ref_equip(row, pm):
    metric, v = row
    if not math.isfinite(v) or not 0 <= metric <= K.M_TEMPERATURE or (v < 0 and metric != K.M_TEMPERATURE):
        return K.R_BAD_VALUE, {}
    inc = {K.E_EQUIP_ROWS: 1.0}
    if metric == K.M_UNAVAILABLE:
        u = min(v, pm)
        inc.update({K.E_AVAIL_REPORTS: 1.0, K.E_PERIOD_S: pm, K.E_UP_S: pm - u, K.E_UNAVAILABLE_S: u})
        inc[K.E_OUTAGE_REPORTS] = float(u > 0)
    elif metric == K.M_CPU:
        inc.update({K.E_CPU_SUM: v, K.E_CPU_N: 1.0})
    elif metric == K.M_PRB:
        inc.update({K.E_PRB_SUM: v, K.E_PRB_N: 1.0})
    elif metric == K.M_THROUGHPUT:
        inc.update({K.E_THR_SUM: v, K.E_THR_N: 1.0})
    elif metric == K.M_ERRORS:
        inc[K.E_ERRORS] = v
    return 0, inc


def _ref_qos(row, n_bins):
    la, ji, lo, mo = row
    inc, hist = {}, {}
    ok = [math.isfinite(la) and la >= 0, math.isfinite(ji) and ji >= 0]
    ok += [math.isfinite(lo) and 0 <= lo <= 100, math.isfinite(mo) and 1 <= mo <= 5]
    for good, x, (cs, cn) in zip(
        ok,
        (la, ji, lo, mo),
        ((K.E_LAT_SUM, K.E_LAT_N), (K.E_JIT_SUM, K.E_JIT_N), (K.E_LOSS_SUM, K.E_LOSS_N), (K.E_MOS_SUM, K.E_MOS_N)),
    ):
        if good:
            inc[cs], inc[cn] = x, 1.0
    if not any(ok):
        return K.R_BAD_VALUE, {}, {}
    inc[K.E_QOS_ROWS] = 1.0
    if ok[0]:  # log buckets: [0, 1), then 3 per octave from 1 ms, the last one open
        b = 0 if la < 1.0 else min(1 + int(math.floor(math.log2(la) * 3)), n_bins - 1)
        hist[b] = 1.0
    return 0, inc, hist


def _rows(draw, source, n):
    ints = st.integers
    if source == "cdr":
        start = draw(st.lists(ints(0, 600_000), min_size=n, max_size=n))
        rows = []
        for s in start:
            ans = draw(st.sampled_from([-1, s, s + 1500, s - 5]))
            end = draw(st.sampled_from([s, s + 61_234, s - 1])) if ans < 0 else ans + draw(ints(-1, 200_000))
            rows.append((s, ans, end, draw(ints(-1, 4)), draw(st.sampled_from([0, 16, 17, 34, 41, 31, 200]))))
        return rows
    if source == "equip":
        vals = st.sampled_from([0.0, 1.5, 30.0, 400.0, 0.1, 61.234, -2.0, np.nan, np.inf])  # 0.1, 61.234: not float32
        return [(draw(ints(-1, 6)), draw(vals)) for _ in range(n)]
    v = st.sampled_from([0.0, -0.0, 0.5, 3.0, 40.0, 1e6, 0.38350029786427814, 4.1, -1.0, np.nan])
    return [tuple(draw(v) for _ in range(4)) for _ in range(n)]


@st.composite
def batches(draw):
    source = draw(st.sampled_from(["cdr", "equip", "qos"]))
    n = draw(st.integers(0, 30))
    rows = _rows(draw, source, n)
    head = draw(st.integers(100, 112))  # the ring's newest minute (the store advances to the batch's newest first)
    minute = np.array(draw(st.lists(st.integers(88, head), min_size=n, max_size=n)), np.int64)
    elem = np.array(draw(st.lists(st.integers(-1, N_EL - 1), min_size=n, max_size=n)), np.int64)
    runs = [(draw(st.integers(95, 112)), draw(st.integers(1, 12))) for _ in range(draw(st.integers(0, 3)))]
    return source, rows, minute, elem, head, runs


def _runs(runs, width, rng):
    """Intervals, column maps (a random subset of ring columns each) and zeroed outputs."""
    lo = np.array([a for a, _ in runs], np.int64)
    hi = np.array([a + w for a, w in runs], np.int64)
    colmap = np.full((len(runs), width), -1, np.int64)
    outs = []
    for k in range(len(runs)):
        cols = rng.choice(width, rng.integers(1, width + 1), replace=False)
        colmap[k, cols] = np.arange(len(cols))
        outs.append(np.zeros((len(cols), N_EL)))  # transposed, as the store passes them (out.T)
    return (lo, hi, colmap, tuple(outs) if outs else (np.zeros((0, 0)),)), cols_of(colmap)


def cols_of(colmap):
    return [np.flatnonzero(row >= 0)[np.argsort(row[row >= 0])] for row in colmap]


@settings(max_examples=150, deadline=None)
@given(b=batches(), seed=st.integers(0, 2**32 - 1))
def test_add_kernels_match_python_reference(b, seed):
    source, rows, minute, elem, head, runs_spec = b
    rng = np.random.default_rng(seed)
    n = len(rows)
    n_services, pm, n_bins = 3, 300.0, 14
    width = {"cdr": n_services * K.N_CDR, "equip": K.N_ELEM, "qos": K.N_ELEM}[source]
    # cells with a fractional part: a change like 2.0950441 - 0.92438143 is not a float32
    frac = np.float32(0.92438143)
    ring = (rng.integers(0, 3, (N_SLOTS, N_EL, width)) + frac * rng.integers(0, 2, (N_SLOTS, N_EL, width))).astype(
        np.float32
    )
    hist = rng.integers(0, 3, (N_SLOTS, N_EL, n_bins)).astype(np.float32)
    ring0, hist0 = ring.copy(), hist.copy()
    slot_minute = np.full(N_SLOTS, -1, np.int64)
    used = (slot_minute, np.zeros(N_SLOTS, bool), np.zeros((N_SLOTS, N_EL), bool))
    hused = (np.zeros(N_SLOTS, bool), np.zeros((N_SLOTS, N_EL), bool))
    runs, run_cols = _runs(runs_spec, width, rng)
    hruns, hrun_cols = _runs(runs_spec[:1], n_bins, rng)

    # pass 1 (times in ms: a minute, plus seconds; some rows too far ahead)
    t = minute * K.MINUTE_MS + rng.integers(0, K.MINUTE_MS, n)
    future = int(rng.integers(100, 115)) * K.MINUTE_MS
    m_out, reason = np.empty(n, np.int64), np.zeros(n, np.int8)
    n_ok, lo, hi = K.kpi_add_scan(t, elem, True, future, m_out, reason)
    want_reason = np.where(elem < 0, K.R_UNKNOWN_ELEMENT, np.where(t > future, K.R_FUTURE, 0))
    np.testing.assert_array_equal(m_out, t // K.MINUTE_MS)
    np.testing.assert_array_equal(reason, want_reason)
    ok = want_reason == 0
    assert n_ok == ok.sum()
    if n_ok:
        assert (lo, hi) == (minute[ok].min(), minute[ok].max())
    else:
        lo = 95

    # pass 2
    late_bound = head - N_SLOTS
    acc = (np.full(n, -7, np.int64), np.full(n, -7, np.int64))
    route = (late_bound, lo, lo % N_SLOTS)
    if source == "cdr":
        cols = [np.array([r[k] for r in rows], dt) for k, dt in enumerate([np.int64] * 3 + [np.int16] * 2)]
        got = K.kpi_add_cdr(elem, m_out, route, used, tuple(cols), CLS, reason, ring, runs, acc)
    elif source == "equip":
        cols = (np.array([r[0] for r in rows], np.int32), np.array([r[1] for r in rows], np.float64))
        got = K.kpi_add_equip(elem, m_out, route, used, cols, pm, reason, ring, runs, acc)
    else:
        cols = tuple(np.array([r[k] for r in rows], np.float64) for k in range(4))
        got = K.kpi_add_qos(elem, m_out, route, (used, hused), cols, (1.0, 3.0), reason, ring, hist, (runs, hruns), acc)

    # the reference, row by row
    ref_ring, ref_hist = ring0.copy(), hist0.copy()
    ref_reason = want_reason.copy()
    ref_used = np.zeros((N_SLOTS, N_EL), bool)
    ref_minute = np.full(N_SLOTS, -1, np.int64)
    accepted = []
    for i, row in enumerate(rows):
        if ref_reason[i]:
            continue
        if minute[i] <= late_bound:
            ref_reason[i] = K.R_TOO_LATE
            continue
        s, e = minute[i] % N_SLOTS, elem[i]
        ref_used[s, e] = True
        ref_minute[s] = minute[i]
        hinc = {}
        if source == "cdr":
            r, inc = _ref_cdr(row, n_services)
        elif source == "equip":
            r, inc = _ref_equip(row, pm)
        else:
            r, inc, hinc = _ref_qos(row, n_bins)
        ref_reason[i] = r
        if r:
            continue
        for c, v in inc.items():
            ref_ring[s, e, c] = np.float32(float(ref_ring[s, e, c]) + v)
        for c, v in hinc.items():
            ref_hist[s, e, c] = np.float32(float(ref_hist[s, e, c]) + v)
        accepted.append((e, minute[i]))
    np.testing.assert_array_equal(reason, ref_reason)
    np.testing.assert_array_equal(ring, ref_ring)
    np.testing.assert_array_equal(hist, ref_hist)
    assert got == len(accepted)
    np.testing.assert_array_equal(
        np.stack([acc[0][:got], acc[1][:got]], 1).reshape(-1, 2), np.array(accepted).reshape(-1, 2)
    )
    np.testing.assert_array_equal(used[2], ref_used)
    np.testing.assert_array_equal(used[1], ref_used.any(axis=1))
    np.testing.assert_array_equal(slot_minute, ref_minute)
    if source == "qos":
        np.testing.assert_array_equal(hused[1], ref_used)
    # running sums: each moved by the change of the cells of its minutes (slots routed this batch)
    for rr, rc, before, after in ((runs, run_cols, ring0, ring), (hruns, hrun_cols, hist0, hist)):
        if source != "qos" and rr is hruns:
            continue
        for k in range(len(rr[0])):
            want = np.zeros((N_EL, len(rc[k])))
            for s in range(N_SLOTS):
                if rr[0][k] <= ref_minute[s] < rr[1][k]:
                    want += after[s][:, rc[k]].astype(np.float64) - before[s][:, rc[k]].astype(np.float64)
            np.testing.assert_array_equal(rr[3][k].T, want)


def test_kernel_minute_is_the_store_minute():
    assert K.MINUTE_MS == MINUTE_MS
