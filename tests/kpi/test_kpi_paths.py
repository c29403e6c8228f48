"""The production ratio path (one fused kernel over all elements) against the step-by-step
reference in tests/reference/kpi.py (window sums, NumPy roll-up, value and status rules)."""

import numpy as np
import pytest

from telcoanalytics.kpi import CounterStore, KpiCalculator, KpiDef, kpi_registry
from telcoanalytics.records import SERVICES, empty
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6
from tests.reference import kpi as ref

CASES = [
    ("element", None),
    ("site", None),
    ("region", None),
    ("element", np.array([1, 1, 0, 1, 1, 0], bool)),
    ("site", np.array([1, 0, 1, 1, 0, 1], bool)),
]


def filled_store(seed, minutes=40, lead_late=25):
    """Calls every minute (some late), equipment and QoS reports every 4 minutes (collection gaps)."""
    rng = np.random.default_rng(seed)
    topo = topo6()
    store = CounterStore(topo, 30)
    ids = topo.ids["element"]
    for t in range(minutes):
        c = random_cdr(rng, 10, ids, 1)
        c["start_ms"] += (t - rng.integers(0, lead_late, 10) * (rng.random(10) < 0.3)) * MIN
        c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 61_500
        store.add("cdr", c)
        if t % 4 == 0:
            eq = empty("equip", 3)
            eq["ts_ms"] = T0 + (t - rng.integers(0, 5, 3)) * MIN
            eq["element_id"] = rng.choice(ids, 3)
            eq["metric_id"] = rng.choice([0, 3], 3)
            eq["value"] = rng.uniform(0, 60, 3)
            store.add("equip", eq)
            q = empty("qos", 3)
            q["ts_ms"] = T0 + t * MIN
            q["element_id"] = rng.choice(ids, 3)
            q["latency_ms"] = rng.lognormal(3, 1, 3)
            store.add("qos", q)
    return store


@pytest.mark.parametrize("seed", [3, 8])
def test_fused_ratio_kpis_equal_the_step_by_step_reference(seed):
    # call KPIs without gaps, equipment / QoS ratio KPIs with collection gaps, user KPIs with several
    # numerator counters and one service, every level, with and without a scope mask, running sums
    # moved minute by minute: equal bits
    store = filled_store(seed)
    extra = [
        KpiDef(
            "answered_or_blocked_pct",
            ("answered", "blocked"),
            ("attempts", "failures"),
            "ratio",
            100.0,
            min_samples=2.0,
        ),
        KpiDef("voice_drop_pct", ("drops",), ("answered",), "ratio", 100.0, service=SERVICES[0]),
    ]
    kpis = kpi_registry(extra)
    names = [k for k, kd in kpis.items() if kd.kind == "ratio"]
    calc = KpiCalculator(store, kpis)
    end = store.head_minute + 1
    n_ok, seen = 0, set()
    for name in names:
        for level, mask in CASES:
            for t in (end - 3, end - 2, end):
                for w in (1, 5, 12):
                    got = calc.compute(name, level, t, w, element_mask=mask, min_samples=1.0)
                    value, samples, status = ref.ratio_kpi_step_by_step(calc, kpis[name], level, t, w, mask, 1.0)
                    np.testing.assert_array_equal(got.status, status, err_msg=f"{name} {level} {t} {w}")
                    np.testing.assert_array_equal(got.samples, samples, err_msg=f"{name} {level} {t} {w}")
                    np.testing.assert_array_equal(got.value, value, err_msg=f"{name} {level} {t} {w}")
                    n_ok += int((status == 0).sum())
                    seen |= {int(x) for x in status}
    assert n_ok > 100  # values, not only statuses, were compared
    assert seen == {0, 1, 2, 3}  # ok, insufficient, collection gap and no scope all occurred
