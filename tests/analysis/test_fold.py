"""The analysis component's folding (kernels.fold): pair factorisation against np.unique, staged
per-cell sums against a plain Python fold, rows summed by group against np.add.at (bit for bit),
the kept flows' ring against a pandas group-by with late, too-old and far-future rows, and routing
over a span against the same flows cut to that span."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.fold import empty_slots, factorize, pair_lookup, sum_rows_by_group
from telcoanalytics.analysis.component import AnalysisComponent, _FlowRing
from telcoanalytics.analysis.routing import routing_efficiency, with_capacities
from telcoanalytics.analysis.series import SeriesKeeper
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.records import FLOW_DTYPE, METRIC_CODE, empty
from telcoanalytics.topology import Topology

IV = 300_000


def _topo(n=6):
    return Topology.from_columns(np.arange(n) + 10, {"region": np.arange(n) % 2 + 1, "site": np.arange(n) + 100})


def _batch(source, rows, idx):
    return RoutedBatch(source, rows, np.asarray(idx, np.int64), np.zeros(len(rows), np.int64))


# ---- pairs --------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(-3, 3)), max_size=40),
    st.integers(0, 2000),
    st.integers(0, 2**31),
)
def test_factorize_numbers_pairs_in_first_seen_order_as_np_unique_groups_them(pairs, n_many, seed):
    rng = np.random.default_rng(seed)
    a = np.array([p[0] for p in pairs] + list(rng.integers(0, 700, n_many)), dtype=np.int64)
    b = np.array([p[1] for p in pairs] + list(rng.integers(0, 3, n_many)), dtype=np.int64)  # > 512 pairs: grows
    codes, ua, ub = factorize(a, b)
    np.testing.assert_array_equal(ua[codes], a)
    np.testing.assert_array_equal(ub[codes], b)
    uniq, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
    assert len(ua) == len(uniq)
    np.testing.assert_array_equal(np.sort(first), [int(np.flatnonzero(codes == j)[0]) for j in range(len(ua))])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(-3, 3)), max_size=60), st.integers(0, 40))
def test_pair_lookup_numbers_new_pairs_in_order_finds_known_ones_and_stops_at_the_limit(pairs, limit):
    slots = empty_slots(128)
    key_a, key_b = np.zeros(64, np.int64), np.zeros(64, np.int64)
    ref, n = {}, 0
    for a, b in pairs:
        j, n_new = pair_lookup(slots, key_a, key_b, n, limit, a, b)
        if (a, b) in ref:
            assert (j, n_new) == (ref[(a, b)], n)
        elif len(ref) >= limit:
            assert (j, n_new) == (-1, n)  # full: nothing inserted
        else:
            assert (j, n_new) == (n, n + 1)
            ref[(a, b)] = j
            n = n_new
    assert [(int(x), int(y)) for x, y in zip(key_a[:n], key_b[:n])] == list(ref)
    assert int((slots >= 0).sum()) == n


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.integers(1, 5), st.integers(0, 2**31))
def test_rows_summed_by_group_equal_np_add_at_bit_for_bit(n, width, n_groups, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, width)) * 10.0 ** rng.integers(-8, 9, (n, width))  # order-sensitive sums
    g = rng.integers(-1, n_groups, n)
    ref = np.zeros((n_groups, width))
    np.add.at(ref, g[g >= 0], x[g >= 0])
    got = np.zeros((n_groups, width))
    sum_rows_by_group(x, g, got)
    assert got.tobytes() == ref.tobytes()
    counts = rng.integers(0, 9, (n, width)).astype(np.int32)
    ref_c, got_c = np.zeros((n_groups, width)), np.zeros((n_groups, width))
    np.add.at(ref_c, g[g >= 0], counts[g >= 0])
    sum_rows_by_group(counts, g, got_c)
    np.testing.assert_array_equal(got_c, ref_c)


# ---- staged series ------------------------------------------------------------------------------
def _plain_fold(batches, n, bin_ms, first_bin, n_bins):
    """Plain Python: per flush, each cell's values summed in row order from 0.0, then added."""
    sums, counts = np.zeros((n, n_bins)), np.zeros((n, n_bins), np.int64)
    for flush in batches:
        part = {}
        for t, e, v in flush:
            for ti, ei, vi in zip(t.tolist(), e.tolist(), v.tolist()):
                key = (ei, ti // bin_ms - first_bin)
                if key[1] < 0:  # older than the first fold's first bin: not kept
                    continue
                s, c = part.get(key, (0.0, 0))
                part[key] = (s + vi, c + 1)
        for (ei, col), (s, c) in part.items():
            sums[ei, col] += s
            counts[ei, col] += c
    return sums, counts


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(1, 300), min_size=1, max_size=4), min_size=1, max_size=5), st.integers(0, 2**31))
def test_staged_batches_add_one_partial_sum_per_cell_and_flush(flushes, seed):
    """Batches staged between flushes (a table that grows past 4,096 cells on the way) give, bit for
    bit, per cell the sum of each flush's values in row order added to the kept sum."""
    rng = np.random.default_rng(seed)
    n, bin_ms = 40, 1000
    k = SeriesKeeper(_topo(n), bin_ms=bin_ms, max_bins=200)
    ref_in = []
    for sizes in flushes:
        parts = []
        for m in sizes:
            m = m * 20
            t = rng.integers(0, 150, m) * bin_ms + rng.integers(0, bin_ms, m)
            e = rng.integers(0, n, m)
            v = rng.normal(0, 1, m) * 10.0 ** rng.integers(-6, 7, m)
            rows = empty("qos", m)
            rows["ts_ms"], rows["latency_ms"] = t, v
            k.stage_batch(_batch("qos", rows, e))
            parts.append((t, e, v))
        k.flush()
        ref_in.append(parts)
    times, _ = k.series("latency_ms")
    first_bin = int(times[0] // bin_ms)
    assert first_bin == min(int(t.min()) for t, _, _ in ref_in[0]) // bin_ms  # the first fold's oldest row
    sums, counts = _plain_fold(ref_in, n, bin_ms, first_bin, len(times))
    assert k.sums["latency_ms"].tobytes() == sums.tobytes()
    np.testing.assert_array_equal(k.counts["latency_ms"], counts)


def test_staged_sources_move_the_columns_in_the_order_first_staged():
    """The first fold sets the first bin from the source staged first, as folding each source's
    concatenated rows in that order would; an equipment batch without PRB rows takes its place."""
    topo = _topo(4)
    q = empty("qos", 3)
    q["ts_ms"], q["latency_ms"] = [5 * IV, 6 * IV, 9 * IV], [1.0, 2.0, 3.0]
    eq = empty("equip", 2)
    eq["ts_ms"], eq["metric_id"], eq["value"] = [2 * IV, 3 * IV], METRIC_CODE["prb_util_pct"], [40.0, 50.0]
    other = eq.copy()
    other["metric_id"] = METRIC_CODE["cpu_util_pct"]
    cases = [
        ([("qos", q, [0, 1, 2]), ("equip", eq, [3, 3])], 5),  # the PRB rows fall before the first bin
        ([("equip", eq, [3, 3]), ("qos", q, [0, 1, 2])], 2),
        ([("equip", other, [0, 0]), ("qos", q, [0, 1, 2]), ("equip", eq, [3, 3])], 2),
    ]
    for batches, first in cases:
        staged, one_by_one = SeriesKeeper(topo), SeriesKeeper(topo)
        for source, rows, idx in batches:
            staged.stage_batch(_batch(source, rows, idx))
        staged.flush()
        by_source = {}
        for source, rows, idx in batches:
            by_source.setdefault(source, []).append((rows, idx))
        for source, parts in by_source.items():
            rows = np.concatenate([r for r, _ in parts])
            one_by_one.add_batch(_batch(source, rows, np.concatenate([i for _, i in parts])))
        assert staged.times()[0] == first * IV
        np.testing.assert_array_equal(staged.times(), one_by_one.times())
        for name in ("prb_util_pct", "latency_ms"):
            np.testing.assert_array_equal(staged.series(name)[1], one_by_one.series(name)[1])
    k = SeriesKeeper(topo)  # equipment batches without PRB rows move nothing, before or after a fold
    k.stage_batch(_batch("equip", other, [0, 0]))
    k.flush()
    assert k.first_bin is None and len(k.times()) == 0
    k.add_batch(_batch("equip", other, [0, 0]))  # the one-off fold alike
    assert k.first_bin is None
    k.stage_batch(_batch("equip", eq, [1, 1]))
    k.flush()
    k.stage_batch(_batch("equip", other, [0, 0]))
    k.flush()
    assert k.times().tolist() == [2 * IV, 3 * IV] and k.counts["prb_util_pct"].sum() == 2
    with pytest.raises(ValueError, match="unknown series 'nope'"):
        SeriesKeeper(topo).add("nope", [0], [0], [1.0])


def test_region_series_sums_elements_in_order(rng):
    topo = _topo(7)
    k = SeriesKeeper(topo, bin_ms=1000)
    t, e = rng.integers(0, 20_000, 400), rng.integers(0, 7, 400)
    v = rng.normal(0, 1, 400) * 10.0 ** rng.integers(-5, 6, 400)
    k.add("latency_ms", t, e, v)
    region = topo.element_to("region")
    want_s, want_c = np.zeros((2, k.sums["latency_ms"].shape[1])), np.zeros((2, k.sums["latency_ms"].shape[1]))
    for i in range(7):  # plain loop over the elements in order
        want_s[region[i]] = want_s[region[i]] + k.sums["latency_ms"][i]
        want_c[region[i]] = want_c[region[i]] + k.counts["latency_ms"][i]
    with np.errstate(invalid="ignore", divide="ignore"):
        want = want_s / want_c
    assert k.region_series("latency_ms").tobytes() == want.tobytes()


# ---- flows --------------------------------------------------------------------------------------
def _pandas(rows, keep_from_b=None):
    df = pd.DataFrame({k: rows[k] for k in FLOW_DTYPE.names})
    df["ts_ms"] = df["ts_ms"] // IV * IV
    g = df.groupby(["ts_ms", "src_element_id", "dst_element_id"], sort=True).sum().reset_index()
    if keep_from_b is not None:
        g = g[g["ts_ms"] >= keep_from_b * IV]
    return g


def _flows(rng, n, n_src, n_dst, t_lo, t_hi):
    r = np.zeros(n, dtype=FLOW_DTYPE)
    r["ts_ms"] = rng.integers(t_lo, t_hi, n)
    r["src_element_id"] = rng.integers(10, 10 + n_src, n)
    r["dst_element_id"] = rng.integers(0, n_dst, n) * 7 - 2**40
    r["bytes"], r["packets"], r["flows"] = rng.integers(0, 10**9, n), rng.integers(0, 10**5, n), 1
    return r


def _assert_equal(got, ref):
    assert len(got) == len(ref)
    for k in FLOW_DTYPE.names:
        np.testing.assert_array_equal(got[k], ref[k].to_numpy())


def _plain_ring(rows_in_order, w):
    """Plain Python: the groups of the last ``w`` intervals, and what is dropped (a group when its
    interval leaves, a row when it comes older than the kept intervals)."""
    held, last, dropped = {}, None, 0
    for r in rows_in_order:
        b = int(r["ts_ms"]) // IV
        if last is None:
            last = b
        elif b > last:
            for key in [k for k in held if k[0] <= b - w]:
                del held[key]
                dropped += 1
            last = b
        if b <= last - w:
            dropped += 1
            continue
        key = (b, int(r["src_element_id"]), int(r["dst_element_id"]))
        held[key] = held.get(key, 0) + int(r["bytes"])
    return held, dropped


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 30), st.integers(1, 9))
def test_ring_keeps_the_retention_whatever_the_arrival_order(seed, w, n_batches):
    """Rows of 60 intervals arrive shuffled in batches (late rows, rows older than the ring when they
    come, more pairs than the ring's first 64 link columns); the kept flows equal pandas' group-by
    of the rows of the last ``w`` intervals, and the drops equal a plain Python ring's."""
    rng = np.random.default_rng(seed)
    rows = _flows(rng, 600, 12, 40, 0, 60 * IV)
    rows = rows[rng.permutation(len(rows))]
    ring = _FlowRing(IV, w * IV, n_links_hint=0)
    for part in np.array_split(np.arange(len(rows)), n_batches):
        ring.add(rows[part])
    held, dropped = _plain_ring(rows, w)
    last = int(rows["ts_ms"].max()) // IV
    got = ring.rows()
    assert got.base is None
    _assert_equal(got, _pandas(rows, keep_from_b=last - w + 1))
    assert len(got) == len(held) and ring.n_expired == dropped


def test_ring_far_future_row_expires_everything_and_empty_ring_reads_empty():
    ring = _FlowRing(IV, 4 * IV)
    assert len(ring.rows()) == 0
    rows = _flows(np.random.default_rng(1), 50, 3, 2, 0, 4 * IV)
    ring.add(np.sort(rows, order="ts_ms"))
    held = len(_pandas(rows))
    far = rows[:1].copy()
    far["ts_ms"] = 10**6 * IV
    ring.add(far)
    got = ring.rows()
    assert len(got) == 1 and got["ts_ms"][0] == 10**6 * IV and ring.n_expired == held


def test_component_flows_without_retention_merge_parts(rng):
    """No retention: folds aggregate their rows into parts merged when 64 pile up; the kept flows
    equal pandas' group-by of every row (late rows re-aggregate the intervals they reach)."""
    topo = _topo(12)
    rows = _flows(rng, 4000, 12, 5, 0, 30 * IV)
    rows = rows[np.argsort(rows["ts_ms"] + rng.integers(-3 * IV, 1, len(rows)), kind="stable")]  # some late
    comp = AnalysisComponent(topo, retention_ms=None, coalesce_rows=20)
    idx = topo.index_of(rows["src_element_id"])
    for part in np.array_split(np.arange(len(rows)), 300):
        comp.update(_batch("flow", rows[part], idx[part]))
    _assert_equal(comp.flows, _pandas(rows))
    back = AnalysisComponent.from_state(comp.to_state(), topo)
    np.testing.assert_array_equal(back.flows, comp.flows)
    assert comp.n_flows_expired == 0
    assert comp.update(_batch("other", rows[:3], idx[:3])) == []  # a source it does not read
    old_format = comp.to_state()
    old_format["flows"] = comp.flows  # checkpoints that stored the structured array
    np.testing.assert_array_equal(AnalysisComponent.from_state(old_format, topo).flows, comp.flows)


# ---- routing over a span ------------------------------------------------------------------------
def test_routing_over_a_span_equals_routing_of_the_rows_in_it(rng):
    """A pair whose rows all lie outside the span is no link; the rest as if the rows were cut."""
    topo = with_capacities(_topo(6), np.full(6, 100.0))
    rows = np.zeros(60, dtype=FLOW_DTYPE)
    rows["ts_ms"] = np.repeat(np.arange(10), 6) * IV
    rows["src_element_id"] = np.tile(np.arange(6) + 10, 10)
    rows["dst_element_id"] = np.where(rows["src_element_id"] % 2 == 0, 999, 11)
    rows["dst_element_id"][rows["ts_ms"] >= 8 * IV] = 555  # pairs seen only after the span
    rows["bytes"] = rng.integers(0, 10**9, 60)
    span = dict(start_ms=2 * IV, end_ms=8 * IV)
    got = routing_efficiency(rows[rng.permutation(60)], topo, interval_ms=IV, **span)
    cut = rows[(rows["ts_ms"] >= 2 * IV) & (rows["ts_ms"] < 8 * IV)]
    want = routing_efficiency(cut, topo, interval_ms=IV, **span)
    assert 555 not in got.links["dst_id"]
    for a, b in ((got.links, want.links), (got.elements, want.elements), (got.regions, want.regions)):
        np.testing.assert_array_equal(a, b)
    bad = rows.copy()
    bad["src_element_id"][7] = 77  # not the first row: the error names it
    with pytest.raises(ValueError, match="flow source element 77 is not in the topology"):
        routing_efficiency(bad, topo, interval_ms=IV)
