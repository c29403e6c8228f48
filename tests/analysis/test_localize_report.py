"""The analysis component in a pipeline (contract, checkpoint), the worst incident, baselines as
several spans, and the replay's analysis section."""

from types import SimpleNamespace

import numpy as np
import pytest

from telcoanalytics.analysis.component import AnalysisComponent
from telcoanalytics.analysis.localize import localize_cube, localize_spec, worst_incident
from telcoanalytics.analysis.report import analysis_report_lines, find_component
from telcoanalytics.cube import Cube
from telcoanalytics.pipeline import Pipeline
from telcoanalytics.pipeline.contract import RoutedBatch, check_component
from telcoanalytics.synth import generate
from telcoanalytics.synth.rootcause import inject_root_causes


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=600, n_regions=2, days=1, seed=31, n_root_cause=1, complaints=2.0)


@pytest.fixture(scope="module")
def pipe(day):
    comp = AnalysisComponent(day.topology, capacity_mbps=day.capacity_mbps)
    p = Pipeline(day.topology, components={"analysis": comp})
    p.feed(day.raw_batches(300_000))
    p.finish()
    return p


def test_component_keeps_cubes_and_flows(day, pipe):
    comp = find_component(pipe)
    check_component("analysis", comp)
    assert comp.n["cdr"] == len(day.cdr) and comp.n["complaint"] == len(day.complaint)
    assert comp.cubes["localize"].query((), measures=["count"])["count"][0] == len(day.cdr)
    assert comp.flows["bytes"].sum() == day.flow["bytes"].sum()
    assert comp.complaints["complaints"].query((), measures=["count"])["count"][0] == len(day.complaint)
    assert comp.advance(0) == [] and comp.finish(0) == []
    from telcoanalytics.analysis.component import _aggregate

    assert len(_aggregate(day.flow[:0], 300_000)) == 0


def test_checkpoint_round_trip(day, pipe):
    comp = find_component(pipe)
    back = AnalysisComponent.from_state(comp.to_state(), day.topology)
    strip = lambda lines: [x for x in lines if "ms (" not in x]  # noqa: E731 - timings differ
    assert strip(back.report_lines()) == strip(comp.report_lines())


@pytest.fixture(scope="module")
def strong(day):
    """A component fed with the day's records and a strong fault (region drop rate x3-4)."""
    rng = np.random.default_rng(5)
    cdr, (fa,) = inject_root_causes(
        day.cdr, day.topology_table, (day.start_ms, day.end_ms), 1, rng, rate_factor=(3.0, 4.0), hours=(2, 3)
    )
    comp = AnalysisComponent(day.topology, capacity_mbps=day.capacity_mbps)
    for s, rows in (("cdr", cdr), ("flow", day.flow), ("complaint", day.complaint)):
        el = rows["src_element_id"] if s == "flow" else rows["element_id"]
        comp.update(RoutedBatch(s, rows, day.topology.index_of(el), np.zeros(len(rows), np.int64)))
    return comp, fa


def test_worst_incident_finds_the_fault(day, strong):
    comp, fa = strong
    cube = comp.cubes["localize"]
    inc = worst_incident(cube)
    assert inc["scope"] == {"region": fa.region_id}
    assert inc["window"][0] < fa.end_ms and fa.start_ms < inc["window"][1]
    assert inc["actual"] > inc["expected"] and inc["score"] > 4.5
    assert worst_incident(cube, min_score=1e12) is None
    loc = localize_cube(cube, scope=inc["scope"], window=inc["window"], baseline=inc["baseline"])
    assert loc.causes
    empty = Cube(localize_spec(), day.topology)
    assert worst_incident(empty) is None


def test_baseline_spans_equal_their_hours(day, pipe):
    cube = find_component(pipe).cubes["localize"]
    h = 3_600_000
    w = (day.start_ms + 10 * h, day.start_ms + 12 * h)
    spans = [(day.start_ms, w[0]), (w[1], day.end_ms)]
    a = localize_cube(cube, scope={}, window=w, baseline=spans)
    hours = [(day.start_ms + k * h, day.start_ms + (k + 1) * h) for k in list(range(10)) + list(range(12, 24))]
    b = localize_cube(cube, scope={}, window=w, baseline=hours)
    assert a.expected == pytest.approx(b.expected, rel=1e-12)
    c = localize_cube(cube, scope={}, window=w, baseline=spans, denominator=None)
    assert c.expected > 0


def test_report_lines(day, pipe, strong):
    comp, fa = strong
    truth = SimpleNamespace(root_causes=[fa], capacity_mbps=day.capacity_mbps)
    lines = analysis_report_lines(truth, comp)
    text = "\n".join(lines)
    assert lines[0].startswith("== analysis")
    assert "worst incident: region" in text and "injected: region" in text
    assert "routing:" in text and "complaints per region and category" in text
    assert "== analysis" in analysis_report_lines(day, pipe)[0]
    from_day = analysis_report_lines(day, None)
    assert "from the synthetic day's records" in from_day[1]
    assert "no analysis component" in analysis_report_lines(None, None)[1]


def test_report_without_data_or_capacities(day):
    comp = AnalysisComponent(day.topology)
    text = "\n".join(analysis_report_lines(None, comp))
    assert "no region-hour" in text and "no flow records" in text and "none received" in text
    comp.update(
        RoutedBatch(
            "flow", day.flow[:50], day.topology.index_of(day.flow["src_element_id"][:50]), np.zeros(50, np.int64)
        )
    )
    comp.update(
        RoutedBatch("qos", day.qos[:5], day.topology.index_of(day.qos["element_id"][:5]), np.zeros(5, np.int64))
    )
    assert "no element capacities" in "\n".join(analysis_report_lines(None, comp))


def test_topology_change_keeps_the_component(day):
    comp = AnalysisComponent(day.topology, capacity_mbps=day.capacity_mbps)
    site = int(day.topology_table["site_id"][0])
    new, change = day.topology.add_elements(np.array([99_999_999]), parent_ids=np.array([site]))
    assert comp.topology_changed(new, [change]) == []
    assert len(comp.capacity_mbps) == day.topology.n_elements + 1
    assert comp.capacity_mbps[-1] == 0 and comp.capacity_mbps[0] == day.capacity_mbps[0]
    assert comp.topology is new


def test_worst_incident_extends_forward_over_adjacent_hours():
    """The worst hour (2) is extended over the following hours of its node that also score (3 and
    4, each far above the node's rate in its other hours); hour 5 is back to normal. Scores by a
    plain leave-one-out Poisson likelihood ratio."""
    h = 3_600_000
    dropped = np.array([5, 5, 200, 150, 120, 5, 5, 5], float)
    answered = np.full(8, 1000.0)
    res = np.zeros(16, dtype=[("region", "i8"), ("hour", "i8"), ("sum:dropped", "f8"), ("sum:answered", "f8")])
    res["region"] = np.repeat([1, 2], 8)
    res["hour"] = np.tile(np.arange(8) * h, 2)
    res["sum:dropped"] = np.concatenate([dropped, np.full(8, 5.0)])  # region 2: flat, no incident
    res["sum:answered"] = np.tile(answered, 2)
    cube = SimpleNamespace(query=lambda dims, measures: res, all_dims={"hour": SimpleNamespace(label_scale=h)})

    def llr(k):
        e = answered[k] * (dropped.sum() - dropped[k]) / (answered.sum() - answered[k])
        n = dropped[k]
        return n * np.log(n / e) - (n - e) if n > e else 0.0

    scores = [llr(k) for k in range(8)]
    assert int(np.argmax(scores)) == 2 and min(scores[3], scores[4]) >= 4.5 and scores[5] < 4.5
    inc = worst_incident(cube)
    assert inc["scope"] == {"region": 1}
    assert inc["window"] == (2 * h, 5 * h)
    assert inc["baseline"] == [(0, 2 * h), (5 * h, 8 * h)]
    assert inc["score"] == pytest.approx(sum(scores[2:5]), rel=1e-9)
    assert inc["actual"] == 470.0
