"""Standing (registered) window queries: bit-identical to ``SlidingWindows.query`` whatever
happens between two calls, while reading the whole span only once per query bucket."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import windows as kw
from telcoanalytics.windows.decay import Decay, as_decay
from telcoanalytics.windows.sliding import STAT_FIELDS, SlidingWindows, StandingQuery
from tests.reference.windows import ref_window_stats

T0 = 1_700_000_000_000
RES = ((1_000, 30), (60_000, 20), (3_600_000, 6))
DECAYS = [
    None,
    Decay.exponential(90.0),
    Decay.linear(600.0),
    Decay.power(1.5, 60.0),
    Decay.gaussian(300.0),
    Decay.step(240.0),
    (lambda age: 1.0 / (1.0 + age)),
    np.linspace(1.0, 0.1, 20),
]


def same(sq, w, t, span_ms, decay, slots=None, resolution=None):
    """The standing answer equals a fresh query bit for bit (NaN where NaN)."""
    got = sq(t)
    ref = w.query(t, span_ms, decay=decay, slots=slots, resolution=resolution)
    for f in STAT_FIELDS:
        np.testing.assert_array_equal(got[f], ref[f], err_msg=f"{f} at t={t}")
    return got


def stream(rng, n, n_slots, span_ms, jitter_ms):
    ts = np.sort(rng.integers(0, span_ms, n)) + T0 - rng.integers(0, jitter_ms + 1, n)
    return ts.astype(np.int64), rng.integers(0, n_slots, n).astype(np.int64), rng.normal(50.0, 10.0, n)


@pytest.mark.parametrize("decay", DECAYS, ids=lambda d: d.kind if isinstance(d, Decay) else type(d).__name__)
def test_standing_equals_query_through_a_stream(rng, decay):
    """Batches with late events (lateness 10 s, 1 min buckets), queries at the newest event
    after every batch: equal to ``query`` each time, and the span is read once per minute."""
    n_slots = 9
    ts, sl, x = stream(rng, 4000, n_slots, 45 * 60_000, jitter_ms=8_000)
    w = SlidingWindows(n_slots, RES, allowed_lateness_ms=10_000)
    sq = w.standing_query(20 * 60_000, decay=decay)
    sq0 = w.standing_query(20 * 60_000, decay=decay, spread_buckets=0)
    minutes = []
    for chunk in np.array_split(np.arange(len(ts)), 80):
        w.update(ts[chunk], sl[chunk], x[chunk])
        t = w.max_ts_ms
        minutes.append(t // 60_000)
        got = same(sq, w, t, 20 * 60_000, decay)
        same(sq0, w, t, 20 * 60_000, decay)
    assert sq.n_calls == 80
    assert sq0.n_builds == len(set(minutes))  # no look-ahead: one full read per query bucket
    # with look-ahead: a full read only first and where the query time skipped a bucket
    skips = sum(1 for a, b in zip(minutes, minutes[1:]) if b > a + 1)
    assert sq.n_builds == 1 + skips < len(set(minutes))
    # and the answer is the statistic recomputed from the raw accepted events
    ok = np.ones(len(ts), bool)  # nothing was late: jitter < lateness
    assert w.n_accepted == len(ts)
    ref = ref_window_stats(
        ts[ok], sl[ok], x[ok], n_slots, 60_000, 20, t, as_decay(decay).weights(20, 60.0), max_ts=w.max_ts_ms
    )
    for f in STAT_FIELDS:
        # Chan's one-pass combination vs an fsum two-pass reference, values O(50): 1e-9 relative
        np.testing.assert_allclose(got[f], ref[f], rtol=1e-9, atol=0, equal_nan=True, err_msg=f)


def test_late_event_into_a_settled_looking_bucket_is_seen():
    """An event inside the allowed lateness lands in the previous bucket after the standing
    query kept its aggregate: that bucket was still live (after the watermark's bucket)."""
    w = SlidingWindows(2, ((60_000, 10),), allowed_lateness_ms=30_000)
    w.update(np.array([T0 + 50_000, T0 + 61_000]), np.array([0, 1]), np.array([1.0, 2.0]))
    sq = w.standing_query(600_000)
    same(sq, w, w.max_ts_ms, 600_000, None)
    w.update(np.array([T0 + 40_000]), np.array([0]), np.array([7.0]))  # 21 s late: accepted
    got = same(sq, w, w.max_ts_ms, 600_000, None)
    assert got["count"][0] == 2.0 and got["max"][0] == 7.0
    assert sq.n_builds == 1


def test_rebuilds_on_new_bucket_merge_recycling_and_invalidate():
    w = SlidingWindows(3, ((60_000, 5),), allowed_lateness_ms=0)
    w.update(np.array([T0, T0 + 60_000, T0 + 120_000]), np.arange(3), np.array([1.0, 2.0, 3.0]))
    sq = w.standing_query(300_000, decay=Decay.linear(600.0))
    t = T0 + 120_000
    same(sq, w, t, 300_000, Decay.linear(600.0))
    same(sq, w, t + 5, 300_000, Decay.linear(600.0))
    assert sq.n_builds == 1
    # another partition merged in changes settled buckets
    other = SlidingWindows(3, ((60_000, 5),), allowed_lateness_ms=0)
    other.update(np.array([T0 + 1]), np.array([0]), np.array([10.0]))
    w.merge(other)
    got = same(sq, w, t, 300_000, Decay.linear(600.0))
    assert sq.n_builds == 2 and got["count"][0] > 1.0
    # a query time in the past whose oldest buckets the ring has recycled: read again each call
    w.update(np.array([T0 + 5 * 60_000]), np.array([1]), np.array([4.0]))
    for _ in range(2):
        same(sq, w, T0 + 4 * 60_000, 300_000, Decay.linear(600.0))
    assert sq.n_builds == 4
    # a direct write to the cells is not seen until invalidate()
    same(sq, w, T0 + 5 * 60_000, 300_000, Decay.linear(600.0))
    c = int(w.offset[0]) + (T0 // 60_000 + 2) % 5 * 3 + 2
    w.cells[c, kw.MAX] = 99.0
    assert sq(T0 + 5 * 60_000)["max"][2] != 99.0
    sq.invalidate()
    assert same(sq, w, T0 + 5 * 60_000, 300_000, Decay.linear(600.0))["max"][2] == 99.0


def test_query_before_any_event_and_ahead_of_the_data():
    w = SlidingWindows(2, ((1_000, 30),), allowed_lateness_ms=2_000)
    sq = w.standing_query(10_000, decay=Decay.exponential(5.0), slots=[1])
    got = same(sq, w, T0, 10_000, Decay.exponential(5.0), slots=[1])
    assert got["count"].tolist() == [0.0] and np.isnan(got["mean"][0])
    w.update(np.array([T0 + 500, T0 + 1_500]), np.array([1, 1]), np.array([1.0, 3.0]))
    # query time 20 s ahead of the newest event: its buckets may still fill, so they stay live
    same(sq, w, T0 + 20_000, 10_000, Decay.exponential(5.0), slots=[1])
    w.update(np.array([T0 + 19_000]), np.array([1]), np.array([5.0]))
    got = same(sq, w, T0 + 20_000, 10_000, Decay.exponential(5.0), slots=[1])
    assert got["max"][0] == 5.0
    assert len(got) == 1 and sq.nbytes == 80


def test_lateness_longer_than_the_span_reads_everything_live():
    w = SlidingWindows(2, ((1_000, 30),), allowed_lateness_ms=60_000)
    w.update(np.array([T0, T0 + 9_000]), np.array([0, 1]), np.array([1.0, 2.0]))
    sq = w.standing_query(10_000)
    same(sq, w, T0 + 9_000, 10_000, None)
    assert sq._k_live == sq.n_span  # nothing is settled yet
    w.update(np.array([T0 + 1_000]), np.array([0]), np.array([5.0]))
    assert same(sq, w, T0 + 9_000, 10_000, None)["count"][0] == 2.0


def test_errors():
    w = SlidingWindows(2, ((60_000, 5),))
    with pytest.raises(TypeError, match="SlidingWindows"):
        StandingQuery(object(), 60_000)
    with pytest.raises(ValueError, match="no resolution covers"):
        w.standing_query(90_000)
    with pytest.raises(ValueError, match="span_ms must be positive"):
        w.standing_query(0)
    with pytest.raises(ValueError, match="out of range"):
        w.standing_query(60_000, resolution=3)
    with pytest.raises(ValueError, match="not a whole number"):
        w.standing_query(60_000 * 6, resolution=0)
    with pytest.raises(ValueError):
        w.standing_query(60_000, slots=[5])
    with pytest.raises(ValueError, match="spread_buckets must be >= 0"):
        w.standing_query(60_000, spread_buckets=-1)


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    n_batches=st.integers(1, 12),
    lateness_s=st.integers(0, 120),
    jitter_s=st.integers(0, 150),
    res=st.sampled_from([0, 1]),
    offsets=st.lists(st.integers(-200_000, 200_000), min_size=1, max_size=3),
)
def test_standing_equals_query_any_stream(seed, n, n_batches, lateness_s, jitter_s, res, offsets):
    """Any stream, any batching, late and too-late events, query times around the newest event
    (past, same bucket, future): always bit-identical to a fresh ``query``."""
    rng = np.random.default_rng(seed)
    n_slots = 4
    ts, sl, x = stream(rng, n, n_slots, 30 * 60_000, jitter_ms=jitter_s * 1000)
    w = SlidingWindows(n_slots, ((10_000, 40), (60_000, 30)), allowed_lateness_ms=lateness_s * 1000)
    span = (400_000, 1_800_000)[res]
    decay = Decay.exponential(120.0)
    sq = w.standing_query(span, decay=decay, resolution=res)
    for chunk in np.array_split(np.arange(n), n_batches):
        w.update(ts[chunk], sl[chunk], x[chunk])
        base = w.max_ts_ms if w.max_ts_ms is not None else T0
        for off in offsets:
            same(sq, w, base + off, span, decay, resolution=res)


def test_zero_weight_live_bucket_is_skipped():
    """A user weight vector that ignores the current bucket: live buckets with weight 0 count for
    nothing, min/max included."""
    decay = Decay.weights_of([0.0, 1.0, 1.0, 1.0])
    w = SlidingWindows(1, ((60_000, 5),), allowed_lateness_ms=0)
    w.update(np.array([T0, T0 + 60_000]), np.array([0, 0]), np.array([1.0, 50.0]))
    sq = w.standing_query(240_000, decay=decay)
    got = same(sq, w, T0 + 60_000, 240_000, decay)
    assert got["count"][0] == 1.0 and got["max"][0] == 1.0


def test_next_bucket_prepared_ahead_one_call_per_second():
    """A dashboard asking once per second of event time while 1 min buckets roll: after the
    first call, no call reads the whole 60-bucket span again."""
    rng = np.random.default_rng(3)
    w = SlidingWindows(5, ((60_000, 60),), allowed_lateness_ms=5_000)
    ts, sl, x = stream(rng, 3000, 5, 70 * 60_000, jitter_ms=2_000)
    w.update(ts, sl, x)
    decay = Decay.gaussian(900.0)
    sq = w.standing_query(3_600_000, decay=decay, spread_buckets=2)
    t = w.max_ts_ms
    for i in range(200):  # 200 s: three minute boundaries or so
        t += 1_000
        w.update(np.array([t - int(rng.integers(0, 2_000))]), np.array([i % 5]), np.array([float(i)]))
        same(sq, w, t, 3_600_000, decay)
    assert sq.n_builds == 1 and sq.n_calls == 200
    # a merge may change settled buckets: the prepared aggregate is dropped, one full read
    w.merge(SlidingWindows(5, ((60_000, 60),), allowed_lateness_ms=5_000))
    same(sq, w, t, 3_600_000, decay)
    same(sq, w, t + 60_000, 3_600_000, decay)
    assert sq.n_builds == 2
    sq.invalidate()
    same(sq, w, t + 60_000, 3_600_000, decay)
    assert sq.n_builds == 3
