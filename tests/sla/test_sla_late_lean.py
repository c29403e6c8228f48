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
