"""The analysis component over a long stream: flows merged hierarchically equal one aggregation,
the history warm-up fills the kept series, and the state round-trips; plus the edges of the paging
policy and the warm-up."""

import numpy as np
import pytest

from telcoanalytics.analysis.component import AnalysisComponent, _aggregate
from telcoanalytics.anomaly.policy import relabel_benign
from telcoanalytics.anomaly.warmup import warm_up
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.records import ELEMENT_FIELD
from telcoanalytics.synth.network import SynthConfig, generate


@pytest.fixture(scope="module")
def day():
    return generate(SynthConfig(n_elements=120, days=0.3, seed=2))


def test_many_small_flow_batches_equal_one_aggregation(day):
    comp = AnalysisComponent(day.topology)
    flows = day.flow
    idx = day.topology.index_of(flows[ELEMENT_FIELD["flow"]])
    for part in np.array_split(np.arange(len(flows)), 64 * 64 + 7):  # enough batches to merge chunks too
        comp.update(RoutedBatch("flow", flows[part], idx[part], np.zeros(len(part), np.int64)))
    np.testing.assert_array_equal(comp.flows, _aggregate(flows, comp.interval_ms))
    back = AnalysisComponent.from_state(comp.to_state(), day.topology)
    np.testing.assert_array_equal(back.flows, comp.flows)


def test_history_fills_the_kept_series(day):
    comp = AnalysisComponent(day.topology)
    assert comp.series.times().size == 0
    comp.learn(day, day.end_ms)  # a day without complaints: that source is skipped
    times, prb = comp.series.series("prb_util_pct")
    assert len(times) > 24 and np.isfinite(prb).any()
    back = AnalysisComponent.from_state(comp.to_state(), day.topology)
    np.testing.assert_array_equal(back.series.series("latency_ms")[1], comp.series.series("latency_ms")[1])


def test_policy_and_warm_up_edges(day):
    empty_rows = np.zeros(0, dtype=[("classification", "U16"), ("direction", "i1"), ("metric", "U24")])
    assert relabel_benign(empty_rows) == 0
    with pytest.raises(ValueError, match="step_ms must be positive"):
        warm_up(None, [], [], [], [], 0, 1, step_ms=0)


def _pandas_flows(flows, interval_ms, keep_from_ms=None):
    """Independent reference: pandas group-by of the raw flow rows."""
    import pandas as pd

    df = pd.DataFrame({k: flows[k] for k in ("ts_ms", "src_element_id", "dst_element_id", "bytes", "packets", "flows")})
    df["ts_ms"] = df["ts_ms"] // interval_ms * interval_ms
    g = df.groupby(["ts_ms", "src_element_id", "dst_element_id"], sort=True).sum().reset_index()
    if keep_from_ms is not None:
        g = g[g["ts_ms"] >= keep_from_ms]
    return g


def test_flows_keep_the_retention_and_equal_a_pandas_group_by(day):
    """Flows over 3 shifted copies of the day, 1 day of retention: the kept flows are pandas'
    group-by of the rows of the last day; the dropped rows are counted; the state round-trips."""
    one = day.flow
    span = 86_400_000
    parts = []
    for d in range(3):
        p = one.copy()
        p["ts_ms"] += d * span
        parts.append(p)
    flows = np.concatenate(parts)
    comp = AnalysisComponent(day.topology, retention_ms=span)
    idx = day.topology.index_of(flows[ELEMENT_FIELD["flow"]])
    for part in np.array_split(np.arange(len(flows)), 400):
        comp.update(RoutedBatch("flow", flows[part], idx[part], np.zeros(len(part), np.int64)))
    kept = comp.flows
    last = int(flows["ts_ms"].max()) // comp.interval_ms * comp.interval_ms
    ref = _pandas_flows(flows, comp.interval_ms, keep_from_ms=last - span + comp.interval_ms)
    for k in ref.columns:
        np.testing.assert_array_equal(kept[k], ref[k].to_numpy())
    assert comp.n_flows_expired == len(_pandas_flows(flows, comp.interval_ms)) - len(ref) > 0
    assert kept.base is None  # the kept flows own their memory: no view keeping the dropped rows
    back = AnalysisComponent.from_state(comp.to_state(), day.topology)
    assert back.retention_ms == span and back.n_flows_expired == comp.n_flows_expired
    np.testing.assert_array_equal(back.flows, kept)
    empty = RoutedBatch("flow", flows[:0], idx[:0], np.zeros(0, np.int64))
    comp.update(empty)  # an empty batch merged alone: nothing dropped, nothing added
    np.testing.assert_array_equal(comp.flows, kept)
    assert comp.n_flows_expired == back.n_flows_expired
    everything = AnalysisComponent(day.topology, retention_ms=None)
    everything.update(RoutedBatch("flow", flows, idx, np.zeros(len(flows), np.int64)))
    assert len(everything.flows) == len(_pandas_flows(flows, comp.interval_ms))
    with pytest.raises(ValueError, match="retention_ms"):
        AnalysisComponent(day.topology, retention_ms=1000)


def test_flow_groups_with_ids_too_wide_for_one_key_equal_pandas():
    from telcoanalytics.records import FLOW_DTYPE

    rng = np.random.default_rng(3)
    rows = np.zeros(5000, dtype=FLOW_DTYPE)
    rows["ts_ms"] = rng.integers(0, 10, 5000) * 300_000 + rng.integers(0, 300_000, 5000)
    rows["src_element_id"] = rng.choice([1, 2**40, 2**41 + 5], 5000)
    rows["dst_element_id"] = rng.choice([-(2**40), 7, 2**40], 5000)  # ranges: 10 x 2^41 x 2^41 > 2^63
    rows["bytes"], rows["packets"], rows["flows"] = rng.integers(0, 10**6, (3, 5000))
    got = _aggregate(rows, 300_000)
    ref = _pandas_flows(rows, 300_000)
    for k in ref.columns:
        np.testing.assert_array_equal(got[k], ref[k].to_numpy())


def test_cubes_keep_the_retention(day):
    comp = AnalysisComponent(day.topology, retention_ms=3_600_000)
    cdr = day.cdr
    idx = day.topology.index_of(cdr[ELEMENT_FIELD["cdr"]])
    comp.update(RoutedBatch("cdr", cdr, idx, np.zeros(len(cdr), np.int64)))
    hours = comp.cubes["localize"].query(("hour",), measures=["count"])
    assert len(hours) == 1  # the latest hour only
    assert comp.cubes["localize"].n_expired > 0


class _RawOnly:
    """A history that offers only ``raw`` (as a partition's view does): the selection from the whole
    arrival stream."""

    def __init__(self, day):
        self.sources, self.raw, self._day = day.sources, day.raw, day


@pytest.mark.parametrize("seed", [3, 8])
def test_history_from_the_clean_order_equals_the_selection_from_the_raw_stream(seed):
    """learn gathers a synthetic day's clean rows by its stream's arrival order: the kept series
    equal bit for bit those of the rows selected from ``day.raw`` (clean origin, arrived before
    the cut) and folded by add_batch, for a cut inside the day, with complaints."""
    from telcoanalytics.synth.stream import ORIGIN_CLEAN

    day = generate(SynthConfig(n_elements=150, days=0.5, seed=seed, complaints=2.0))
    until = day.start_ms + 5 * 3_600_000 + 12_345
    fast, via_raw = AnalysisComponent(day.topology), AnalysisComponent(day.topology)
    fast.learn(day, until)
    via_raw.learn(_RawOnly(day), until)
    ref = AnalysisComponent(day.topology)  # plain selection, one add_batch per source
    for source in ("equip", "qos", "complaint"):
        rows, arrival, origin = day.raw(source)
        rows = rows[(origin == ORIGIN_CLEAN) & (arrival < until)]
        idx = day.topology.index_of(rows[ELEMENT_FIELD[source]])
        ref.series.add_batch(RoutedBatch(source, rows[idx >= 0], idx[idx >= 0], np.zeros(int((idx >= 0).sum()))))
    assert ref.series.complaints.sum() > 0
    for comp in (fast, via_raw):
        a, b = comp.series.to_state(), ref.series.to_state()
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_element_index_equals_the_topology_lookup(day):
    """The history's element lookup gives topology.index_of's answer: known ids (also retired
    ones), unknown ids inside and outside the id range, negative and huge ids."""
    from telcoanalytics.analysis.component import _element_index

    topo = day.topology
    eids = topo.ids[topo.element_level]
    retired = topo.retire_elements(eids[:3])[0]
    rng = np.random.default_rng(0)
    q = np.concatenate(
        [eids[rng.integers(0, len(eids), 500)], eids + 1, eids - 1, [-5, 0, 2**62, eids.max() + 10**9]]
    ).astype(np.int64)
    for t in (topo, retired):
        np.testing.assert_array_equal(_element_index(t, q), t.index_of(q))
    assert (_element_index(topo, q) >= 0).sum() >= 500 and (_element_index(topo, q) < 0).any()
