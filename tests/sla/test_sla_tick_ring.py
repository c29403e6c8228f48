"""One pass per tick over the lifecycle bank (:func:`kernels.sla.sla_tick_step_ring`): the committed
copies stepped over the conditions leaving the ring, the tick's conditions written into the ring and
the lifecycles stepped over them give exactly the lifecycles, ring and events of the three steps one
after another (``sla_tick_step`` on the committed copy, the ring row assignment, ``sla_tick_step``),
and a plain Python lifecycle (the documented transitions) gives the same events."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from kernels import sla as SK


def _bank(rng, n):
    return (
        rng.integers(0, 3, n).astype(np.int8),
        rng.integers(0, 4, n).astype(np.int64),
        rng.integers(0, 10, n).astype(np.int64) * 60_000,
        rng.normal(50, 20, n),
    )


def _py_step(c, v, t, f, cf, sg, e):
    """The lifecycle of one entry ``e`` (state, count, start, worst as a list) by its definition."""
    if c == K.COND_INSUFFICIENT:
        return 0
    st_, n, start, worst = e
    if st_ == K.ST_INACTIVE:
        if c != K.COND_BREACH:
            return 0
        e[1], e[2], e[3] = 1, t, v
        if 1 > f:
            e[0], e[1] = K.ST_FIRING, 0
            return K.EV_FIRING
        e[0] = K.ST_PENDING
        return K.EV_PENDING
    if st_ == K.ST_PENDING:
        if c != K.COND_BREACH:
            e[0], e[1] = K.ST_INACTIVE, 0
            return K.EV_CANCELLED
        e[1] = n + 1
        if sg * (v - worst) > 0:
            e[3] = v
        if e[1] > f:
            e[0], e[1] = K.ST_FIRING, 0
            return K.EV_FIRING
        return 0
    if c == K.COND_BREACH:
        e[1] = 0
        if sg * (v - worst) > 0:
            e[3] = v
    elif c == K.COND_BAND:
        e[1] = 0
    else:
        e[1] = n + 1
        if e[1] > cf:
            e[0], e[1] = K.ST_INACTIVE, 0
            return K.EV_RESOLVED
    return 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 7), min_size=1, max_size=5),
    L=st.integers(1, 6),
    step_old=st.booleans(),
    ticks=st.integers(1, 6),
)
def test_tick_step_ring_equals_the_steps_one_after_another(seed, sizes, L, step_old, ticks):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    ptr = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=ptr[1:])
    params = (
        ptr,
        rng.integers(0, 3, len(sizes)).astype(np.int64),
        rng.integers(0, 3, len(sizes)).astype(np.int64),
        rng.choice([1.0, -1.0], len(sizes)),
    )
    live, committed = _bank(rng, n), _bank(rng, n)
    ring = (rng.integers(0, 4, (L, n)).astype(np.int8), rng.normal(50, 20, (L, n)).astype(np.float32))
    a = ([x.copy() for x in live], [x.copy() for x in committed], [x.copy() for x in ring])
    b = ([x.copy() for x in live], [x.copy() for x in committed], [x.copy() for x in ring])
    py = [[list(x) for x in zip(*(y.tolist() for y in live))]]  # per entry [state, count, start, worst]
    out_a = tuple(np.zeros(n, d) for d in (np.int64, np.int64, np.int8, np.int64, np.float64, np.float64))
    out_b = tuple(np.zeros(n, d) for d in (np.int64, np.int64, np.int8, np.int64, np.float64, np.float64))
    for k in range(ticks):
        codes = rng.integers(0, 4, n).astype(np.int8)
        values = rng.normal(50, 20, n)
        values[rng.random(n) < 0.1] = np.nan
        pos, t, old_t = k % L, (100 + k) * 60_000, (100 + k - L) * 60_000
        ka = SK.sla_tick_step_ring(
            tuple(a[0]), tuple(a[1]), params, tuple(a[2]), pos, (codes, values), t, old_t, step_old, out_a
        )
        if step_old:
            SK.sla_tick_step(tuple(b[1]), params, b[2][0][pos], b[2][1][pos], old_t, out_b)
        b[2][0][pos], b[2][1][pos] = codes, values
        kb = SK.sla_tick_step(tuple(b[0]), params, codes, values, t, out_b)
        assert ka == kb
        for x, y in zip(out_a, out_b):
            np.testing.assert_array_equal(x[:ka], y[:kb])
        for x, y in zip(a[0] + a[1] + a[2], b[0] + b[1] + b[2]):
            np.testing.assert_array_equal(x, y)
        # the plain Python lifecycle: the same events, rule by rule, node by node
        want = []
        for r in range(len(sizes)):
            for i in range(ptr[r], ptr[r + 1]):
                args = (t, params[1][r], params[2][r], params[3][r], py[0][i])
                kind = _py_step(int(codes[i]), float(values[i]), *args)
                if kind:
                    want.append((r, i - ptr[r], kind, py[0][i][2]))
        got = [(int(out_a[0][j]), int(out_a[1][j]), int(out_a[2][j]), int(out_a[3][j])) for j in range(ka)]
        assert got == want
        np.testing.assert_array_equal(a[0][0], [e[0] for e in py[0]])


def test_a_monitor_gives_the_same_events_and_state_in_one_pass_or_three_steps():
    from telcoanalytics.sla.sla import SlaMonitor
    from tests.kpi.test_kpi import topo6

    from .test_sla_late_fused import LATE_RULES, _feed

    a = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=7)
    b = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=7)
    b.ring_step = False
    n = 0
    for ea, eb in zip(_feed(a, 60, 8), _feed(b, 60, 8), strict=True):
        assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
        n += len(ea)
    assert n > 0 and a.n_late_rows > 0
    sa, sb = a.to_state(), b.to_state()
    for k in sa:
        if isinstance(sa[k], np.ndarray):
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        else:
            assert sa[k] == sb[k], k


@settings(max_examples=200, deadline=None)
@given(
    c=st.integers(0, 3),
    v=st.floats(-100, 100) | st.just(float("nan")),
    state=st.integers(0, 2),
    count=st.integers(0, 4),
    worst=st.floats(-100, 100) | st.just(float("nan")),
    for_ticks=st.integers(0, 3),
    clear_for_ticks=st.integers(0, 3),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_step_one_equals_rule_step_of_one_node(c, v, state, count, worst, for_ticks, clear_for_ticks, sign):
    arrays = [np.array([state], np.int8), np.array([count], np.int64), np.array([7], np.int64), np.array([worst])]
    out = [np.empty(1, np.int64), np.empty(1, np.int8), np.empty(1, np.int64), np.empty(1), np.empty(1)]
    n = SK.sla_rule_step(
        np.zeros(1, np.int64), np.array([c], np.int8), np.array([v]), 60_000, for_ticks, clear_for_ticks, sign,
        *arrays, *out,
    )  # fmt: skip
    kind, st_, cnt, start, w = SK._step_one(c, v, 60_000, for_ticks, clear_for_ticks, sign, state, count, 7, worst)
    assert kind == (int(out[1][0]) if n else 0)
    assert (st_, cnt, start) == (arrays[0][0], arrays[1][0], arrays[2][0])
    np.testing.assert_array_equal(w, arrays[3][0])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 1400), min_size=1, max_size=4),
    L=st.integers(1, 4),
    step_old=st.booleans(),
    busy=st.sampled_from([0.0, 0.001, 0.01]),
)
def test_tick_step_ring_skips_blocks_that_do_not_move_exactly(seed, sizes, L, step_old, busy):
    """Rules longer than a scanned block (512 entries), mostly healthy (inactive, clear or insufficient)
    with a few entries that move anywhere (block edges included): the steps one after another."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    ptr = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=ptr[1:])
    params = (
        ptr,
        np.full(len(sizes), 1, np.int64),
        np.full(len(sizes), 2, np.int64),
        rng.choice([1.0, -1.0], len(sizes)),
    )

    def sparse_bank():
        b = _bank(rng, n)
        b[0][rng.random(n) >= busy * 5] = K.ST_INACTIVE
        edge = np.array([i for i in (0, 511, 512, 1023, 1024, n - 1) if 0 <= i < n], np.int64)
        b[0][edge[rng.random(len(edge)) < 0.3]] = K.ST_FIRING
        return b

    def sparse_codes(shape):
        c = rng.choice(np.array([K.COND_INSUFFICIENT, K.COND_CLEAR], np.int8), shape)
        c[rng.random(shape) < busy] = K.COND_BREACH
        return c

    live, committed = sparse_bank(), sparse_bank()
    ring = (sparse_codes((L, n)), rng.normal(50, 20, (L, n)).astype(np.float32))
    a = ([x.copy() for x in live], [x.copy() for x in committed], [x.copy() for x in ring])
    b = ([x.copy() for x in live], [x.copy() for x in committed], [x.copy() for x in ring])
    out_a = tuple(np.zeros(n, d) for d in (np.int64, np.int64, np.int8, np.int64, np.float64, np.float64))
    out_b = tuple(np.zeros(n, d) for d in (np.int64, np.int64, np.int8, np.int64, np.float64, np.float64))
    for k in range(4):
        codes, values = sparse_codes(n), rng.normal(50, 20, n)
        pos, t, old_t = k % L, (100 + k) * 60_000, (100 + k - L) * 60_000
        ka = SK.sla_tick_step_ring(
            tuple(a[0]), tuple(a[1]), params, tuple(a[2]), pos, (codes, values), t, old_t, step_old, out_a
        )
        if step_old:
            SK.sla_tick_step(tuple(b[1]), params, b[2][0][pos], b[2][1][pos], old_t, out_b)
        b[2][0][pos], b[2][1][pos] = codes, values
        kb = SK.sla_tick_step(tuple(b[0]), params, codes, values, t, out_b)
        assert ka == kb
        for x, y in zip(out_a, out_b):
            np.testing.assert_array_equal(x[:ka], y[:kb])
        for x, y in zip(a[0] + a[1] + a[2], b[0] + b[1] + b[2]):
            np.testing.assert_array_equal(x, y)
