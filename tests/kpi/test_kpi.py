"""KPI extraction and evaluation against slow references (tests/reference/kpi.py)."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from telcoanalytics.kpi import (
    BUILTIN_KPIS,
    STATUS_GAP,
    STATUS_INSUFFICIENT,
    STATUS_NO_SCOPE,
    STATUS_OK,
    CounterStore,
    KpiCalculator,
    KpiDef,
    emodel,
    kpi_registry,
)
from telcoanalytics.records import SERVICES, empty
from telcoanalytics.topology.model import Topology
from tests.reference import kpi as ref

T0 = 1_772_409_600_000  # a whole hour
MIN = 60_000
M_HOUR = T0 // 3_600_000
CALL_KPIS = [
    "call_setup_success_pct",
    "call_drop_pct",
    "blocking_pct",
    "failure_pct",
    "normal_clearing_pct",
    "user_cause_pct",
    "asr_pct",
    "mean_holding_s",
    "traffic_erl",
]
EQUIP_KPIS = ["availability_pct", "cpu_util_pct", "prb_util_pct", "throughput_mbps", "errors_per_min"]
QOS_KPIS = [
    "latency_ms",
    "jitter_ms",
    "loss_pct",
    "mos_measured",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "mos_emodel",
]


def topo6():
    return Topology.from_columns(
        np.array([10, 11, 12, 13, 14, 15]),
        {"region": np.array([1, 1, 1, 1, 2, 2]), "site": np.array([100, 100, 101, 101, 102, 102])},
        {"equipment_class": np.array([0, 0, 1, 1, 0, 2], np.int16)},
    )


def calls(rows):
    """rows: (element_id, minute, cause, answered, hold_s[, service])."""
    c = empty("cdr", len(rows))
    for i, r in enumerate(rows):
        e, m, cause, ans, hold = r[:5]
        c[i]["record_id"] = i
        c[i]["element_id"] = e
        c[i]["start_ms"] = T0 + m * MIN + i
        c[i]["answer_ms"] = c[i]["start_ms"] + 1000 if ans else -1
        c[i]["end_ms"] = (c[i]["answer_ms"] + int(hold * 1000)) if ans else c[i]["start_ms"] + 5000
        c[i]["cause"] = cause
        c[i]["service"] = r[5] if len(r) > 5 else 0
    return c


def random_cdr(rng, n, elements, minutes):
    causes = np.array([16, 31, 17, 18, 19, 20, 21, 34, 42, 44, 47, 27, 38, 41, 102, 1, 3])
    c = empty("cdr", n)
    c["record_id"] = np.arange(n)
    c["element_id"] = rng.choice(elements, n)
    c["start_ms"] = T0 + rng.integers(0, minutes * MIN, n)
    ans = rng.random(n) < 0.8
    c["answer_ms"] = np.where(ans, c["start_ms"] + rng.integers(0, 20_000, n), -1)
    c["end_ms"] = np.where(ans, c["answer_ms"], c["start_ms"]) + rng.integers(0, 300_000, n)
    c["cause"] = rng.choice(causes, n)
    c["service"] = rng.integers(0, len(SERVICES), n)
    return c


def test_call_kpis_hand_made_exact():
    topo = topo6()
    rows = (
        [(10, 0, 16, True, 60.0)] * 6
        + [(10, 1, 34, False, 0)] * 2
        + [(10, 2, 17, False, 0)]
        + [(10, 3, 27, True, 30.0)]
        + [(11, 0, 16, True, 120.0)] * 4
        + [(11, 4, 42, False, 0)]
    )
    store = CounterStore(topo)
    res = store.add("cdr", calls(rows))
    assert res.accepted == len(rows) and res.rejected == {}
    calc = KpiCalculator(store)
    end = T0 // MIN + 5
    # element 10: 10 attempts, 7 answered (6 normal + 1 failure-cause drop), 2 blocked, 1 user busy
    expect = {
        "call_setup_success_pct": 80.0,  # 6 normal answered + 1 user + 1 answered-then-failed
        "call_drop_pct": 100.0 / 7,
        "blocking_pct": 20.0,
        "failure_pct": 10.0,
        "normal_clearing_pct": 60.0,
        "user_cause_pct": 10.0,
        "asr_pct": 70.0,
        "mean_holding_s": (6 * 60 + 30) / 7,
        "traffic_erl": (6 * 60 + 30) / 300.0,
    }
    for k, v in expect.items():
        r = calc.compute(k, "element", end, 5)
        # float32 minute buckets hold these small integers and halves exactly; 1e-12 covers division
        assert r.status[0] == STATUS_OK
        np.testing.assert_allclose(r.value[0], v, rtol=1e-12, err_msg=k)
    # site 100 = elements 10 + 11: ratio of sums, not mean of ratios
    r = calc.compute("call_setup_success_pct", "site", end, 5)
    np.testing.assert_allclose(r.value[0], 100.0 * (8 + 4) / (10 + 5), rtol=1e-12)
    assert r.samples[0] == 15
    assert r.status[1] == STATUS_INSUFFICIENT and np.isnan(r.value[1])  # site 101: no calls
    r = calc.compute("blocking_pct", "region", end, 5)
    np.testing.assert_allclose(r.value[0], 100.0 * 3 / 15, rtol=1e-12)


def test_call_kpis_random_vs_reference(rng):
    topo = topo6()
    cdr = random_cdr(rng, 3000, topo.ids["element"], 30)
    store = CounterStore(topo, minute_ring=40)
    store.add("cdr", cdr[:1500])
    store.add("cdr", cdr[1500:])  # out of time order: every row still lands in its minute
    calc = KpiCalculator(store)
    for end_min, w in ((30, 30), (20, 7), (5, 5)):
        end = T0 // MIN + end_min
        t0, t1 = (end - w) * MIN, end * MIN
        for service in (None, "voice"):
            sums = ref.cdr_sums(cdr, topo.ids["element"], t0, t1, service)
            for level in ("element", "site", "region"):
                e2l = topo.element_to(level)
                agg = {}
                for i, e in enumerate(topo.ids["element"]):
                    node = int(e2l[i])
                    agg[node] = ref.add_sums(agg[node], sums[int(e)]) if node in agg else dict(sums[int(e)])
                for k in CALL_KPIS:
                    got = calc.compute(k, level, end, w, service=service or "")
                    want = np.array([ref.call_kpis(agg[j], w * 60.0)[k] for j in range(topo.n_nodes(level))])
                    # float32 per-minute holding-second sums: ~1e-7 relative rounding per bucket
                    np.testing.assert_allclose(got.value, want, rtol=2e-6, err_msg=f"{k} {level} {service}")


def test_equip_kpis_vs_reference(rng):
    topo = topo6()
    n = 600
    eq = empty("equip", n)
    eq["ts_ms"] = T0 + (rng.integers(0, 6, n) * 5 * MIN)
    eq["element_id"] = rng.choice(topo.ids["element"], n)
    eq["metric_id"] = rng.integers(0, 6, n)
    eq["value"] = rng.uniform(0, 400, n)
    store = CounterStore(topo, pm_interval_s=300.0)
    res = store.add("equip", eq)
    assert res.accepted == n
    calc = KpiCalculator(store)
    end, w = T0 // MIN + 30, 30
    want = ref.equip_kpis(eq, topo.ids["element"], T0, end * MIN, 300.0)
    for k in EQUIP_KPIS:
        got = calc.compute(k, "element", end, w)
        exp = np.array([want[int(e)][k] for e in topo.ids["element"]])
        # float32 bucket sums of uniform reals: relative rounding ~1e-7 per addition
        np.testing.assert_allclose(got.value, exp, rtol=1e-5, err_msg=k)


def test_availability_hand_made():
    topo = topo6()
    eq = empty("equip", 3)
    eq["ts_ms"] = T0 + np.array([0, 5, 10]) * MIN
    eq["element_id"] = 10
    eq["metric_id"] = 3
    eq["value"] = [0.0, 30.0, 500.0]  # the last is clipped to the 300 s period
    store = CounterStore(topo)
    store.add("equip", eq)
    r = KpiCalculator(store).compute("availability_pct", "element", T0 // MIN + 15, 15)
    np.testing.assert_allclose(r.value[0], 100.0 * (900 - 330) / 900, rtol=1e-12)
    assert r.samples[0] == 3


QOS_MEAN_KPIS = ["latency_ms", "jitter_ms", "loss_pct", "mos_measured"]
LATENCY_QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
HIST_BOUND = 2.0 ** (1 / 3)  # the histogram's stated bound at 3 bins per octave (KpiDef, kind quantile)


def check_qos_kpis(calc, qos, ids, end, w, min_samples=None):
    """QoS KPIs per element against independent references: means from the record loop, the
    E-model through the public ``emodel`` on those means, and latency percentiles against
    ``np.quantile`` of the raw latencies within the histogram's stated relative-error bound."""
    want = ref.qos_kpis(qos, ids, (end - w) * MIN, end * MIN)
    got = {k: calc.compute(k, "element", end, w, min_samples=min_samples).value for k in QOS_KPIS}
    for k in QOS_MEAN_KPIS:
        exp = np.array([want[int(e)][k] for e in ids])
        # float32 sums feed the means: relative rounding ~1e-7 per addition
        np.testing.assert_allclose(got[k], exp, rtol=1e-5, equal_nan=True, err_msg=k)
    means = [np.array([want[int(e)][k] for e in ids]) for k in ("latency_ms", "jitter_ms", "loss_pct")]
    _, mos = emodel(*means)
    np.testing.assert_allclose(got["mos_emodel"], mos, rtol=1e-5, equal_nan=True, err_msg="mos_emodel")
    sel = (qos["ts_ms"] >= (end - w) * MIN) & (qos["ts_ms"] < end * MIN) & np.isfinite(qos["latency_ms"])
    for i, e in enumerate(ids):
        lat = qos["latency_ms"][sel & (qos["element_id"] == e)]
        for k, q in LATENCY_QUANTILES.items():
            if len(lat) == 0:
                assert np.isnan(got[k][i]), k
                continue
            exact = np.quantile(lat, q, method="inverted_cdf")
            if exact < 1.0:  # below hist_lo_ms (1 ms): the stated bound is absolute, hist_lo_ms
                assert 0.0 <= got[k][i] < 1.0, (k, e, got[k][i], exact)
            else:
                assert 1 / HIST_BOUND - 1e-12 <= got[k][i] / exact <= HIST_BOUND + 1e-12, (k, e, got[k][i], exact)


def test_qos_kpis_vs_reference(rng):
    topo = topo6()
    n = 800
    q = empty("qos", n)
    q["ts_ms"] = T0 + rng.integers(0, 10 * MIN, n)
    q["element_id"] = rng.choice(topo.ids["element"], n)
    q["latency_ms"] = rng.lognormal(3.5, 1.0, n)
    q["jitter_ms"] = rng.lognormal(1.0, 0.5, n)
    q["loss_pct"] = rng.uniform(0, 3, n)
    q["mos"] = np.where(rng.random(n) < 0.5, rng.uniform(1, 5, n), np.nan)
    q["latency_ms"][:5] = np.nan  # a missing measure does not drop the row's others
    q["latency_ms"] = np.maximum(q["latency_ms"], 1.0)  # inside the histogram's range (NaN stays)
    store = CounterStore(topo)
    res = store.add("qos", q)
    assert res.accepted == n
    check_qos_kpis(KpiCalculator(store), q, topo.ids["element"], T0 // MIN + 10, 10)


def test_emodel_clamps_and_missing_values():
    r, mos = emodel([0.0, np.nan, 0.0, -5000.0], [0.0, 0.0, 0.0, 0.0], [1e6, 0.0, np.nan, 0.0])
    assert mos[0] == 1.0 and r[0] < 0  # R < 0 clamps to 1
    assert np.isnan(mos[1]) and np.isnan(r[1]) and np.isnan(mos[2])  # NaN in, NaN out
    assert mos[3] == 4.5 and r[3] > 100  # R > 100 clamps to 4.5
    for bad in (dict(ie=-1.0), dict(ie=95.0), dict(bpl=0.0), dict(bpl=float("nan"))):
        with pytest.raises(ValueError, match="ie must|bpl must"):
            emodel(0.0, 0.0, 0.0, **bad)


def test_non_canonical_batches_and_ids():
    """Non-canonical field types are cast once; negative element ids fall back to the topology."""
    topo = Topology.from_columns(np.array([-5, 7]), {"site": np.array([1, 1])})
    store = CounterStore(topo)
    q = empty("qos", 2)
    q["element_id"] = [-5, 7]
    q["ts_ms"] = T0
    q["latency_ms"] = [1e6, 2.0]  # beyond the top bucket: the open last bucket
    dt = [(n, "f4") if n == "loss_pct" else (n, q.dtype[n]) for n in q.dtype.names]
    res = store.add("qos", q.astype(dt))
    assert res.accepted == 2 and store.hist[:, 0, -1].sum() == 1 and store.index_of([7, 8]).tolist() == [1, -1]


def test_hist_quantile_edges():
    out = np.empty(3)
    counts = np.zeros((3, 35))
    counts[0, 0] = 4  # all below lo: linear inside [0, lo)
    counts[1, 34] = 2  # all in the open top bucket: its lower edge
    K.kpi_hist_quantile(counts, 0.5, 1.0, 3.0, out)
    assert out[0] == 0.5 and out[1] == 2.0**11 and np.isnan(out[2])


def test_rejections_counted_never_silent():
    topo = topo6()
    rows = calls([(10, 0, 16, True, 10.0)] * 7)
    rows[1]["cause"] = 0  # bad cause
    rows[2]["end_ms"] = rows[2]["start_ms"] - 1  # end before start
    rows[3]["element_id"] = 999  # unknown element
    rows[4]["service"] = 9  # bad service
    rows[5]["answer_ms"] = rows[5]["end_ms"] + 1  # answer after end
    store = CounterStore(topo)
    res = store.add("cdr", rows)
    assert res.accepted == 2
    assert res.rejected == {"bad_cause": 1, "bad_time": 2, "unknown_element": 1, "bad_service": 1}
    eq = empty("equip", 3)
    eq["element_id"] = 10
    eq["ts_ms"] = T0
    eq["value"] = [np.nan, -1.0, 1.0]
    eq["metric_id"] = [0, 4, 9]
    assert store.add("equip", eq).rejected == {"bad_value": 3}
    q = empty("qos", 1)
    q["element_id"] = 10
    q["ts_ms"] = T0
    q["latency_ms"] = q["jitter_ms"] = q["loss_pct"] = np.nan
    assert store.add("qos", q).rejected == {"bad_value": 1}
    # too late for the ring, and too far ahead of the watermark
    far = calls([(10, 200, 16, True, 1.0)])
    store.add("cdr", far)
    assert store.add("cdr", calls([(10, 0, 16, True, 1.0)])).rejected == {"too_late": 1}
    store.set_watermark(T0 + 200 * MIN)
    assert store.add("cdr", calls([(10, 300, 16, True, 1.0)])).rejected == {"future": 1}
    assert store.rejected[K.R_BAD_TIME] == 2
    assert store.add("flow", empty("flow", 4)).rejected == {"ignored": 4}
    assert store.add("cdr", empty("cdr", 0)).accepted == 0


def test_store_validation_errors():
    topo = topo6()
    with pytest.raises(TypeError, match="Topology"):
        CounterStore("nope")
    with pytest.raises(ValueError, match="minute_ring"):
        CounterStore(topo, minute_ring=1)
    with pytest.raises(ValueError, match="pm_interval_s"):
        CounterStore(topo, pm_interval_s=0)
    with pytest.raises(ValueError, match="hour_columns counter"):
        CounterStore(topo, hour_columns=[("nope", "")], hour_ring=10)
    with pytest.raises(ValueError, match="hour_columns service"):
        CounterStore(topo, hour_columns=[("attempts", "fax")], hour_ring=10)
    with pytest.raises(ValueError, match="element counter"):
        CounterStore(topo, hour_columns=[("up_s", "voice")], hour_ring=10)
    with pytest.raises(ValueError, match="hour_ring"):
        CounterStore(topo, hour_columns=[("attempts", "")], hour_ring=1)
    with pytest.raises(ValueError, match="hist_lo_ms"):
        CounterStore(topo, hist_lo_ms=0)
    store = CounterStore(topo)
    with pytest.raises(ValueError, match="unknown; expected one of"):
        store.add("fax", empty("cdr", 1))
    with pytest.raises(ValueError, match="lacks canonical fields"):
        store.add("cdr", empty("qos", 1))
    calc = KpiCalculator(store)
    with pytest.raises(ValueError, match="unknown KPI"):
        calc.compute("nope", "element", 10, 5)
    with pytest.raises(ValueError, match="window_min"):
        calc.compute("asr_pct", "element", 10, 0)
    with pytest.raises(ValueError, match="not one of"):
        calc.compute("asr_pct", "element", 10, 5, service="fax")
    with pytest.raises(ValueError, match="not a call KPI"):
        calc.compute("latency_ms", "element", 10, 5, service="voice")
    with pytest.raises(ValueError, match="gap_fraction"):
        KpiCalculator(store, gap_fraction=1.5)
    with pytest.raises(ValueError, match="gap_sources"):
        KpiCalculator(store, gap_sources=("fax",))


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(name=""), "non-empty"),
        (dict(name="x", kind="median", numerator=("attempts",), denominator=("attempts",)), "kind"),
        (dict(name="x", numerator=("nope",), denominator=("attempts",)), "numerator counter 'nope'"),
        (dict(name="x", numerator=("attempts",)), "needs numerator and denominator"),
        (dict(name="x", kind="per_time", numerator=("attempts",), denominator=("answered",)), "per_time"),
        (dict(name="x", kind="quantile", q=0.5, numerator=("attempts",)), "takes no numerator"),
        (dict(name="x", kind="quantile", q=1.5), "q must be"),
        (dict(name="x", numerator=("attempts",), denominator=("up_s",)), "mix"),
        (dict(name="x", numerator=("attempts",), denominator=("answered",), samples="nope"), "samples counter"),
        (dict(name="x", numerator=("attempts",), denominator=("answered",), service="fax"), "service 'fax'"),
        (dict(name="x", numerator=("up_s",), denominator=("period_s",), service="voice"), "only applies"),
        (dict(name="x", numerator=("attempts",), denominator=("answered",), scale=0.0), "scale"),
        (dict(name="x", numerator=("attempts",), denominator=("answered",), min_samples=-1), "min_samples"),
    ],
)
def test_kpidef_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        KpiDef(**kw)


def test_custom_kpi_from_dict_and_registry():
    d = {
        "name": "voice_blocking_pct",
        "numerator": ["blocked"],
        "denominator": ["attempts"],
        "scale": 100.0,
        "service": "voice",
        "min_samples": 2,
    }
    kd = KpiDef.from_dict(d)
    assert KpiDef.from_dict(kd.to_dict()) == kd
    reg = kpi_registry([d])
    assert "voice_blocking_pct" in reg and len(reg) == len(BUILTIN_KPIS) + 1
    with pytest.raises(ValueError, match="unknown field"):
        KpiDef.from_dict({"name": "x", "numer": []})
    with pytest.raises(ValueError, match="needs a 'name'"):
        KpiDef.from_dict({"numerator": []})
    with pytest.raises(ValueError, match="must be a dict"):
        KpiDef.from_dict(["x"])
    topo = topo6()
    store = CounterStore(topo)
    store.add("cdr", calls([(10, 0, 34, False, 0, 0), (10, 0, 16, True, 5.0, 0), (10, 0, 34, False, 0, 3)]))
    r = KpiCalculator(store, reg).compute("voice_blocking_pct", "element", T0 // MIN + 1, 1)
    np.testing.assert_allclose(r.value[0], 50.0, rtol=1e-12)  # the data call is not voice
    r = KpiCalculator(store, reg).compute("voice_blocking_pct", "element", T0 // MIN + 1, 1, min_samples=3)
    assert r.status[0] == STATUS_INSUFFICIENT


def test_scope_mask_and_no_scope():
    topo = topo6()
    store = CounterStore(topo)
    store.add("cdr", calls([(10, 0, 16, True, 5.0), (12, 0, 34, False, 0)]))
    calc = KpiCalculator(store)
    mask = topo.attributes["equipment_class"] == 0
    r = calc.compute("blocking_pct", "site", T0 // MIN + 1, 1, element_mask=mask)
    assert r.value[0] == 0.0 and r.status[1] == STATUS_NO_SCOPE  # site 101 has no class-0 element


def test_collection_gap_status():
    """An element that reports every 5 min and goes silent reads as a gap, not as a value."""
    topo = topo6()
    store = CounterStore(topo, minute_ring=120)
    n = 24
    eq = empty("equip", n)
    eq["ts_ms"] = T0 + np.arange(n) * 5 * MIN
    eq["element_id"] = 10
    eq["metric_id"] = 3
    eq["value"] = 0.0
    keep = (np.arange(n) < 12) | (np.arange(n) == 20)  # silent from minute 60 except minute 100
    store.add("equip", eq[keep])
    ahead = eq[:1].copy()  # another element's report moves the ring's head to minute 119
    ahead["element_id"], ahead["ts_ms"] = 11, T0 + 119 * MIN
    store.add("equip", ahead)
    calc = KpiCalculator(store)
    ok = calc.compute("availability_pct", "element", T0 // MIN + 60, 30, min_samples=1)
    assert ok.status[0] == STATUS_OK and ok.value[0] == 100.0
    gap = calc.compute("availability_pct", "element", T0 // MIN + 115, 30, min_samples=1)
    assert gap.status[0] == STATUS_GAP and np.isnan(gap.value[0]) and gap.samples[0] == 1


def test_late_row_lands_in_its_minute():
    topo = topo6()
    store = CounterStore(topo)
    store.add("cdr", calls([(10, 30, 16, True, 5.0)]))
    v0 = store.version
    res = store.add("cdr", calls([(10, 3, 34, False, 0)]))  # 27 minutes late, inside the ring
    assert res.accepted == 1 and res.minute[0] == T0 // MIN + 3 and store.version == v0 + 1
    calc = KpiCalculator(store)
    r = calc.compute("blocking_pct", "element", T0 // MIN + 4, 1)
    assert r.value[0] == 100.0


@given(st.integers(0, 2**32 - 1), st.integers(0, 400), st.integers(1, 30))
def test_merged_counters_equal_union(seed, split, window):
    """KPI of merged counter stores == KPI of one store fed the union (ratio of sums)."""
    rng = np.random.default_rng(seed)
    topo = topo6()
    cdr = random_cdr(rng, 400, topo.ids["element"], 30)
    eq = empty("equip", 60)
    eq["ts_ms"] = T0 + rng.integers(0, 30, 60) * MIN
    eq["element_id"] = rng.choice(topo.ids["element"], 60)
    eq["metric_id"] = rng.integers(0, 6, 60)
    eq["value"] = rng.uniform(0, 300, 60)
    hc = [("setup_ok", ""), ("attempts", "")]
    a = CounterStore(topo, 40, hour_columns=hc, hour_ring=4)
    b = CounterStore(topo, 40, hour_columns=hc, hour_ring=4)
    u = CounterStore(topo, 40, hour_columns=hc, hour_ring=4)
    a.add("cdr", cdr[:split])
    b.add("cdr", cdr[split:])
    a.add("equip", eq[: split % 60])
    b.add("equip", eq[split % 60 :])
    u.add("cdr", cdr)
    u.add("equip", eq)
    a.merge(b)
    end = T0 // MIN + 30
    for k in ("call_setup_success_pct", "traffic_erl", "availability_pct", "mean_holding_s"):
        for level in ("element", "region"):
            x = KpiCalculator(a).compute(k, level, end, window)
            y = KpiCalculator(u).compute(k, level, end, window)
            # float32 addition order differs between merge and one pass: a few ulps
            np.testing.assert_allclose(x.value, y.value, rtol=1e-6, equal_nan=True)
            np.testing.assert_array_equal(x.status, y.status)
    np.testing.assert_array_equal(a.hour, u.hour)


def test_merge_validation_and_empty():
    topo = topo6()
    a = CounterStore(topo, 40)
    with pytest.raises(ValueError, match="minute_ring"):
        a.merge(CounterStore(topo, 50))
    topo2 = Topology.from_columns(np.array([1, 2]), {"site": np.array([5, 5])})
    with pytest.raises(ValueError, match="elements"):
        a.merge(CounterStore(topo2, 40))
    b = CounterStore(topo, 40)
    b.add("cdr", calls([(10, 0, 16, True, 5.0)]))
    assert a.merge(CounterStore(topo, 40)) is a and a.head_minute == -1
    a.merge(b)
    assert a.cdr.sum() == b.cdr.sum()
    old = CounterStore(topo, 40)
    old.add("cdr", calls([(10, 0, 16, True, 5.0)]))
    a.add("cdr", calls([(10, 100, 16, True, 5.0)]))
    a.merge(old)  # minutes that fell out of a's ring
    assert a.rejected[K.R_TOO_LATE] == 1


def test_store_state_roundtrip(rng):
    topo = topo6()
    store = CounterStore(topo, 40, hour_columns=[("attempts", "voice")], hour_ring=4)
    store.add("cdr", random_cdr(rng, 200, topo.ids["element"], 20))
    st_ = store.to_state()
    assert all(isinstance(v, (np.ndarray, int, float, str)) for v in st_.values())
    back = CounterStore.from_state(st_)
    for a in ("cdr", "elem", "hist", "hour", "slot_minute"):
        np.testing.assert_array_equal(getattr(back, a), getattr(store, a))
    x = KpiCalculator(back).compute("asr_pct", "site", T0 // MIN + 20, 20)
    y = KpiCalculator(store).compute("asr_pct", "site", T0 // MIN + 20, 20)
    np.testing.assert_array_equal(x.value, y.value)
    assert back.memory_bytes() == store.memory_bytes() > 0
    assert back.hour_column("attempts", "voice") == 0 and back.hour_column("attempts") == -1


def test_synthetic_day_vs_reference():
    """Clean synthetic records: every KPI family against the reference at element level."""
    import telcoanalytics.synth.network as synth

    day = synth.generate(synth.SynthConfig(n_elements=60, days=0.05, seed=3))
    topo = day.topology
    store = CounterStore(topo, minute_ring=100)
    for src in ("cdr", "equip", "qos"):
        assert store.add(src, getattr(day, src)).rejected == {}
    calc = KpiCalculator(store)
    end = day.end_ms // MIN
    w = 60
    ids = topo.ids["element"]
    sums = ref.cdr_sums(day.cdr, ids, (end - w) * MIN, end * MIN)
    for k in CALL_KPIS:
        want = np.array(
            [ref.call_kpis(sums[int(e)], w * 60.0)[k] if sums[int(e)]["attempts"] else np.nan for e in ids]
        )  # no attempts at all: no samples, so no value
        got = calc.compute(k, "element", end, w, min_samples=0)
        # float32 per-minute sums
        np.testing.assert_allclose(got.value, want, rtol=2e-6, equal_nan=True, err_msg=k)
    eqr = ref.equip_kpis(day.equip, ids, (end - w) * MIN, end * MIN, 300.0)
    for k in EQUIP_KPIS:
        want = np.array([eqr[int(e)][k] for e in ids])
        got = calc.compute(k, "element", end, w, min_samples=0)
        np.testing.assert_allclose(got.value, want, rtol=1e-5, equal_nan=True, err_msg=k)
    check_qos_kpis(calc, day.qos, ids, end, w, min_samples=0)


def test_hour_ring_exact_after_minutes_leave_the_ring(rng):
    """Hour columns (per service, equipment and QoS counters) over 3 hours fed in time order
    through a 40-minute ring equal the sums of the accepted records."""
    topo = topo6()
    hc = [("attempts", "voice"), ("attempts", ""), ("up_s", ""), ("latency_n", "")]
    store = CounterStore(topo, 40, hour_columns=hc, hour_ring=5)
    cdr = random_cdr(rng, 900, topo.ids["element"], 180)
    cdr["element_id"][:3] = 999  # rejected rows add nothing anywhere
    eq = empty("equip", 80)
    eq["ts_ms"] = T0 + rng.integers(0, 180, 80) * MIN
    eq["element_id"] = np.r_[[999], rng.choice(topo.ids["element"], 79)]
    eq["metric_id"] = 3
    eq["value"] = rng.uniform(0, 100, 80)
    q = empty("qos", 60)
    q["ts_ms"] = T0 + rng.integers(0, 180, 60) * MIN
    q["element_id"] = np.r_[[999], rng.choice(topo.ids["element"], 59)]
    q["latency_ms"] = rng.uniform(1, 50, 60)
    for m0 in range(0, 180, 10):  # ten minutes at a time, in time order
        for src, b, f in (("cdr", cdr, "start_ms"), ("equip", eq, "ts_ms"), ("qos", q, "ts_ms")):
            sel = (b[f] >= T0 + m0 * MIN) & (b[f] < T0 + (m0 + 10) * MIN)
            assert store.add(src, b[sel]).rejected.get("too_late", 0) == 0
    rows = np.arange(6, dtype=np.int64)
    ids = topo.ids["element"]
    want = {
        0: [np.sum((cdr["element_id"] == e) & (cdr["service"] == 0)) for e in ids],
        1: [np.sum(cdr["element_id"] == e) for e in ids],
        2: [np.sum(300.0 - eq["value"][eq["element_id"] == e]) for e in ids],
        3: [np.sum(q["element_id"] == e) for e in ids],
    }
    for j in range(4):
        got = store.hour_sums(j, T0 // MIN + 180, 3, rows)  # 2 hours flushed + 1 partly in the ring
        # float32 buckets of uniform reals for up_s; exact integers for the counts
        np.testing.assert_allclose(got, want[j], rtol=1e-6, err_msg=str(hc[j]))
    np.testing.assert_allclose(
        store.hour_sums(1, T0 // MIN + 150, 1, rows),
        [
            np.sum((cdr["element_id"] == e) & (cdr["start_ms"] >= T0 + 120 * MIN) & (cdr["start_ms"] < T0 + 150 * MIN))
            for e in ids
        ],
        rtol=0,
    )


def test_merge_hour_ring_realigns():
    topo = topo6()
    hc = [("attempts", "")]
    a = CounterStore(topo, 40, hour_columns=hc, hour_ring=4)
    b = CounterStore(topo, 40, hour_columns=hc, hour_ring=4)
    a.add("cdr", calls([(10, 200, 16, True, 1.0)]))  # a starts in hour 3
    b.add("cdr", calls([(10, 10, 16, True, 1.0)]))
    b.add("cdr", calls([(10, 100, 16, True, 1.0)]))  # b flushed minute 10 into its hour 0
    a.merge(b)
    assert a.hour.sum() == 2 and a.slot_hour[0] == M_HOUR and a.slot_hour[1] == M_HOUR + 1
    assert a.hour_sums(0, T0 // MIN + 201, 4, np.arange(6, dtype=np.int64))[0] == 3
    c = CounterStore(topo, 40, hour_columns=hc, hour_ring=4)
    c.add("cdr", calls([(10, 400, 16, True, 1.0)]))
    c.merge(b)  # hour 0 and 1 are older than c's ring
    assert c.rejected[K.R_TOO_LATE] == 2


@settings(max_examples=8)
@given(seed=st.integers(0, 2**32 - 1), lead=st.integers(0, 25))
@example(seed=4_219_676_573, lead=3)  # float32 accumulation without JIT (NEP 50) was inexact
def test_running_aggregates_equal_fresh_window_sums(seed, lead):
    """Running per-window aggregates (moved one minute per tick, updated by late rows, by
    minutes leaving the ring while the data runs ``lead`` minutes ahead, and by hour flushes)
    equal window sums recomputed from the rings at every tick."""
    rng = np.random.default_rng(seed)
    topo = topo6()
    store = CounterStore(topo, 30, hour_columns=[("attempts", ""), ("setup_ok", "voice"), ("up_s", "")], hour_ring=6)
    calc = KpiCalculator(store)
    ids = topo.ids["element"]
    every = np.arange(6, dtype=np.int64)
    m0 = T0 // MIN
    for tick in range(1, 50):
        now = tick + lead  # data arrives up to `lead` minutes ahead
        c = random_cdr(rng, 12, ids, 1)
        c["start_ms"] += (now - rng.integers(0, 20, 12) * (rng.random(12) < 0.3)) * MIN  # 30 % late
        c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 60_000
        store.add("cdr", c)
        if tick % 3 == 0:
            eq = empty("equip", 4)
            eq["ts_ms"] = T0 + (now - rng.integers(0, 12, 4)) * MIN
            eq["element_id"] = rng.choice(ids, 4)
            eq["metric_id"] = rng.choice([1, 3], 4)
            eq["value"] = rng.uniform(0, 60, 4)
            store.add("equip", eq)
            q = empty("qos", 3)
            q["ts_ms"] = T0 + (now - rng.integers(0, 12, 3)) * MIN
            q["element_id"] = rng.choice(ids, 3)
            q["latency_ms"] = rng.lognormal(3, 1, 3)
            store.add("qos", q)
        end = m0 + tick
        for w in (1, 12):
            names = ["attempts", "setup_ok", "hold_s"]
            for svc in ("", "voice"):
                run = calc.counter_sums(names, svc, end, w)
                fresh = calc.counter_sums(names, svc, end, w, every)
                for k in names:
                    # counts are integers (exact); hold_s sums float32 values whose float64 sums are exact
                    np.testing.assert_allclose(run[k], fresh[k], rtol=0 if k != "hold_s" else 1e-12, err_msg=k)
            run = calc.counter_sums(["up_s", "latency_n"], "", end, w)
            fresh = calc.counter_sums(["up_s", "latency_n"], "", end, w, every)
            np.testing.assert_allclose(run["up_s"], fresh["up_s"], rtol=1e-12)
            np.testing.assert_array_equal(run["latency_n"], fresh["latency_n"])
            np.testing.assert_array_equal(calc.hist_sums(end, w), calc.hist_sums(end, w, every))
            for src in ("cdr", "equip", "qos"):
                a, b = calc.activity(src, end, w), calc.activity(src, end, w, every)
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
        for j, n_h in ((0, 1), (0, 3), (1, 4), (2, 2)):
            np.testing.assert_allclose(
                store.hour_sums(j, end, n_h), store.hour_sums(j, end, n_h, every), rtol=1e-12 if j == 2 else 0
            )
    # a backward query and a merge recompute from the rings
    np.testing.assert_array_equal(
        calc.counter_sums(["attempts"], "", m0 + 50, 5)["attempts"],
        calc.counter_sums(["attempts"], "", m0 + 50, 5, every)["attempts"],
    )
    store.merge(CounterStore(topo, 30, hour_columns=store.hour_columns, hour_ring=6))  # a new store version
    np.testing.assert_array_equal(
        calc.counter_sums(["attempts"], "", m0 + 49, 5)["attempts"],
        calc.counter_sums(["attempts"], "", m0 + 49, 5, every)["attempts"],
    )


def test_masked_element_level_and_site_quantile_match_the_subset_path(rng):
    """Element-level KPIs with a scope mask (identity roll-up) and site-level quantiles equal the
    same KPIs computed through the subset (re-evaluation) path; a merge and a recycled hour slot
    keep running aggregates equal to fresh sums."""
    topo = topo6()
    store = CounterStore(topo, 30, hour_columns=[("attempts", "")], hour_ring=3)
    q = empty("qos", 300)
    q["ts_ms"] = T0 + rng.integers(0, 20, 300) * MIN
    q["element_id"] = rng.choice(topo.ids["element"], 300)
    q["latency_ms"] = rng.lognormal(3, 1, 300)
    store.add("qos", q)
    store.add("cdr", random_cdr(rng, 200, topo.ids["element"], 20))
    calc = KpiCalculator(store)
    every = np.arange(6, dtype=np.int64)
    mask = np.array([True, False, True, True, False, True])
    end = T0 // MIN + 20
    for k, level in (("latency_p95_ms", "element"), ("blocking_pct", "element"), ("latency_p95_ms", "site")):
        a = calc.compute(k, level, end, 15, element_mask=mask)
        b = calc.compute(k, level, end, 15, element_mask=mask, rows=every)
        np.testing.assert_array_equal(a.status, b.status)
        np.testing.assert_array_equal(a.samples, b.samples)
        np.testing.assert_array_equal(a.value, b.value)
    assert (calc.compute("blocking_pct", "element", end, 15, element_mask=mask).status[~mask] == STATUS_NO_SCOPE).all()
    other = CounterStore(topo, 30, hour_columns=[("attempts", "")], hour_ring=3)
    other.add("cdr", random_cdr(rng, 50, topo.ids["element"], 20))
    store.merge(other)  # a new store version: the calculator's cached sums are dropped
    np.testing.assert_array_equal(
        calc.counter_sums(["attempts"], "", end, 15)["attempts"],
        calc.counter_sums(["attempts"], "", end, 15, every)["attempts"],
    )
    # hours move on past the 3-hour ring: recycled hour slots leave the running hour window
    for h in range(1, 6):
        store.hour_sums(0, end + 60 * h - 60, 3)
        store.add("cdr", random_cdr(rng, 30, topo.ids["element"], 1)[:30].copy())
        c = random_cdr(rng, 30, topo.ids["element"], 1)
        c["start_ms"] += 60 * h * MIN
        c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 5000
        store.add("cdr", c)
        np.testing.assert_array_equal(store.hour_sums(0, end + 60 * h, 3), store.hour_sums(0, end + 60 * h, 3, every))
