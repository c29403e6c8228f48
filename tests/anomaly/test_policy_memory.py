"""The paging policy's bookkeeping against plain Python references: the remembered utilisation
findings (LoadMemory: growth, expiry, compaction, order), the vectorised metric lookups
(relabel_benign, the harmful direction), and the checkpoint of the memory."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.anomaly.config import ANOMALY_DTYPE
from telcoanalytics.anomaly.policy import (
    HARMFUL_DIRECTION,
    LoadMemory,
    PagingPolicy,
    _among,
    _codes,
    _harmful_direction,
    region_gap_alerts,
    relabel_benign,
)

T0 = 1_790_000_000_000
MIN = 60_000
METRICS = ["prb_util_pct", "cpu_util_pct", "latency_ms", "throughput_mbps", "loss_pct", ""]


def finding_rows(specs, serial):
    """ANOMALY_DTYPE rows from (element, t, value, direction, metric index); ``slot`` numbers them."""
    r = np.zeros(len(specs), ANOMALY_DTYPE)
    for i, (e, t, v, d, m) in enumerate(specs):
        r[i]["slot"], r[i]["element_id"], r[i]["t_ms"], r[i]["start_ms"] = serial + i, e, t, t - 5 * MIN
        r[i]["value"], r[i]["direction"], r[i]["metric"] = v, d, METRICS[m % 2]
    return r


op = st.one_of(
    st.tuples(
        st.just("add"),
        st.lists(
            st.tuples(
                st.integers(0, 6), st.integers(0, 200), st.floats(0, 100), st.sampled_from([-1, 1]), st.integers(0, 1)
            ),
            max_size=40,
        ),
    ),
    st.tuples(st.just("expire"), st.integers(-10, 210)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=30), st.lists(st.integers(0, 6), max_size=3))
def test_load_memory_keeps_exactly_the_unexpired_findings_in_arrival_order(ops, elements):
    """A plain list reference: add appends, expire(cut) drops the findings with ``t_ms < cut``.
    After every step the records, their count, the positions of some elements' findings and the
    columns read there equal the list's, whatever growth and compaction happened."""
    mem, ref, serial = LoadMemory(), [], 0
    for kind, arg in ops:
        if kind == "add":
            rows = finding_rows([(e, T0 + t * MIN, v, d, m) for e, t, v, d, m in arg], serial)
            serial += len(rows)
            mem.add(rows)
            ref += list(rows)
        else:
            mem.expire(T0 + arg * MIN)
            ref = [r for r in ref if r["t_ms"] >= T0 + arg * MIN]
        want = np.array(ref, dtype=ANOMALY_DTYPE)
        assert len(mem) == len(ref)
        assert mem.records().tobytes() == want.tobytes()
        for sel, keep in ((None, np.ones(len(want), bool)), (np.array(elements, np.int64), None)):
            if keep is None:
                keep = np.isin(want["element_id"], elements)
            at = mem.where(sel)
            assert list(at) == sorted(at)
            for name in ("element_id", "t_ms", "start_ms", "value", "direction", "metric"):
                assert mem.column(name, at).tolist() == want[name][keep].tolist()


def test_load_memory_compacts_once_half_has_expired_and_restores_from_records():
    r = finding_rows([(e % 5, T0 + e * MIN, 50.0, 1, 0) for e in range(100)], 0)
    mem = LoadMemory(r)
    assert len(mem) == 100 and mem.n == 100
    mem.expire(T0 + 40 * MIN)  # 40 of 100 expire: marked only
    assert len(mem) == 60 and mem.n == 100
    mem.expire(T0 + 40 * MIN)  # nothing older than the oldest live one: no work
    assert mem.n == 100
    mem.expire(T0 + 55 * MIN)  # 55 of 100: compacted
    assert len(mem) == 45 and mem.n == 45
    assert mem.records().tobytes() == r[55:].tobytes()
    mem.add(r[:3])  # older findings arriving late still go after the others
    assert mem.records()["slot"].tolist() == list(range(55, 100)) + [0, 1, 2]
    mem.expire(T0 + 10**6 * MIN)
    assert len(mem) == 0 and mem.n == 0 and len(mem.records()) == 0
    mem.expire(T0 + 10**7 * MIN)  # empty: nothing to do
    assert LoadMemory(r[:0]).n == 0 and len(LoadMemory().records()) == 0


def test_the_policy_checkpoint_holds_the_live_findings_and_a_restored_policy_continues_alike():
    pol = PagingPolicy()
    up = finding_rows([(3, T0 + i * 30 * MIN, 60.0, 1, 0) for i in range(30)], 0)
    up["classification"] = "change"
    for i in range(30):
        pol.page(up[i : i + 1], None, T0, data_ms=int(up["t_ms"][i]))
    state = pol.to_state()
    assert state["load"].dtype == ANOMALY_DTYPE
    # kept: what was confirmed in the last 8 hours (6 h + the 2-h load window) before the last call
    assert state["load"]["slot"].tolist() == [i for i in range(30) if up["t_ms"][i] >= up["t_ms"][-1] - 8 * 60 * MIN]
    back = PagingPolicy.from_state(state)
    assert back._load.tobytes() == pol._load.tobytes()
    q = np.zeros(1, ANOMALY_DTYPE)
    q["element_id"], q["metric"], q["classification"], q["direction"] = 3, "latency_ms", "change", 1
    q["start_ms"] = q["t_ms"] = up["t_ms"][-1] + 5 * MIN
    q["end_ms"], q["value"], q["baseline"] = q["t_ms"], 30.0, 10.0
    for p in (pol, back):  # busy element: the quality shift waits, then its load explains it
        assert p.page(q, None, T0, data_ms=int(q["t_ms"][0])) == []
        assert p.page(q[:0], None, T0, data_ms=int(q["t_ms"][0]) + 60 * MIN) == []
    assert pol.counts == back.counts and pol.counts["deferred"] == 1 and pol.counts["load_driven"] == 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["fault", "change", "silence"]), st.sampled_from([-1, 1]))),
    st.dictionaries(st.sampled_from(METRICS), st.sampled_from([-1, 0, 1]), max_size=4),
)
def test_relabel_benign_and_the_harmful_direction_match_a_per_row_lookup(spec, table):
    r = np.zeros(len(spec), ANOMALY_DTYPE)
    for i, (m, c, d) in enumerate(spec):
        r[i]["metric"], r[i]["classification"], r[i]["direction"] = METRICS[m], c, d
    for t in (table, HARMFUL_DIRECTION, {**table, 3: 0}):  # a key that is no metric name matches nothing
        want = [t.get(str(m), 1) for m in r["metric"]]
        assert _harmful_direction(r["metric"], t).tolist() == want
    want = [
        c == "fault" and t != 0 and d == -t for (_, c, d), t in zip(spec, [table.get(METRICS[s[0]], 1) for s in spec])
    ]
    got = r.copy()
    assert relabel_benign(got, table) == sum(want)
    assert got["classification"].tolist() == ["benign" if w else c for w, (_, c, _) in zip(want, spec)]
    names = [METRICS[m] for m, *_ in spec[:3]]
    assert _among(r["metric"], names).tolist() == np.isin(r["metric"], names).tolist()
    assert not _among(r["metric"], ()).any()


def test_a_quality_shift_in_the_harmless_direction_is_never_load_driven():
    """A latency fall on a cell whose utilisation just rose to 80 %: an improvement, passed on
    (the degradation rules resolve with it), not counted as load-driven."""
    pol = PagingPolicy(load_defer_ms=0)
    up = finding_rows([(3, T0, 80.0, 1, 0)], 0)
    up["classification"] = "change"
    pol.page(up, None, T0, data_ms=T0)
    down = np.zeros(1, ANOMALY_DTYPE)
    down["element_id"], down["metric"], down["classification"], down["direction"] = 3, "latency_ms", "change", -1
    down["start_ms"], down["t_ms"], down["end_ms"] = T0 + 5 * MIN, T0 + 10 * MIN, T0 + 10 * MIN
    assert pol.select(down, T0 + 10 * MIN).tobytes() == down.tobytes()
    assert pol.counts["load_driven"] == 0


name_text = st.text(alphabet=st.sampled_from("ab_\x00é"), max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(name_text, max_size=30), st.lists(name_text, max_size=5), st.integers(3, 6), st.booleans())
def test_name_codes_give_the_first_equal_name_as_numpy_compares_strings(values, names, width, strided):
    """The compiled byte comparison (``_codes``, ``kernels.anomaly_events.name_codes``) against
    ``==`` on the NumPy strings, one name at a time: trailing NULs, embedded NULs, names longer
    than the field (equal to nothing), repeated names (the first wins), non-ASCII characters, and
    rows that are a strided view."""
    dt = np.dtype([("a", "i1"), ("s", f"U{width}"), ("b", "i8")])
    base = np.zeros(2 * len(values), dt)
    rows = base[::2] if strided else base[: len(values)]
    rows["s"] = values
    want = np.full(len(rows), -1)
    for j in range(len(names) - 1, -1, -1):
        want[rows["s"] == names[j]] = j
    assert _codes(rows, "s", tuple(names)).tolist() == want.tolist()
    assert _codes(rows, "a", tuple(names)).tolist() == [-1] * len(rows)  # no string field: nothing equal
    plain = np.zeros(len(values), [("s", "O")])  # object strings: compared one name at a time
    plain["s"] = [str(v) for v in values]
    want_o = np.full(len(values), -1)
    for j in range(len(names) - 1, -1, -1):
        want_o[plain["s"] == names[j]] = j
    assert _codes(plain, "s", tuple(names)).tolist() == want_o.tolist()


def test_region_gap_alerts_of_rows_without_a_gap_are_none():
    r = finding_rows([(3, T0, 50.0, 1, 0)], 0)
    r["classification"] = "silence"
    assert region_gap_alerts(r, None, T0) == []
