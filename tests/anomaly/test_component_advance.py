"""The replay's anomaly component at each advance: the findings of the updates since the last
advance and the silence check, in that order, relabelled, kept and paged as the policy selects."""

import copy

import numpy as np
import pytest

from kernels import detect as _kd
from telcoanalytics.anomaly.config import ANOMALY_DTYPE
from telcoanalytics.anomaly.policy import relabel_benign
from telcoanalytics.pipeline.components import AnomalyComponent
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def small_day():
    return generate(n_elements=60, n_regions=2, days=0.15, seed=3)


def _alerts(alerts):
    return [(a.fingerprint, a.state, a.starts_at_ms, a.ends_at_ms, a.labels, a.annotations) for a in alerts]


def test_an_advance_settles_the_pending_findings_in_order_and_pages_what_the_policy_selects(small_day):
    """Reference: a copy of the component before the advance, its pending findings and silence
    rows concatenated with NumPy, relabelled, and paged by its policy with the detector's clocks."""
    topo = small_day.topology
    comp = AnomalyComponent(topo)
    several = advances = 0
    batches = small_day.raw_batches(batch_ms=600_000, with_arrival=True)
    for i, (source, rows, _arrival, _origin) in enumerate(batches):
        if source not in ("equip", "qos"):
            continue
        keep = np.isin(rows["element_id"], topo.ids[topo.element_level])
        if source == "equip":
            keep &= (rows["metric_id"] >= 0) & (rows["metric_id"] < 6)
        rows = rows[keep]
        comp.update(RoutedBatch(source, rows, topo.index_of(rows["element_id"]), np.zeros(len(rows), np.int64)))
        if i % 5 or not len(rows):
            continue
        wm = int(rows["ts_ms"].max())
        ref = copy.deepcopy(comp)
        s = ref.net.check_silence(wm)
        parts = ref._pending + ([s] if len(s) else [])
        want = np.concatenate(parts) if parts else np.zeros(0, ANOMALY_DTYPE)
        relabel_benign(want)
        st = ref.net.detector.state
        want_alerts = ref.policy.page(
            want,
            topo,
            wm,
            data_ms=max(ref.data_ms, wm),
            slot_time=lambda slots, st=st: st.last_t[slots],
            last_alarm=lambda slots, st=st: st.sx[slots, _kd.X_LASTA],
            peak_value=lambda slots, st=st: st.sx[slots, _kd.X_PEAKV],
        )
        n_kept = len(comp.rows)
        got_alerts = comp.advance(wm)
        got = comp.rows[n_kept] if len(comp.rows) > n_kept else np.zeros(0, ANOMALY_DTYPE)
        assert got.tobytes() == want.tobytes() and not comp._pending
        assert _alerts(got_alerts) == _alerts(want_alerts)
        assert comp.policy.to_state()["counts"] == ref.policy.to_state()["counts"]
        several += len(parts) > 1
        advances += 1
    assert advances > 5 and several > 0
