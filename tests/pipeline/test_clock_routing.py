"""Pipeline.process and the robust clock: rows ahead of the clock wait or are quarantined, every
other row reaches the components exactly once, never while more than max_skew ahead of the clock.

Invariants checked batch by batch on random offsets (plain-Python bookkeeping, no internals).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.synth.network import generate

SKEW = 5 * 60_000
HORIZON = 6 * 3_600_000


class _Recorder:
    def __init__(self, pipe_ref):
        self.pipe_ref = pipe_ref
        self.seen = []  # (ts, element_index) delivered
        self.worst_ahead = -np.inf

    def update(self, batch):
        t = batch.rows["ts_ms"]
        self.seen += list(zip(t.tolist(), batch.element_index.tolist(), strict=True))
        if len(t):
            self.worst_ahead = max(self.worst_ahead, int(t.max()) - self.pipe_ref[0].clock.now_ms)
        return []

    def advance(self, wm):
        return []

    def finish(self, wm):
        return []

    def topology_changed(self, t, c):
        return []

    def report_lines(self):
        return []

    def to_state(self):
        return {}

    @classmethod
    def from_state(cls, s, t):  # pragma: no cover - not restored here
        return cls([None])


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=30, days=0.05, seed=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(
        st.lists(
            st.one_of(
                st.integers(-600_000, SKEW),  # in time
                st.integers(SKEW + 1, HORIZON),  # waits
                st.integers(HORIZON + 1, 2 * HORIZON),  # quarantined
            ),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=12,
    ),
    step_ms=st.integers(0, 3_600_000),
)
def test_rows_wait_or_are_rejected_and_arrive_once(day, offsets, step_ms):
    ref = [None]
    rec = _Recorder(ref)
    p = Pipeline(day.topology, components={"rec": rec})
    ref[0] = p
    src = day.qos
    uniq = iter(range(10**6))  # distinct times: no row is a duplicate of another
    now = int(src["ts_ms"][0])
    expected, n_rejected, k = [], 0, 0

    def batch(times):
        nonlocal k
        rows = src[k : k + len(times)].copy()
        k += len(times)
        rows["ts_ms"] = np.asarray(times, np.int64) + np.array([next(uniq) for _ in times], np.int64)
        return rows

    for offs in [[0] * 20, *offsets]:
        now += step_ms
        rows = batch([now + o for o in offs])
        clock_before = p.clock.now_ms
        p.process("qos", rows)
        assert p.clock.now_ms >= clock_before
        rej = rows["ts_ms"] - p.clock.now_ms > HORIZON  # against the clock after the batch
        n_rejected += int(rej.sum())
        idx = p.topology.index_of(rows["element_id"])
        expected += [(int(t), int(e)) for t, e, r in zip(rows["ts_ms"], idx, rej, strict=True) if not r]
    assert p.clock.n_rejected == n_rejected
    assert p.counts()["qos"]["quarantined"] == n_rejected
    assert rec.worst_ahead <= SKEW  # nothing reached the components while too far ahead
    # a batch far ahead moves the clock past every waiting row: all of them arrive now
    last = max(t for t, _ in expected) if expected else now
    rows = batch([last + SKEW + 1] * 64)
    p.process("qos", rows)
    expected += list(zip(rows["ts_ms"].tolist(), p.topology.index_of(rows["element_id"]).tolist(), strict=True))
    assert p.clock.held_rows == 0
    assert sorted(rec.seen) == sorted(expected)
    assert len(rec.seen) == len(set(rec.seen))
    assert p.conserved()
