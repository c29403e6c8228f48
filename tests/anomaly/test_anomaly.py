"""Tests of the streaming anomaly detector (kernel + AnomalyDetector)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import detect as K
from telcoanalytics.anomaly.detector import ANOMALY_DTYPE, AnomalyDetector, DetectorConfig
from tests.reference.anomaly import reference_detect, reference_zscore

DAY_MS = 86_400_000
PM_MS = 300_000


def _stream(n_slots, n_steps, rng, step_ms=PM_MS, noise=1.0, level=10.0):
    t = np.repeat(np.arange(n_steps, dtype=np.int64) * step_ms, n_slots)
    s = np.tile(np.arange(n_slots, dtype=np.int64), n_steps)
    x = level + s + noise * rng.standard_normal(len(t))
    return t, s, x


# ---- kernel against the reference -------------------------------------------------------------
@pytest.mark.parametrize("season", [False, True])
def test_matches_reference(rng, season):
    n_slots, n_steps = 3, 400
    t, s, x = _stream(n_slots, n_steps, rng)
    x[500] += 40.0  # a spike
    x[s == 2] += np.where(t[s == 2] > 250 * PM_MS, 8.0, 0.0)  # a step: CUSUM fires
    x[7] = np.nan
    kw = dict(
        season_ms=DAY_MS // 8 if season else 0,
        n_phase=12 if season else 1,
        warmup=20,
        target_p=0.02,
        eta=0.05,
        cusum_h=8.0,
    )
    cfg = DetectorConfig(
        season_s=kw["season_ms"] / 1000, n_phase=kw["n_phase"], warmup=20, target_fa=0.02, tune_eta=0.05, cusum_h=8.0
    )
    det = AnomalyDetector(n_slots, cfg)
    rows = det.update(t, s, x)
    z, base, thr, alarm, change = reference_detect(t, s, x, n_slots, **kw)
    out = det.last
    # same formulas in a different evaluation order: agreement to rounding over 1200 steps
    np.testing.assert_allclose(out.z, z, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out.baseline, base, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out.threshold, thr, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal((out.flags & K.FLAG_ALARM) > 0, alarm)
    np.testing.assert_array_equal((out.flags & K.FLAG_CHANGE) > 0, change)
    assert change.any() and alarm.any()
    assert (rows["classification"] == "change").sum() == change.sum()
    assert det.n_invalid == 1 and out.flags[7] == K.FLAG_INVALID


def test_zscore_kernel_matches_reference(rng):
    slot = rng.integers(0, 5, 2000)
    x = rng.standard_normal(2000)
    mean, var, z = np.zeros(5), np.zeros(5), np.zeros(2000)
    K.zscore_decayed(slot, x, 0.05, mean, var, z)
    # 400 updates per slot of one EW recursion: rounding only
    np.testing.assert_allclose(z, reference_zscore(slot, x, 5, 0.05), rtol=1e-10, atol=1e-12)


# ---- causality and robustness ----------------------------------------------------------------
def test_causal_prefix_unchanged_by_future(rng):
    t, s, x = _stream(2, 200, rng)
    a = AnomalyDetector(2, DetectorConfig(season_s=0, warmup=10))
    a.update(t, s, x)
    x2 = x.copy()
    x2[300:] = 1e6
    b = AnomalyDetector(2, DetectorConfig(season_s=0, warmup=10))
    b.update(t, s, x2)
    np.testing.assert_array_equal(a.last.z[:300], b.last.z[:300])


def test_spike_scored_against_prior_state_and_does_not_poison(rng):
    t, s, x = _stream(1, 300, rng, noise=1.0)
    x[200] = 10.0 + 1000.0
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=20, level_alpha=0.05))
    det.update(t, s, x)
    # not folded into its own baseline: z is not capped at sqrt(n - 1)
    assert det.last.z[200] > 300
    # Huber clipping: the spike moves the level by at most alpha * huber_c * sigma
    assert abs(det.last.baseline[201] - det.last.baseline[200]) < 0.05 * 3.0 * 2.0
    assert not (det.last.flags[205:] & K.FLAG_ALARM).any() or det.last.z[205:].max() < 10


def test_warmup_and_first_observation():
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=5, thr_min=3.0))
    t = np.arange(10, dtype=np.int64)
    x = np.array([1.0, 2, 1, 2, 30, 1, 2, 1, 2, 100])
    det.update(t, np.zeros(10, dtype=np.int64), x)
    flags = det.last.flags
    assert det.last.z[0] == 0.0 and det.last.baseline[0] == 1.0
    assert not (flags[:5] & (K.FLAG_ALARM | K.FLAG_WARM)).any()  # index 4 is a spike but not warm
    assert flags[9] & K.FLAG_ALARM and flags[9] & K.FLAG_WARM


def test_seasonal_profile_learns_and_removes_daily_pattern(rng):
    n_days, per_day = 6, 96
    t = np.arange(n_days * per_day, dtype=np.int64) * (DAY_MS // per_day)
    x = 50 + 20 * np.sin(2 * np.pi * np.arange(len(t)) / per_day) + rng.standard_normal(len(t))
    cfg = DetectorConfig(season_s=86400, n_phase=per_day, warmup=per_day, season_alpha=0.5, level_alpha=0.01)
    det = AnomalyDetector(1, cfg)
    det.update(t, np.zeros(len(t), dtype=np.int64), x)
    last_day = slice(5 * per_day, None)
    resid = x[last_day] - det.last.baseline[last_day]
    assert np.std(resid) < 2.0  # the 20-amplitude wave is in the baseline
    b = det.baseline_at(int(t[-1]) + DAY_MS // per_day)
    assert abs(b[0] - 50) < 5  # next bucket: the wave crosses 50 at phase 0


def test_step_change_rebaselines_instead_of_alarming_forever(rng):
    t, s, x = _stream(1, 400, rng)
    x[200:] += 15.0
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=30, cusum_h=10.0, level_alpha=0.01))
    rows = det.update(t, s, x)
    ch = rows[rows["classification"] == "change"]
    assert len(ch) >= 1 and ch["direction"][0] == 1
    assert 200 * PM_MS <= ch["start_ms"][0] and ch["end_ms"][0] <= 210 * PM_MS
    assert not (det.last.flags[260:] & K.FLAG_ALARM).any()
    assert abs(det.last.baseline[-1] - 25.0) < 2.0


def test_downward_change_and_gradual_drift(rng):
    t, s, x = _stream(1, 600, rng)
    x[300:] -= np.linspace(0, 30, 300)  # gradual degradation
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=30, cusum_h=12.0, level_alpha=0.005))
    rows = det.update(t, s, x)
    ch = rows[rows["classification"] == "change"]
    assert len(ch) >= 1 and (ch["direction"] == -1).all()
    assert ch["start_ms"][0] >= 300 * PM_MS


def test_episode_open_and_close_rows(rng):
    t, s, x = _stream(1, 120, rng)
    x[80:83] += 50.0
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=20, close_after=3, cusum_h=1e6))
    rows = det.update(t, s, x, thr_mult=np.ones(len(t)))
    ep = rows[rows["classification"] == "fault"]
    assert ep.dtype == ANOMALY_DTYPE
    assert ep["end_ms"][0] == -1 and ep["start_ms"][0] == 80 * PM_MS
    closed = ep[ep["end_ms"] >= 0]
    assert closed["start_ms"][0] == 80 * PM_MS and closed["end_ms"][0] == 82 * PM_MS
    assert closed["peak_score"][0] >= ep["peak_score"][0] and closed["direction"][0] == 1
    assert closed["threshold"][0] >= 3.0 and abs(closed["baseline"][0] - 10) < 2


def test_thr_mult_widens(rng):
    t, s, x = _stream(1, 100, rng)
    x[90] += 8.0
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=20))
    det.update(t, s, x, thr_mult=np.full(len(t), 100.0))
    assert not (det.last.flags & K.FLAG_ALARM).any()


# ---- false-alarm rate: the self-tuned threshold hits the target -------------------------------
def _fa_rate(x, target, warm_steps, slots, season_steps=0):
    n_slots = slots
    n_steps = len(x) // n_slots
    t = np.repeat(np.arange(n_steps, dtype=np.int64) * PM_MS, n_slots)
    s = np.tile(np.arange(n_slots, dtype=np.int64), n_steps)
    cfg = DetectorConfig(
        season_s=season_steps * PM_MS / 1000,
        n_phase=max(season_steps, 1),
        warmup=50,
        target_fa=target,
        tune_eta=0.1,
        thr_min=0.5,
        thr_max=1e3,
        thr_init=3.0,
        cusum_h=1e9,
    )
    det = AnomalyDetector(n_slots, cfg)
    det.update(t, s, x[: n_steps * n_slots])
    late = t >= warm_steps * PM_MS
    return np.mean((det.last.flags[late] & K.FLAG_ALARM) > 0)


@pytest.mark.parametrize("dist", ["gauss", "student_t3", "seasonal"])
def test_false_alarm_rate_matches_target(rng, dist):
    n = 40 * 1000
    season = 0
    if dist == "gauss":
        x = rng.standard_normal(n)
    elif dist == "student_t3":
        x = rng.standard_t(3, n)
    else:
        season = 48
        step = np.repeat(np.arange(n // 40), 40)
        x = 100 + 30 * np.sin(2 * np.pi * step / season) + 2 * rng.standard_normal(n)
    rate = _fa_rate(x, 0.02, 300, 40, season)
    # 28k scored points at p = 0.02: binomial sd 0.0008; quantile-tracking noise adds about as
    # much again, so +-20% relative (0.004) is a 3-sigma band.
    assert abs(rate - 0.02) < 0.004, rate


def _dist_sample(dist, rng, n_slots, n_steps, season):
    step = np.repeat(np.arange(n_steps), n_slots)
    n = n_slots * n_steps
    if dist == "gauss":
        return rng.standard_normal(n)
    if dist == "student_t3":
        return rng.standard_t(3, n)
    if dist == "lognormal":  # heavy right tail, skewed
        return rng.lognormal(0.0, 1.0, n)
    return 100 + 30 * np.sin(2 * np.pi * step / season) + 2 * rng.standard_normal(n)


@pytest.mark.parametrize("dist", ["gauss", "student_t3", "lognormal", "seasonal"])
def test_exceedance_count_identity_is_exact(rng, dist):
    """Inside the bounds, log thr moves by +eta (1 - p) per exceedance and -eta p otherwise, so
    per slot: exceedances - p * updates == (log thr_end - log thr_init) / eta, whatever the data."""
    n_slots, n_steps, season = 4, 1500, 48
    x = _dist_sample(dist, rng, n_slots, n_steps, season)
    t = np.repeat(np.arange(n_steps, dtype=np.int64) * PM_MS, n_slots)
    s = np.tile(np.arange(n_slots, dtype=np.int64), n_steps)
    p, eta = 0.01, 0.05
    det = AnomalyDetector(
        n_slots,
        DetectorConfig(
            season_s=season * PM_MS / 1000 if dist == "seasonal" else 0,
            n_phase=season,
            warmup=20,
            target_fa=p,
            tune_eta=eta,
            thr_min=1e-3,
            thr_init=2.0,
            thr_max=1e6,
            cusum_h=1e9,
        ),
    )
    det.update(t, s, x)
    z, thr = det.last.z, det.last.threshold
    updated = np.ones(len(t), dtype=bool)
    updated[:n_slots] = False  # the first point of a slot only sets the level
    for k in range(n_slots):
        m = updated & (s == k)
        exceed = np.count_nonzero(np.abs(z[m]) > thr[m])
        drift = (np.log(det.threshold[k]) - np.log(2.0)) / eta
        # the identity is exact; rounding of 1500 products of exp steps is ~1e-12 in log thr
        assert exceed - p * m.sum() == pytest.approx(drift, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("dist", ["gauss", "student_t3", "lognormal", "seasonal"])
def test_false_alarm_rate_at_production_target(dist):
    """Realised alarm rate at the production target p = 1e-3 on 100 slots x 40,000 points.

    The threshold starts below every quantile (thr_init = thr_min = 1, so the approach is fast);
    only the second half is counted. Errors, relative to p: binomial sqrt(1 / (p n)) = 2.2 % on
    2M points; tracker noise, by the exact identity exceed - p n = delta log thr / eta, the
    stationary spread of log thr (sqrt(eta p / (2 g)), g = d P(|z| > q) / d log q = 0.012 Gaussian,
    0.003 for t3) over eta n per slot, averaged over 100 slots: ~1.5 %; left-over convergence of
    the heavy tails (time constant 1 / (eta g) = 6,700 points for t3): measured +1..4 %. Tolerance
    +-10 % (measured 0.996..1.044 over 3 seeds x 4 distributions).
    """
    rng = np.random.default_rng(7)
    n_slots, n_steps, season, p = 100, 40_000, 96, 1e-3
    x = _dist_sample(dist, rng, n_slots, n_steps, season)
    t = np.repeat(np.arange(n_steps, dtype=np.int64) * PM_MS, n_slots)
    s = np.tile(np.arange(n_slots, dtype=np.int64), n_steps)
    cfg = DetectorConfig(
        season_s=season * PM_MS / 1000 if dist == "seasonal" else 0,
        n_phase=season,
        warmup=50,
        target_fa=p,
        tune_eta=0.05,
        thr_min=1.0,
        thr_init=1.0,
        thr_max=1e3,
        cusum_h=1e9,
    )
    det = AnomalyDetector(n_slots, cfg)
    det.update(t, s, x)
    late = t >= n_steps // 2 * PM_MS
    rate = np.mean((det.last.flags[late] & K.FLAG_ALARM) > 0)
    assert abs(rate / p - 1.0) < 0.10, rate


def test_bounds_override_target(rng):
    x = rng.standard_normal(20_000)
    t = np.arange(20_000, dtype=np.int64)
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=50, target_fa=0.2, thr_min=4.0, thr_init=4.0))
    det.update(t, np.zeros(20_000, dtype=np.int64), x)
    assert det.threshold[0] == 4.0  # pinned at the lower bound
    assert np.mean(det.last.flags & K.FLAG_ALARM) < 0.01
    det2 = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=50, target_fa=1e-4, thr_max=3.5, thr_init=3.5))
    det2.update(t, np.zeros(20_000, dtype=np.int64), x * 100)
    assert 3.45 < det2.threshold[0] <= 3.5  # held at the upper bound


def test_network_budget_gain_limits_alarms(rng):
    n_slots, n_steps = 50, 600
    t, s, x = _stream(n_slots, n_steps, rng)
    base_cfg = dict(season_s=0, warmup=50, target_fa=0.05, thr_min=1.0, thr_init=2.0, cusum_h=1e9)
    free = AnomalyDetector(n_slots, DetectorConfig(**base_cfg))
    free.update(t, s, x)
    capped = AnomalyDetector(n_slots, DetectorConfig(**base_cfg, budget_fa=0.005, budget_eta=0.05, gain_max=10.0))
    capped.update(t, s, x)
    late = t > 300 * PM_MS
    r_free = np.mean(free.last.flags[late] & K.FLAG_ALARM > 0)
    r_cap = np.mean(capped.last.flags[late] & K.FLAG_ALARM > 0)
    assert r_free > 0.03 and r_cap < 0.012 and capped.gain > 1.0 and free.gain == 1.0
    tiny = AnomalyDetector(n_slots, DetectorConfig(**base_cfg, budget_fa=1e-6, budget_eta=0.5, gain_max=1.5))
    tiny.update(t, s, x)
    assert tiny.gain == pytest.approx(1.5, rel=1e-3)  # upper bound reached


# ---- batching, state ----------------------------------------------------------------------
@given(split=st.integers(0, 600), seed=st.integers(0, 5))
def test_two_batches_equal_one_pass(split, seed):
    rng = np.random.default_rng(seed)
    t, s, x = _stream(3, 200, rng)
    x[rng.integers(0, 600, 5)] += 30
    cfg = DetectorConfig(season_s=3600, n_phase=6, warmup=10, cusum_h=6.0)
    one = AnomalyDetector(3, cfg)
    rows1 = one.update(t, s, x)
    two = AnomalyDetector(3, cfg)
    ra = two.update(t[:split], s[:split], x[:split])
    two = AnomalyDetector.from_state(two.to_state())  # checkpoint in the middle
    rb = two.update(t[split:], s[split:], x[split:])
    np.testing.assert_array_equal(np.concatenate([ra, rb]), rows1)
    np.testing.assert_array_equal(two.state, one.state)
    np.testing.assert_array_equal(two.seas, one.seas)


def test_grow_and_metadata(rng):
    det = AnomalyDetector(
        2, DetectorConfig(season_s=600, n_phase=2, warmup=5), slot_element_id=[7, 8], slot_metric=["a", "b"]
    )
    t, s, x = _stream(2, 50, rng)
    det.update(t, s, x)
    det.grow(4)
    assert (
        det.n_slots == 4
        and det.state.shape == (4, K.N_FIELDS)
        and det.cold.shape == (4, K.N_COLD)
        and det.seas.shape == (2, 4)
    )
    assert det.threshold[3] == det.config.thr_init and det.slot_element_id[3] == -1
    rows = det.update(np.array([t[-1] + PM_MS] * 2), np.array([3, 1]), np.array([1.0, 500.0]))
    assert rows["element_id"].tolist() == [8] and rows["metric"].tolist() == ["b"]
    assert det.open_direction[1] == 1 and det.n_obs[3] == 1
    with pytest.raises(ValueError, match="cannot shrink"):
        det.grow(1)


def test_empty_batch():
    det = AnomalyDetector(1)
    rows = det.update(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
    assert len(rows) == 0 and rows.dtype == ANOMALY_DTYPE


# ---- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(season_s=-1), "season_s"),
        (dict(n_phase=0), "n_phase"),
        (dict(season_s=0.01, n_phase=168), "shorter than"),
        (dict(level_alpha=0.0), "level_alpha"),
        (dict(huber_c=0), "huber_c"),
        (dict(floor_abs=0, floor_rel=0), "floor_abs"),
        (dict(target_fa=1.5), "target_fa"),
        (dict(budget_fa=0), "budget_fa"),
        (dict(tune_eta=1.0), "tune_eta"),
        (dict(budget_eta=-0.1), "budget_eta"),
        (dict(thr_init=50.0), "thr_min <= thr_init"),
        (dict(gain_max=0.5), "gain_max must be >= 1"),
        (dict(cusum_k=-1), "cusum_k"),
        (dict(warmup=0), "warmup"),
        (dict(close_after=0), "close_after"),
        (dict(thr_max=float("nan")), "finite"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        DetectorConfig(**kw)


def test_update_errors():
    with pytest.raises(ValueError, match="n_slots"):
        AnomalyDetector(-1)
    with pytest.raises(ValueError, match="DetectorConfig"):
        AnomalyDetector(1, config={"warmup": 3})
    with pytest.raises(ValueError, match="need 2 entries"):
        AnomalyDetector(2, slot_element_id=[1])
    det = AnomalyDetector(2)
    z = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="one length"):
        det.update(z, z[:2], np.zeros(3))
    with pytest.raises(ValueError, match="one-dimensional"):
        det.update(z.reshape(3, 1), z, np.zeros(3))
    with pytest.raises(ValueError, match="integers"):
        det.update(z, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"slot\[1\] = 5 is outside 0..1"):
        det.update(z, np.array([0, 5, 1]), np.zeros(3))
    with pytest.raises(ValueError, match="thr_mult has 2"):
        det.update(z, z, np.zeros(3), thr_mult=np.ones(2))
    with pytest.raises(ValueError, match="thr_mult must be > 0"):
        det.update(z, z, np.zeros(3), thr_mult=np.zeros(3))
    with pytest.raises(ValueError, match="not an AnomalyDetector"):
        AnomalyDetector.from_state({"kind": "x"})


def test_confirm_requires_consecutive_alarm_points(rng):
    t, s, x = _stream(1, 120, rng)
    x[60] += 50.0  # an isolated blip: no episode
    x[90:92] += 50.0  # two in a row: an episode starting at the first
    det = AnomalyDetector(1, DetectorConfig(season_s=0, warmup=20, cusum_h=1e6))
    det.set_confirm([0], 2)
    rows = det.update(t, s, x)
    opened = rows[rows["end_ms"] < 0]
    assert opened["start_ms"].tolist() == [90 * PM_MS] and opened["t_ms"].tolist() == [91 * PM_MS]
    with pytest.raises(ValueError, match="n_points"):
        det.set_confirm([0], 1.5)


# ---- batch mechanics: phase cache, reused output buffers ------------------------------------
def test_phase_cache_matches_one_event_per_call(rng):
    """The kernel recomputes the season phase only when an event leaves the previous event's
    bucket; times jumping back and forth across buckets (unsorted input) must give exactly what
    one event per call (a fresh phase each time) gives."""
    n = 600
    t = rng.integers(0, 3 * DAY_MS, n).astype(np.int64)
    t[100:140] = t[100]  # a run within one bucket
    s = rng.integers(0, 4, n).astype(np.int64)
    x = 10.0 + s + rng.standard_normal(n)
    cfg = DetectorConfig(season_s=86400.0, n_phase=24, warmup=5)
    one = AnomalyDetector(4, cfg)
    one.update(t, s, x)
    step = AnomalyDetector(4, cfg)
    z = np.array([(step.update(t[i : i + 1], s[i : i + 1], x[i : i + 1]), step.last.z[0])[1] for i in range(n)])
    np.testing.assert_array_equal(one.last.z, z)  # same operations: bit-identical
    np.testing.assert_array_equal(one.seas, step.seas)
    np.testing.assert_array_equal(one.state, step.state)


def test_outputs_kept_by_caller_are_not_overwritten(rng):
    t, s, x = _stream(3, 50, rng)
    det = AnomalyDetector(3, DetectorConfig(season_s=0, warmup=5))
    det.update(t[:60], s[:60], x[:60])
    kept = det.last
    z_kept = kept.z.copy()
    det.update(t[60:], s[60:], x[60:] + 100.0)
    np.testing.assert_array_equal(kept.z, z_kept)  # the caller's view still holds batch 1
    assert not np.shares_memory(kept.z, det.last.z)
    # nobody holds batch 2's outputs: batch 3 reuses their buffers, results as a fresh detector
    pool_id = id(det._out[0])
    det.update(t[:30] + 10**9, s[:30], x[:30])
    assert id(det._out[0]) == pool_id
    ref = AnomalyDetector(3, DetectorConfig(season_s=0, warmup=5))
    for a, b in ((0, 60), (60, 150)):
        ref.update(t[a:b], s[a:b], x[a:b] + (100.0 if a else 0.0))
    ref.update(t[:30] + 10**9, s[:30], x[:30])
    np.testing.assert_array_equal(det.last.z, ref.last.z)
    assert len(det.last.z) == 30


def test_threshold_steps_are_log_additive():
    up, dn = K.threshold_steps(0.01, 0.05)
    assert np.log(up) == pytest.approx(0.05 * 0.99, rel=1e-14)
    assert np.log(dn) == pytest.approx(-0.05 * 0.01, rel=1e-14)


def test_counters_saturate(rng):
    """Season visit counts (uint8), observation counts (int32) and alarm runs (int16) stop at
    their caps instead of wrapping around."""
    det = AnomalyDetector(1, DetectorConfig(season_s=3600.0, n_phase=1, warmup=5))
    t = np.arange(300, dtype=np.int64) * 1000
    det.update(t, np.zeros(300, dtype=np.int64), 5.0 + rng.standard_normal(300))
    assert det.seas_n[0, 0] == K.SEAS_N_MAX
    det.nobs[0] = K.N_MAX
    det.run[0] = K.RUN_MAX
    det.open_dir[0] = 1
    det.update(np.array([10**6]), np.array([0]), np.array([1e6]))  # an alarm point
    assert det.nobs[0] == K.N_MAX and det.run[0] == K.RUN_MAX
    assert det.last.flags[0] & K.FLAG_ALARM
    flat = AnomalyDetector(1, DetectorConfig(season_s=0))
    flat.update(t[:3], np.zeros(3, dtype=np.int64), np.array([1.0, 2.0, 3.0]))
    assert flat.baseline_at(0)[0] == flat.state[0, K.F_LEVEL]  # no season: the level
