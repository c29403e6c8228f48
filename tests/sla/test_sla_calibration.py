"""Calibration of the default SLA rules against a normal network (no scenario injected)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.sla.calibration import calibration_table, healthy_values, normal_day, normal_firings, sustained_edge
from telcoanalytics.sla.sla import default_rules


def _reference_edge(values, k, up):
    """Plain loops: the most extreme level a node held in k consecutive samples (NaN breaks)."""
    best = None
    n_t, n = values.shape
    for j in range(n):
        for t in range(n_t - k + 1):
            w = values[t : t + k, j]
            if np.isnan(w).any():
                continue
            level = w.min() if up else w.max()
            if best is None or (level > best if up else level < best):
                best = level
    return np.nan if best is None else best


@settings(deadline=None, max_examples=80)
@given(
    st.integers(1, 12),
    st.integers(1, 4),
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_sustained_edge_matches_loops(n_t, n, k, up, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n_t, n))
    v[rng.random(v.shape) < 0.2] = np.nan
    got, want = sustained_edge(v, k, up), _reference_edge(v, k, up)
    if np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == want  # the same numbers are selected: exact


@pytest.fixture(scope="module")
def small_normal_day():
    return normal_day(n_elements=300, seed=105, days=0.5)


@pytest.mark.slow
def test_default_rules_fire_nothing_on_a_normal_network(small_normal_day):
    """A held-out normal half-day (seed 105, not a calibration seed), busy hours included: the
    default rules, calibrated on seeds 101 and 102, fire none."""
    assert normal_firings(small_normal_day) == {}


@pytest.mark.slow
def test_healthy_values_stay_below_every_threshold_for_the_rule_s_for(small_normal_day):
    rules = default_rules(small_normal_day.topology)
    vals = healthy_values(small_normal_day, rules, step_min=5)
    table = calibration_table(vals, rules)
    assert table[0].split()[:2] == ["rule", "samples"] and len(table) == 1 + sum(r.name in vals for r in rules)
    for r in rules:
        if r.name not in vals:
            continue
        v, hours = vals[r.name]
        assert v.shape[0] == hours.shape[0] and v.shape[1] == small_normal_day.topology.n_nodes(r.level)
        up = r.comparator in (">", ">=")
        held = sustained_edge(v, 1 + r.for_min // 5, up)
        if not np.isnan(held):
            assert (held <= r.threshold) if up else (held >= r.threshold), (r.name, held, r.threshold)
