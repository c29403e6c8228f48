"""SLO windows longer than the minute ring over all elements (``SlaMonitor._hour_window_all``): the
(good, total) counts per node equal those summed from the rings for every element
(``CounterStore.hour_sums`` over rows, ``kpi_window_sum``), and the burn rates of
``kernels.sla.sla_burn_of_counts`` equal a plain Python reference node by node."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from kernels import sla as SK
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import topo6

from .test_sla_fused import _feed

SLOS = [
    {
        "type": "slo",
        "name": "slo_site",
        "kpi": "call_setup_success_pct",
        "objective": 0.95,
        "level": "site",
        "windows": [{"severity": "page", "factor": 2.0, "long": "3h", "short": "50m"}],
    },
    {
        "type": "slo",
        "name": "slo_el",
        "kpi": "call_setup_success_pct",
        "objective": 0.9,
        "level": "element",
        "filter": {"equipment_class": [0, 2]},
        "windows": [{"severity": "ticket", "factor": 1.0, "long": "2h", "short": "45m"}],
    },
]


@pytest.mark.parametrize("late", [False, True])
def test_hour_windows_over_all_elements_equal_the_sums_from_the_rings(late):
    mon = SlaMonitor(topo6(), SLOS, minute_ring=40, reeval_minutes=10)
    rows = np.arange(topo6().n_elements, dtype=np.int64)
    n_checked, n_total = 0, 0.0
    for _ in _feed(mon, 200, 13, late):
        t = mon.last_tick
        if t < 0:
            continue
        for ev in mon.evals:
            kd = mon.kpis[ev.kpi]
            for w in ev.burn[2:]:
                if w + mon.reeval_minutes + 1 <= mon.store.minute_ring:
                    continue  # a minute-ring window: not this path
                mon._memo.clear()
                got = mon._hour_window(ev, kd, t, w, None)
                want = mon._hour_window(ev, kd, t, w, rows)  # ring sums over every element
                np.testing.assert_array_equal(got, want, err_msg=f"{ev.name} tick {t} window {w}")
                n_checked += 1
                n_total += float(got[:, 1].sum())
    mon._memo.clear()
    assert n_checked > 300 and n_total > 0  # windows with calls in them were compared


def _reference(good, total, min_samples, objective, factor):
    has = total > 0
    b = (1.0 - good / total) / (1.0 - objective) if has else math.nan
    ok = total >= max(min_samples, 1e-300)
    quiet = (not has) or not (b >= factor)
    return (b if ok else math.nan), ok, quiet


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda p: (min(p), max(p))), min_size=1, max_size=30
    ),
    st.sampled_from([0.0, 1.0, 20.0]),
    st.sampled_from([0.9, 0.98, 0.999]),
    st.sampled_from([1.0, 6.0, 14.4]),
)
def test_burn_of_counts_kernel_equals_a_python_reference(pairs, min_samples, objective, factor):
    agg = np.array(pairs, np.float64)
    n = len(agg)
    burn, ok, quiet = np.empty(n), np.empty(n, bool), np.empty(n, bool)
    SK.sla_burn_of_counts(agg, min_samples, objective, factor, burn, ok, quiet)
    for i, (g, tot) in enumerate(pairs):
        b, o, q = _reference(float(g), float(tot), min_samples, objective, factor)
        assert ok[i] == o and quiet[i] == q
        assert (math.isnan(b) and math.isnan(burn[i])) or burn[i] == b


def test_add_hour_sum_adds_the_hour_part_and_the_minute_columns_in_order():
    rng = np.random.default_rng(3)
    hours = rng.random((7, 1)) * 100
    minutes = rng.random((7, 5)) * 10
    pos = np.array([4, 1, 2], np.int64)
    x = rng.random((7, 2))
    want = x.copy()
    for e in range(7):
        s = hours[e, 0]
        for p in pos:
            s = s + minutes[e, p]
        want[e, 1] = want[e, 1] + s
    K.kpi_add_hour_sum(x, 1, hours, minutes, pos)
    np.testing.assert_array_equal(x, want)
