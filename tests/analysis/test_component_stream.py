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
