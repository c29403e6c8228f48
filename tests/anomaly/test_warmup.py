"""Warm-up from history (``telcoanalytics.anomaly.warmup``) and the replay component's learning,
against the plain procedure: one stable sort of all events by time, cut at the step ends with
``searchsorted``, a silence check after each step."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import anomaly_events as K
from telcoanalytics.anomaly.warmup import warm_up, warm_up_parts
from telcoanalytics.pipeline.components import AnomalyComponent
from telcoanalytics.synth.network import generate
from telcoanalytics.synth.stream import ORIGIN_CLEAN

H = 3_600_000


class Recorder:
    """A stand-in detector that records what it is fed."""

    def __init__(self):
        self.calls = []

    def update(self, ts, e, m, v):
        self.calls.append(("u", np.array(ts), np.array(e), np.array(m), np.array(v)))

    def check_silence(self, now):
        self.calls.append(("s", int(now)))


def reference_calls(ts, e, m, v, start, until, step):
    """The calls of the plain procedure."""
    o = np.argsort(ts, kind="stable")
    ts, e, m, v = ts[o], e[o], m[o], v[o]
    calls, lo = [], 0
    for t_end in range(start + step, until + step, step):
        k = int(np.searchsorted(ts, min(t_end, until), side="left"))
        calls.append(("u", ts[lo:k], e[lo:k], m[lo:k], v[lo:k]))
        calls.append(("s", min(t_end, until)))
        lo = k
    calls.append(("u", ts[lo:], e[lo:], m[lo:], v[lo:]))
    return calls


def assert_same_calls(got, want):
    assert [c[0] for c in got] == [c[0] for c in want]
    for a, b in zip(got, want):
        if a[0] == "s":
            assert a[1] == b[1]
        else:
            for x, y in zip(a[1:], b[1:]):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)


spans = st.tuples(
    st.integers(-3, 3),  # start, in steps
    st.integers(-2, 30),  # until - start, in quarter steps
    st.sampled_from([1, 7, H]),  # step
)


def _events(seed, n, start, until, step):
    rng = np.random.default_rng(seed)
    lo, hi = start - 2 * step, max(until, start) + 2 * step
    ts = rng.integers(lo, hi + 1, n)
    ts[: n // 3] = np.sort(ts[: n // 3])  # a sorted run, ties included, as collectors deliver
    if n > 4:
        ts[1] = ts[0]
        ts[2] = until
        ts[3] = start + step
    return ts, rng.integers(0, 5, n), rng.integers(0, 3, n), rng.normal(size=n)


@given(
    keys=st.lists(st.integers(-50, 50), max_size=60),
    bounds=st.lists(st.integers(-40, 40), max_size=6),
)
def test_step_order_is_a_stable_grouping_by_step(keys, bounds):
    keys = np.array(keys, dtype=np.int64)
    keys[: len(keys) // 2] = np.sort(keys[: len(keys) // 2])  # a sorted run, as times mostly come
    bounds = np.sort(np.array(bounds, dtype=np.int64))  # repeats allowed
    want_step = np.searchsorted(bounds, keys, side="right")  # bounds at or below each key
    order, starts = np.empty(len(keys), np.int64), np.empty(len(bounds) + 2, np.int64)
    K.step_order(keys, bounds, order, starts)
    np.testing.assert_array_equal(order, np.argsort(want_step, kind="stable"))
    counts = np.bincount(want_step, minlength=len(bounds) + 1)
    np.testing.assert_array_equal(starts, np.concatenate([[0], np.cumsum(counts)]))


def test_step_order_reads_fields_of_rows():
    rows = np.zeros(6, dtype=[("x", "i1"), ("ts_ms", "i8")])  # unaligned, strided
    rows["ts_ms"] = [5, 1, 9, 0, 4, 12]
    order, starts = np.empty(6, np.int64), np.empty(4, np.int64)
    K.step_order(rows["ts_ms"], np.array([5, 10]), order, starts)
    assert order.tolist() == [1, 3, 4, 0, 2, 5] and starts.tolist() == [0, 3, 5, 6]


def _table(ids, dense):
    size = 1 << int(max(4 * len(ids), 16) - 1).bit_length()
    keys, vals = np.zeros(size, np.int64), np.full(size, -1, np.int64)
    K.id_table(np.asarray(ids, np.int64), np.asarray(dense, np.int64), keys, vals)
    return keys, vals


@given(
    ids=st.lists(st.integers(-(2**62), 2**62) | st.integers(0, 40), max_size=30),
    probe=st.lists(st.integers(0, 40), max_size=40),
    seed=st.integers(0, 2**32 - 1),
)
def test_gathered_rows_are_the_numpy_events(ids, probe, seed):
    """gather_rows / gather_pairs against NumPy: the rows' columns, the element through a table
    of ids (a dict of the first value of each id, unknown and dense -1 ids as -1)."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(-1, 5, len(ids))
    keys, vals = _table(ids, dense)
    lut = {}
    for i, d in zip(ids, dense):
        if d >= 0:
            lut.setdefault(i, int(d))
    n = len(probe) + 3
    pool = np.array(list(ids) + [0, 17, -5], dtype=np.int64)
    rows = np.zeros(n, dtype=[("ts_ms", "i8"), ("element_id", "i8"), ("metric_id", "i4"), ("value", "f8"), ("b", "f8")])
    rows["ts_ms"] = rng.integers(0, 9, n)
    rows["element_id"] = np.concatenate([pool[rng.integers(0, len(pool), len(probe))], [17, 17, 3]])
    rows["metric_id"] = rng.integers(0, 6, n)
    rows["value"], rows["b"] = rng.normal(size=n), rng.normal(size=n)
    p = rng.integers(0, n, len(probe)).astype(np.int64)
    p[: len(p) // 2] = np.sort(p[: len(p) // 2])  # runs of one row's element
    want_e = np.array([lut.get(int(x), -1) for x in rows["element_id"][p]], dtype=np.int64)
    out = np.empty(len(p), np.int64), np.empty(len(p), np.int64), np.empty(len(p), np.int64), np.empty(len(p))
    cols = rows["ts_ms"], rows["element_id"], rows["metric_id"], rows["value"]
    K.gather_rows(p, *cols, keys, vals, *out)
    for got, want in zip(out, (rows["ts_ms"][p], want_e, rows["metric_id"][p].astype(np.int64), rows["value"][p])):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    out = (
        np.empty(2 * len(p), np.int64),
        np.empty(2 * len(p), np.int64),
        np.empty(2 * len(p), np.int64),
        np.empty(2 * len(p)),
    )
    K.gather_pairs(p, rows["ts_ms"], rows["element_id"], rows["value"], rows["b"], 6, 7, keys, vals, *out)
    want = (
        np.tile(rows["ts_ms"][p], 2),
        np.tile(want_e, 2),
        np.repeat(np.array([6, 7], np.int64), len(p)),
        np.concatenate([rows["value"][p], rows["b"][p]]),
    )
    for got, w in zip(out, want):
        np.testing.assert_array_equal(got, w)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 60), span=spans)
def test_warm_up_feeds_what_one_sort_feeds(seed, n, span):
    k0, quarters, step = span
    start = 1_700_000_000_000 + k0 * step
    until = start + quarters * step // 4
    ts, e, m, v = _events(seed, n, start, until, step)
    net = Recorder()
    assert warm_up(net, ts, e, m, v, start, until, step_ms=step) == n
    assert_same_calls(net.calls, reference_calls(ts, e, m, v, start, until, step))


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40), span=spans)
def test_warm_up_parts_is_warm_up_of_the_parts_one_after_the_other(seed, n, span):
    """Two parts, one through an index into rows and giving two events per row (as the QoS
    rows' latency and loss): the events of warm_up over the concatenation, in its order."""
    k0, quarters, step = span
    start = 1_700_000_000_000 + k0 * step
    until = start + quarters * step // 4
    ts1, e1, m1, v1 = _events(seed, n, start, until, step)
    rows = np.zeros(n + 3, dtype=[("ts_ms", "i8"), ("el", "i8"), ("a", "f8"), ("b", "f8")])
    rng = np.random.default_rng(seed + 2)
    rows["ts_ms"] = rng.integers(start - step, until + step + 1, n + 3)
    rows["el"] = rng.integers(0, 5, n + 3)
    rows["a"], rows["b"] = rng.normal(size=n + 3), rng.normal(size=n + 3)
    index = rng.permutation(n + 3)[:n].astype(np.int64)
    r = rows[index]

    def pair(p):
        return [
            (rows["ts_ms"][p], rows["el"][p], np.full(len(p), 7), rows["a"][p]),
            (rows["ts_ms"][p], rows["el"][p], np.full(len(p), 8), rows["b"][p]),
        ]

    parts = [(ts1, None, lambda p: [(ts1[p], e1[p], m1[p], v1[p])]), (rows["ts_ms"], index, pair)]
    net = Recorder()
    assert warm_up_parts(net, parts, start, until, step) == 3 * n
    cat = [np.concatenate(x) for x in zip((ts1, e1, m1, v1), (r["ts_ms"], r["el"], np.full(n, 7), r["a"]))]
    cat = [np.concatenate(x) for x in zip(cat, (r["ts_ms"], r["el"], np.full(n, 8), r["b"]))]
    assert_same_calls(net.calls, reference_calls(*cat, start, until, step))


def test_warm_up_refuses_bad_input():
    with pytest.raises(ValueError, match="step_ms must be positive"):
        warm_up(Recorder(), [1], [0], [0], [1.0], 0, 10, step_ms=0)
    with pytest.raises(ValueError, match="one length, got 2, 2, 1, 2"):
        warm_up(Recorder(), [1, 2], [0, 0], [0], [1.0, 2.0], 0, 10)


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=120, n_regions=2, days=0.4, seed=9)


class RawOnly:
    """A history that offers only ``start_ms`` and ``raw(source)`` (as the partitions' view)."""

    def __init__(self, day):
        self.start_ms, self.sources, self._day = day.start_ms, day.sources, day

    def raw(self, source):
        return self._day.raw(source)


@pytest.mark.parametrize("source", ["equip", "qos", "complaint"])
def test_history_rows_are_the_clean_arrivals_before_the_cut(day, source):
    until = day.start_ms + int(0.2 * 86_400_000)
    rows, arrival, origin = day.raw(source)
    want = rows[(origin == ORIGIN_CLEAN) & (arrival < until)]
    for src in (day, RawOnly(day)):
        r, index = AnomalyComponent._history(src, source, until)
        got = r[index]
        assert got.dtype == want.dtype and len(got) == len(want) and got.tobytes() == want.tobytes()
    assert len(want) or source == "complaint"


def _state_arrays(comp):
    st = comp.net.to_state()
    out = {**{"d." + k: v for k, v in st["detector"].items()}, **{"s." + k: v for k, v in st["silence"].items()}}
    out.update({k: v for k, v in st.items() if k not in ("detector", "silence")})
    return out


def test_learn_equals_warm_up_of_the_raw_history(day):
    """learn() leaves the detector in the state of the plain procedure (the arrived clean rows'
    events, equipment then QoS latency then QoS loss, fed by one sort), array by array, bit for
    bit, whether it reads a generated day or only its raw arrivals."""
    until = day.start_ms + int(0.25 * 86_400_000)
    ref = AnomalyComponent(day.topology)
    parts = []
    for source in ("equip", "qos"):
        rows, arrival, origin = day.raw(source)
        rows = rows[(origin == ORIGIN_CLEAN) & (arrival < until)]
        parts.append(ref._events(source, rows, day.topology.index_of(rows["element_id"])))
    ts, e, m, v = (np.concatenate([p[k] for p in parts]) for k in range(4))
    for kind, *args in reference_calls(ts, e, m, v, day.start_ms, until, H):
        getattr(ref.net, "update" if kind == "u" else "check_silence")(*args)
    want = _state_arrays(ref)
    assert ref.net.detector.n_obs.sum() > 1000
    for src in (day, RawOnly(day)):
        comp = AnomalyComponent(day.topology)
        comp.learn(src, until)
        got = _state_arrays(comp)
        assert got.keys() == want.keys()
        for k in want:
            if isinstance(want[k], np.ndarray):
                assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), k
            else:
                assert got[k] == want[k], k
