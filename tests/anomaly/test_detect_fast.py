"""The detector's hot-path shortcuts change no result: the warm-up table of 1 / n holds the IEEE
quotients a division gives, and a batch scores the same whether the prefetch hints fire (slots
jumping about) or not (slots ascending)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import detect as K
from telcoanalytics.anomaly.detector import AnomalyDetector, DetectorConfig


@given(n_max=st.floats(0.0, 5000.0), n_events=st.integers(0, 20_000))
@settings(max_examples=50, deadline=None)
def test_recip_table_is_the_division(n_max, n_events):
    tab = K._recip_table(n_max, n_events)
    assert 2 <= len(tab) <= K.RECIP_MAX + 2
    k = np.arange(1, len(tab))
    assert np.array_equal(tab[1:], np.float64(1.0) / k)  # NumPy's division, bit for bit
    for j in (1, len(tab) - 1, len(tab), len(tab) + 7):  # inside and past the table
        assert K._recip(tab, j) == 1.0 / j


def _scores(order):
    n_slots, rounds = 400, 30
    rng = np.random.default_rng(7)
    det = AnomalyDetector(n_slots, DetectorConfig.for_interval(300))
    base = 10.0 + 5.0 * rng.random(n_slots)
    out = np.empty((rounds, n_slots, 4))
    for k in range(rounds):
        slots = order(rng, n_slots)
        noise = rng.standard_normal(n_slots) + 40.0 * (rng.random(n_slots) < 0.01)  # some alarms
        v = base[slots] + noise[slots]
        det.update(np.full(n_slots, k * 300_000, dtype=np.int64), slots, v)
        last = det.last
        inv = np.argsort(slots)
        out[k] = np.column_stack([last.z, last.score, last.baseline, last.flags])[inv]
    return out


def test_prefetch_pattern_changes_no_result():
    # the same values per slot in both runs: draw them in slot order, feed in two orders
    asc = _scores(lambda rng, n: np.arange(n, dtype=np.int64))
    perm = _scores(lambda rng, n: np.arange(n, dtype=np.int64)[::-1].copy())
    assert np.any(asc[..., 3].astype(int) & K.FLAG_ALARM)
    np.testing.assert_array_equal(asc, perm)


def test_no_time_no_seasonal_evidence():
    # evidence is the sum of min(dt / bucket, 1) over a slot's steps: events at the slot's first
    # time add none, so the buckets keep no evidence and no offset
    det = AnomalyDetector(2, DetectorConfig.for_interval(300))
    det.update(np.zeros(6, dtype=np.int64), np.array([0, 0, 0, 1, 1, 1]), np.array([1.0, 5.0, 2.0, 3.0, 3.0, 9.0]))
    assert np.all(det.state.seas_d == 0.0) and np.all(det.state.seas_w == 0.0)
    assert np.all(det.last.flags & K.FLAG_LEARNED)  # they were learned (warm-up), by the level only
