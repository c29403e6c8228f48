"""The KPI series kept for the statistics, and the replay's statistics section."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.analysis.series import SeriesKeeper, _bin_mean, statistics_report_lines
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.records import METRIC_CODE, empty
from telcoanalytics.topology import Topology


def _topo(n=6):
    return Topology.from_columns(np.arange(n) + 10, {"region": np.arange(n) % 2 + 1, "site": np.arange(n) + 100})


def test_means_per_bin_against_numpy(rng):
    topo = _topo()
    k = SeriesKeeper(topo, bin_ms=60_000)
    t = rng.integers(0, 30 * 60_000, 5000)
    e = rng.integers(0, 6, 5000)
    v = rng.normal(50, 10, 5000)
    k.add("latency_ms", t, e, v)
    times, x = k.series("latency_ms")
    assert times[0] == 0 and np.all(np.diff(times) == 60_000)
    for j in (0, 3, 5):
        for b in (0, 7, len(times) - 1):
            m = (e == j) & (t // 60_000 == b)
            want = v[m].mean() if m.any() else np.nan
            np.testing.assert_allclose(x[j, b], want, rtol=1e-12)  # sums of a few hundred values
    reg = k.region_series("latency_ms")
    m = (topo.element_to("region")[e] == 1) & (t // 60_000 == 4)
    np.testing.assert_allclose(reg[1, 4], v[m].mean(), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(-3, 40), st.integers(1, 6)), min_size=1, max_size=40),
    max_bins=st.integers(1, 90),
    seed=st.integers(0, 2**31),
)
def test_a_long_stream_keeps_exactly_the_last_bins_of_a_dense_reference(steps, max_bins, seed):
    """Bins arrive one batch at a time (forward jumps, gaps longer than ``max_bins``, rows a little
    late); the kept series equal a dense matrix over all bins cut to the last ``max_bins``."""
    rng = np.random.default_rng(seed)
    k = SeriesKeeper(_topo(3), bin_ms=1000, max_bins=max_bins)
    t_all, e_all, v_all = [], [], []
    hi = 0
    for jump, n in steps:
        hi = max(hi + jump, 0)
        t = (hi - rng.integers(0, 3, n)).clip(0) * 1000 + rng.integers(0, 1000, n)
        e, v = rng.integers(0, 3, n), rng.integers(0, 100, n).astype(float)  # exact sums
        k.add("latency_ms", t, e, v)
        t_all.append(t), e_all.append(e), v_all.append(v)
    times, x = k.series("latency_ms")
    t, e, v = (np.concatenate(a) for a in (t_all, e_all, v_all))
    b0, b1 = int(t_all[0].min() // 1000), int(times[-1] // 1000)  # the first batch sets the first bin
    assert len(times) == min(max_bins, b1 - b0 + 1) and np.all(np.diff(times) == 1000)
    first = b1 - len(times) + 1
    # a row counts if its bin was still kept when it arrived; replay the arrival order to know
    keep, seen_hi = [], -1
    for part in t_all:
        b = part // 1000
        seen_hi = max(seen_hi, int(b.max()))
        lo = max(b0, seen_hi - max_bins + 1)
        keep.append(b >= lo)
    keep = np.concatenate(keep) & (t // 1000 >= first)
    s = np.zeros((3, len(times)))
    c = np.zeros((3, len(times)))
    np.add.at(s, (e[keep], t[keep] // 1000 - first), v[keep])
    np.add.at(c, (e[keep], t[keep] // 1000 - first), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(x, s / c)


def test_new_bins_reallocate_rarely():
    """A bin at a time for 20 windows of ``max_bins``: the buffers are reallocated about once per
    slack (an eighth of ``max_bins``, at least 64 columns), not once per bin."""
    k = SeriesKeeper(_topo(), bin_ms=1000, max_bins=256)
    for b in range(20 * 256):
        k.add("prb_util_pct", np.array([b * 1000]), np.array([b % 6]), np.array([1.0]))
    assert k.series("prb_util_pct")[1].shape == (6, 256)
    assert k.n_compactions <= 20 * 256 // 64 + 2


def test_bounded_to_max_bins_and_old_rows_ignored():
    k = SeriesKeeper(_topo(), bin_ms=1000, max_bins=5)
    k.add("prb_util_pct", np.arange(10) * 1000, np.zeros(10, int), np.arange(10.0))
    times, x = k.series("prb_util_pct")
    assert times.tolist() == [5000, 6000, 7000, 8000, 9000] and x[0].tolist() == [5, 6, 7, 8, 9]
    k.add("prb_util_pct", np.array([1000]), np.array([0]), np.array([99.0]))  # older than the kept bins
    assert k.series("prb_util_pct")[1][0].tolist() == [5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="positive"):
        SeriesKeeper(_topo(), bin_ms=0)


def test_batches_topology_growth_and_state():
    topo = _topo()
    k = SeriesKeeper(topo, bin_ms=60_000)
    assert k.times().size == 0
    eq = empty("equip", 4)
    eq["ts_ms"], eq["metric_id"], eq["value"] = [0, 0, 60_000, 60_000], METRIC_CODE["prb_util_pct"], [10, 20, 30, 40]
    eq["metric_id"][3] = METRIC_CODE["cpu_util_pct"]
    idx = np.array([0, 0, 1, 1])
    k.add_batch(RoutedBatch("equip", eq, idx, idx))
    q = empty("qos", 1)
    q["ts_ms"], q["latency_ms"] = 0, 7.0
    k.add_batch(RoutedBatch("qos", q, np.array([2]), np.array([0])))
    c = empty("complaint", 3)
    c["ts_ms"] = [0, 60_000, 60_000]
    k.add_batch(RoutedBatch("complaint", c, np.array([0, 1, -1]), np.zeros(3, int)))
    k.add_batch(RoutedBatch("flow", empty("flow", 1), np.array([0]), np.array([0])))  # not kept
    x = k.series("prb_util_pct")[1]
    assert x[0, 0] == 15 and x[1, 1] == 30 and np.isnan(x[1, 0])
    assert k.series("latency_ms")[1][2, 0] == 7 and k.complaints.sum() == 2
    t2, _ = topo.add_elements([99], [100])
    k.topology_changed(t2)
    assert k.sums["latency_ms"].shape[0] == 7
    back = SeriesKeeper.from_state(k.to_state(), t2)
    np.testing.assert_array_equal(back.series("prb_util_pct")[1], k.series("prb_util_pct")[1])
    assert back.first_bin == k.first_bin and back.complaints.tolist() == k.complaints.tolist()
    assert SeriesKeeper.from_state(SeriesKeeper(t2).to_state(), t2).first_bin is None


def test_bin_mean_without_warnings():
    x = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]])
    with np.errstate(all="raise"):
        m = _bin_mean(x)
    assert m[0] == 2 and np.isnan(m[1])


@pytest.mark.slow  # fits Holt-Winters and trends over a few hundred series
def test_statistics_section_on_a_synthetic_network():
    from telcoanalytics.records import ELEMENT_FIELD
    from telcoanalytics.synth.network import SynthConfig, generate

    day = generate(SynthConfig(n_elements=300, days=2.0, seed=5, complaints=1.0, n_changes=1))
    k = SeriesKeeper(day.topology)
    assert statistics_report_lines(k, day) == ["  statistics: fewer than 24 bins of series so far"]
    for s in ("equip", "qos", "complaint"):
        rows = day[s]
        idx = day.topology.index_of(rows[ELEMENT_FIELD[s]])
        k.add_batch(RoutedBatch(s, rows, idx, np.zeros(len(rows), np.int64)))
    text = "\n".join(statistics_report_lines(k, day))
    assert "trends in PRB utilisation" in text and "capacity: element" in text and "Holt-Winters" in text
    assert "complaints in region" in text and "Spearman" in text
    ch = day.changes[0]
    assert f"(injected {ch.log_effect:+.3f})" in text
    effect = float(text.split("effect ")[1].split()[0])
    lo, hi = (float(x) for x in text.split("effect ")[1].split("[")[1].split("]")[0].split(", "))
    assert lo <= hi and abs(effect - ch.log_effect) < 0.1  # the known effect, within the noise of 300 cells
    k.first_bin = k.first_bin + 10**9  # a change outside the kept series is said, not dropped silently
    assert "outside the kept series" in "\n".join(statistics_report_lines(k, day))


def test_localize_refuses_an_empty_baseline_and_the_report_says_why(tmp_path):
    from telcoanalytics import cli
    from telcoanalytics.analysis.localize import localize_cube

    with pytest.raises(ValueError, match="baseline is an empty list"):
        localize_cube(None, scope={}, window=(0, 3_600_000), baseline=[])
    d = tmp_path / "data"  # 45 minutes: the worst region-hour has no earlier hour to compare with
    assert cli.main(["generate", "--elements", "100", "--days", "0.03", "--out", str(d)]) == 0
    out = tmp_path / "o"
    assert cli.main(["replay", "--input", str(d), "--out", str(out), "--no-checkpoints"]) == 0
    text = (out / "report.txt").read_text()
    assert "== analysis" in text


def test_state_has_a_fixed_size_from_the_first_bin_and_old_states_load():
    """The buffers are allocated once, at the first bin (max_bins plus the slack), and the state keeps
    that size while the kept bins fill and slide; a state of the kept columns alone (checkpoints
    before the fixed-size buffers) loads and continues like the keeper that wrote it."""
    topo = _topo()
    k = SeriesKeeper(topo, bin_ms=1000, max_bins=100)
    shapes = set()
    for b in range(0, 700, 3):
        k.add("latency_ms", np.array([b * 1000, b * 1000 + 5]), np.array([b % 6, 0]), np.array([1.0, 2.0]))
        st = k.to_state()
        shapes.add(tuple(st[f"sums_{s}"].shape for s in ("prb_util_pct", "latency_ms")) + (st["complaints"].shape,))
    assert shapes == {((6, k.capacity), (6, k.capacity), (2, k.capacity))}
    old = dict(k.to_state(), **{f"sums_{s}": k.sums[s] for s in ("prb_util_pct", "latency_ms")})
    old.update({f"counts_{s}": k.counts[s] for s in ("prb_util_pct", "latency_ms")}, complaints=k.complaints)
    del old["off"], old["width"]
    back = SeriesKeeper.from_state(old, topo)
    for keeper in (k, back):
        keeper.add("latency_ms", np.array([800_000, 640_000]), np.array([1, 2]), np.array([4.0, 8.0]))
    np.testing.assert_array_equal(back.series("latency_ms")[1], k.series("latency_ms")[1])
    np.testing.assert_array_equal(back.times(), k.times())
    assert back.to_state()["sums_latency_ms"].shape == (6, k.capacity)


def test_a_batch_spanning_many_bins_folds_its_distinct_cells(rng):
    """Rows spread over the whole kept week (more cells than rows: the distinct-cell path) fold as
    np.add.at does."""
    n_el = 600
    topo = Topology.from_columns(np.arange(n_el) + 10, {"region": np.arange(n_el) // 300 + 1, "site": np.arange(n_el)})
    k = SeriesKeeper(topo, bin_ms=1000, max_bins=2016)
    t = rng.integers(0, 2016, 3000) * 1000
    t[0], t[1] = 0, 2015 * 1000
    e, v = rng.integers(0, n_el, 3000), rng.normal(5, 1, 3000)
    k.add("prb_util_pct", t, e, v)
    s, c = np.zeros((n_el, 2016)), np.zeros((n_el, 2016))
    np.add.at(s, (e, t // 1000), v)
    np.add.at(c, (e, t // 1000), 1)
    np.testing.assert_array_equal(k.counts["prb_util_pct"], c)
    np.testing.assert_allclose(k.sums["prb_util_pct"], s, rtol=1e-14)
