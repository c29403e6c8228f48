"""Leaner late-data re-evaluation: the counters the rules read kept between re-evaluations, the
quantile rules' sample counts from the span's prefix sums, all ticks' histograms and expected
active minutes of a span at once; each checked against the per-tick evaluation."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.kpi import COUNTERS, KpiCalculator, kpi_registry

from .test_sla_fast import _monitor
from .test_sla_series import filled_store


def test_rule_counters_are_kept_until_the_lifecycles_change():
    mon = _monitor(minutes=20)
    first = mon._rule_counters()
    assert mon._rule_counters() is first  # kept
    assert first == mon._rule_counters_of_evals()
    # a quantile rule's sample count is read from the span's prefix sums as well
    quantile = [ev for ev in mon.evals if mon.kpis[ev.kpi].kind == "quantile"]
    assert quantile
    for ev in quantile:
        c = mon.kpis[ev.kpi].samples_counter
        assert (c, "") in first[COUNTERS[c].group]
    # fewer lifecycles: built again, for them only
    evals = mon.evals
    mon.evals = [ev for ev in evals if mon.kpis[ev.kpi].kind == "quantile"]
    try:
        fewer = mon._rule_counters()
        assert fewer is not first and fewer == mon._rule_counters_of_evals()
        assert fewer != first
    finally:
        mon.evals = evals
    assert mon._rule_counters() == first


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True),
    w=st.integers(1, 20),
    n_ticks=st.integers(1, 10),
    level=st.sampled_from(["element", "site", "region"]),
    kpi=st.sampled_from(["latency_p50_ms", "latency_p95_ms", "availability_pct", "loss_pct"]),
    prefix=st.booleans(),
)
def test_span_quantiles_and_gaps_equal_the_per_tick_compute(seed, rows, w, n_ticks, level, kpi, prefix):
    """Quantile KPIs (every tick's histograms rolled up and read at once) and gap-source KPIs
    (expected active minutes of all ticks at once) inside a span equal ``compute`` tick by tick."""
    store, _ = filled_store(seed % 1000)
    calc = KpiCalculator(store)
    end = store.head_minute + 1
    t_from, t_to = end - n_ticks + 1, end
    r = np.array(sorted(rows), np.int64)
    kd = kpi_registry()[kpi]
    keys = None
    if prefix:
        keys = {}
        for c in list(KpiCalculator._names(kd)) + ["equip_rows", "qos_rows"]:
            keys.setdefault(COUNTERS[c].group, {})[(c, "")] = None
        keys = {g: list(v) for g, v in keys.items()}
    calc.begin_series(t_from, t_to, keys, {"cdr": r, "elem": r} if prefix else None)
    try:
        span = calc.compute_span(kpi, level, t_from, t_to, w, rows=r, min_samples=1.0)
    finally:
        calc.end_series()
    for k, t in enumerate(range(t_from, t_to + 1)):  # outside the span: no shared series
        want = calc.compute(kpi, level, t, w, rows=r, min_samples=1.0)
        np.testing.assert_array_equal(span.value[k], want.value)
        np.testing.assert_array_equal(span.samples[k], want.samples)
        np.testing.assert_array_equal(span.status[k], want.status)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 8),
    L=st.integers(1, 12),
    for_ticks=st.integers(0, 3),
    clear_for_ticks=st.integers(0, 3),
    sign=st.sampled_from([1.0, -1.0]),
    f32=st.booleans(),
)
def test_rule_steps_equal_one_rule_step_per_tick(seed, n, L, for_ticks, clear_for_ticks, sign, f32):
    """The late-data replay's multi-tick kernel gives the lifecycles and events (with their ticks)
    of one ``sla_rule_step`` per tick, from a ring of conditions in any order of positions."""
    from kernels import sla as SK

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, (L, n)).astype(np.int8)
    values = rng.normal(50, 20, (L, n)).astype(np.float32 if f32 else np.float64)
    pos = (np.arange(L) + rng.integers(0, L)) % L
    nodes = np.sort(rng.choice(n, rng.integers(1, n + 1), replace=False)).astype(np.int64)
    state0 = rng.integers(0, 3, n).astype(np.int8)
    count0 = rng.integers(0, 3, n).astype(np.int64)
    start0 = rng.integers(0, 10, n).astype(np.int64) * 60_000
    worst0 = rng.normal(50, 20, n)
    t0, step = 1_000 * 60_000, 60_000

    a = [x.copy() for x in (state0, count0, start0, worst0)]
    m = L * len(nodes)
    bufs = [np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int8), np.empty(m, np.int64)]
    bufs += [np.empty(m), np.empty(m)]
    k = SK.sla_rule_steps(nodes, codes, values, pos, t0, step, for_ticks, clear_for_ticks, sign, *a, *bufs)
    got = [tuple(b[i].item() for b in bufs) for i in range(k)]

    b = [x.copy() for x in (state0, count0, start0, worst0)]
    want = []
    one = [np.empty(n, np.int64), np.empty(n, np.int8), np.empty(n, np.int64), np.empty(n), np.empty(n)]
    for j, p in enumerate(pos):
        c = SK.sla_rule_step(
            nodes,
            codes[p],
            np.ascontiguousarray(values[p], dtype=np.float64),
            t0 + j * step,
            for_ticks,
            clear_for_ticks,
            sign,
            *b,
            *one,
        )
        want += [(j,) + tuple(x[i].item() for x in one) for i in range(c)]
    assert got == want
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), minutes=st.integers(1, 70), n_ticks=st.integers(1, 20), back=st.integers(0, 40))
def test_span_expected_factors_equal_expected_factor_per_tick(seed, minutes, n_ticks, back):
    """All ticks' expected-minutes factors of a span (one cumulative count) equal
    ``_expected_factor`` tick by tick, for every window up to past the ring, also before the data
    spans the history."""
    store, _ = filled_store(seed % 1000, minutes=minutes)
    calc = KpiCalculator(store)
    t_to = store.head_minute + 1 - back
    t_from = t_to - n_ticks + 1
    calc.begin_series(t_from, t_to)
    try:
        for w in range(1, store.minute_ring + 3):
            got = calc._span_expected_factors(w)
            want = [calc._expected_factor(t, w) for t in range(t_from, t_to + 1)]
            np.testing.assert_array_equal(got, np.array(want))
    finally:
        calc.end_series()
