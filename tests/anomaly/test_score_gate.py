"""The score gate (``DetectorConfig.gate_g``): an episode is reported only from an alarm point whose
capped score stands out from the slot's own recent scores.

Reference: the gate never changes what is learned, so the detector run without gate and without
re-fire suppression gives every episode and every point's score and alarm flag; a plain Python
replay (written from the docstrings, not from the kernel) then applies the re-fire rule and the
gate and must find the same reported openings as the kernel."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import detect as K
from telcoanalytics.anomaly.detector import AnomalyDetector, DetectorConfig

PM = 300_000
DAY = 86_400_000


def _gate_z(score, alpha, cap):
    """Standing of each point's capped score against the EW mean/sd of the earlier ones (the first
    observation of the series is not scored: it does not enter the gate)."""
    m, v = 1.0 / math.log(10.0), 1.0 / math.log(10.0) ** 2
    out = [0.0]
    for x in score[1:]:
        y = min(x, cap)
        out.append((y - m) / max(math.sqrt(max(v, 0.0)), 0.1))
        m_new = m + alpha * (y - m)
        v = v + alpha * ((y - m_new) ** 2 - v)
        m = m_new
    return np.array(out)


def _reported(t, rows, score, alarm, refire_ms, gz, g):
    """Event indices where episodes are reported, from the episodes of a run without gate and
    without re-fire suppression: re-fire rule (within ``refire_ms`` of the last close, only once
    the episode's running peak beats the last closed peak), then the gate (from the first alarm
    point at or after that whose gate standing exceeds ``g``). Silent episodes still close: their
    peak raises the remembered one, their close restarts the window."""
    episodes = []  # (first index, last index) of each episode
    lo = None
    for r in rows:
        i = int(np.searchsorted(t, r["t_ms"]))
        if r["classification"] != "fault":
            continue
        if r["end_ms"] < 0:
            lo = i
        else:
            episodes.append((lo, i))
            lo = None
    if lo is not None:
        episodes.append((lo, len(t) - 1))
    out = []
    close_t, close_p = None, 0.0
    for lo, hi in episodes:
        peak, rep = 0.0, None
        for j in range(lo, hi + 1):
            if alarm[j]:
                peak = max(peak, score[j])
                fire = close_t is None or t[lo] - close_t >= refire_ms or peak > close_p
                if rep is None and fire and (g <= 0 or gz[j] > g):
                    rep = j
        if rep is not None:
            out.append(rep)
            close_p = peak
        else:
            close_p = max(close_p, peak)
        close_t = t[hi]
    return out


def _noisy(rng, n, bursts=True):
    """A series whose scores are often high (heavy-tailed noise, bursts of variance) and a few
    large spikes."""
    t = np.arange(n, dtype=np.int64) * PM
    x = 100.0 + rng.standard_t(2, n) * 2.0
    if bursts:
        for a in rng.integers(0, n - 50, 6):
            x[a : a + 40] += rng.standard_normal(40) * 15.0
    spikes = rng.integers(200, n, 4)
    x[spikes] += 80.0
    return t, x


def _run(t, x, **kw):
    cfg = DetectorConfig(interval_s=300, season="none", warmup=10, adapt_s=0, **kw)
    det = AnomalyDetector(1, cfg)
    rows = det.update(t, np.zeros(len(t), dtype=np.int64), x)
    return det, rows


@pytest.mark.parametrize("g, hl_s, refire_s", [(2.0, 86400.0, 86400.0), (3.0, 43200.0, 14400.0), (3.0, 3600.0, 0.0)])
def test_gate_matches_reference(rng, g, hl_s, refire_s):
    t, x = _noisy(rng, 3000)
    free, free_rows = _run(t, x, refire_s=0.0, gate_g=0.0)
    score, alarm = free.last.score.copy(), (free.last.flags & K.FLAG_ALARM) != 0
    det, rows = _run(t, x, refire_s=refire_s, gate_g=g, gate_halflife_s=hl_s, gate_cap=50.0)
    # the gate changes no score, no baseline and nothing learned
    np.testing.assert_array_equal(det.last.score, score)
    np.testing.assert_array_equal(det.last.baseline, free.last.baseline)
    alpha = 1.0 - 0.5 ** (300.0 / hl_s)
    gz = _gate_z(np.where(np.isfinite(score), score, 0.0), alpha, 50.0)
    want = _reported(t, free_rows, score, alarm, refire_s * 1000, gz, g)
    got = np.searchsorted(t, rows["t_ms"][(rows["end_ms"] < 0) & (rows["classification"] == "fault")]).tolist()
    assert got == want
    no_gate, no_gate_rows = _run(t, x, refire_s=refire_s, gate_g=0.0)
    n_no_gate = int((no_gate_rows["end_ms"] < 0).sum())
    assert len(got) < n_no_gate if g >= 3 else len(got) <= n_no_gate  # at G = 3 the gate silences some here
    assert det.state.gate[0, K.GT_MEAN] == pytest.approx(_ew_mean(score, alpha), rel=1e-9)
    assert no_gate.state.gate[0, K.GT_MEAN] == pytest.approx(
        1.0 / math.log(10.0), rel=1e-12
    )  # untouched without a gate


def _ew_mean(score, alpha):
    m = 1.0 / math.log(10.0)
    for x in score[1:]:  # the first observation is not scored
        m += alpha * (min(x, 50.0) - m)
    return m


def test_quiet_series_still_pages_its_spike(rng):
    """A quiet series reports its one large spike with the gate as without it; a noisy series
    whose scores are often high reports fewer episodes with it."""
    n = 2000
    t = np.arange(n, dtype=np.int64) * PM
    quiet = 100.0 + rng.standard_normal(n)
    quiet[1500] += 30.0
    for g in (0.0, 3.0):
        _, rows = _run(t, quiet, gate_g=g)
        op = rows[rows["end_ms"] < 0]
        assert len(op) >= 1 and 1500 * PM in op["t_ms"].tolist()
    _, noisy = _noisy(rng, n)
    n_open = [int((_run(t, noisy, gate_g=g)[1]["end_ms"] < 0).sum()) for g in (0.0, 3.0)]
    assert n_open[1] < n_open[0]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    g=st.sampled_from([1.0, 2.0, 3.0, 4.0]),
    hl=st.sampled_from([3600.0, 86400.0]),
    cap=st.sampled_from([5.0, 50.0]),
)
def test_gate_invariants(seed, g, hl, cap):
    """Scores never change; every reported opening is an alarm point that stands out; a gate of 0
    reports exactly what the detector reported before the gate."""
    rng = np.random.default_rng(seed)
    t, x = _noisy(rng, 800, bursts=bool(seed % 2))
    base, base_rows = _run(t, x, gate_g=0.0)
    det, rows = _run(t, x, gate_g=g, gate_halflife_s=hl, gate_cap=cap)
    np.testing.assert_array_equal(det.last.score, base.last.score)
    alpha = 1.0 - 0.5 ** (300.0 / hl)
    gz = _gate_z(np.where(np.isfinite(base.last.score), base.last.score, 0.0), alpha, cap)
    idx = np.searchsorted(t, rows["t_ms"][rows["end_ms"] < 0])
    assert ((det.last.flags[idx] & K.FLAG_ALARM) != 0).all()
    assert (gz[idx] > g - 1e-9).all()
    # every reported opening lies inside an episode of the run without gate (same re-fire rule off)
    free, free_rows = _run(t, x, gate_g=0.0, refire_s=0.0)
    spans = _reported(t, free_rows, free.last.score, (free.last.flags & K.FLAG_ALARM) != 0, 0, gz, 0.0)
    assert set(idx.tolist()) <= set(range(len(t))) and len(idx) <= len(spans)


def test_gate_settings_are_checked():
    for bad in (dict(gate_g=-1.0), dict(gate_halflife_s=0.0), dict(gate_cap=0.0), dict(gate_g=float("nan"))):
        with pytest.raises(ValueError, match="gate"):
            DetectorConfig(**bad)
    assert DetectorConfig.for_interval(10, gate_halflife_s=3600.0).gate_alpha == pytest.approx(1 - 0.5 ** (10 / 3600))


def test_gate_state_checkpoints_and_grows(rng):
    t, x = _noisy(rng, 600)
    det, _ = _run(t, x, gate_g=3.0)
    back = AnomalyDetector.from_state(det.to_state())
    np.testing.assert_array_equal(back.state.gate, det.state.gate)
    old = det.to_state()
    del old["gate"]  # a checkpoint from before the gate: the gate starts afresh
    fresh = AnomalyDetector.from_state(old)
    assert fresh.state.gate[0, K.GT_MEAN] == pytest.approx(1.0 / math.log(10.0))
    assert fresh.state.gate[0, K.GT_VAR] == pytest.approx(1.0 / math.log(10.0) ** 2)
    det.grow(3)
    assert det.state.gate.shape == (3, 2) and det.state.gate[2, K.GT_MEAN] == pytest.approx(1.0 / math.log(10.0))
    det.update(t[:5] + t[-1] + PM, np.array([2, 2, 2, 2, 2]), x[:5])  # a grown slot gates like a new one
