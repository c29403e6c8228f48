"""``EventClock.observe_route``: the clock of :meth:`EventClock.observe` and the routing of the
batch in one pass; references: ``observe`` itself (NumPy partition) and ``route[idx]`` / ``bincount``."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.ingest.clock import EventClock


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    window=st.integers(1, 16),
    outliers=st.integers(0, 15),
    seed=st.integers(0, 2**16),
)
def test_observe_route_equals_observe_and_a_gather(sizes, window, outliers, seed):
    outliers = min(outliers, window - 1)
    rng = np.random.default_rng(seed)
    route = rng.integers(-1, 5, 30).astype(np.int64)  # -1: retired element
    a, b = EventClock(window=window, outliers=outliers), EventClock(window=window, outliers=outliers)
    for n in sizes:
        t = 1_700_000_000_000 + rng.integers(0, 10**7, n) + (rng.random(n) < 0.1) * 10**9
        idx = rng.integers(0, len(route), n).astype(np.int64)
        counts = np.zeros(7, np.int64)
        counts[2] = 5  # counts accumulate
        a.observe(t)
        node, t_max = b.observe_route(t, idx, route, counts)
        assert b.now_ms == a.now_ms and b._recent.tolist() == a._recent.tolist()
        assert node.tolist() == route[idx].tolist()
        want = np.bincount(route[idx] + 1, minlength=7)
        want[2] += 5
        assert counts.tolist() == want.tolist()
        assert t_max == (int(t.max()) if n else np.iinfo(np.int64).min)


def test_observe_route_reads_a_field_of_records():
    rows = np.zeros(5, dtype=[("x", "i2"), ("ts_ms", "i8")])
    rows["ts_ms"] = [5, 9, 7, 100, 8]
    c = EventClock(window=4, outliers=1)
    node, t_max = c.observe_route(rows["ts_ms"], np.arange(5), np.array([0, 0, 1, 1, -1]), np.zeros(3, np.int64))
    assert t_max == 100 and c.now_ms == 9 and node.tolist() == [0, 0, 1, 1, -1]
    assert c._recent.tolist() == [9, 7, 100, 8]
