"""The packed per-slot record (hot state, gate, settings, time, count, run and direction as views
of one 128-byte row per slot) changes no result and no checkpoint: a detector run on separate
contiguous arrays (the layout before) gives the same outputs bit for bit, checkpoints hold the
same arrays as before, and a checkpoint written with separate arrays loads and continues exactly."""

import numpy as np
import pytest

from kernels import detect as K
from telcoanalytics.anomaly.detector import AnomalyDetector, DetectorConfig

PM = 300_000


def _feed(n_slots=60, rounds=400, seed=3):
    """Batches of a shuffled, seasonal, spiky and partly shifted stream."""
    rng = np.random.default_rng(seed)
    base = 10.0 + 5.0 * rng.random(n_slots)
    for k in range(rounds):
        slots = rng.permutation(n_slots)
        x = base[slots] + 3.0 * np.sin(2 * np.pi * k / 288) + rng.standard_normal(n_slots)
        x = x + 40.0 * (rng.random(n_slots) < 0.01) + 15.0 * (slots < 5) * (k > 300)
        x[rng.random(n_slots) < 0.002] = np.nan
        ts = np.full(n_slots, k * PM, dtype=np.int64) - (rng.random(n_slots) < 0.01) * 2 * PM  # some late
        yield ts, slots.astype(np.int64), x


def _run(det, batches):
    det.warn_late = False  # the feed holds late events on purpose
    out = []
    for ts, sl, x in batches:
        rows = det.update(ts, sl, x)
        last = det.last
        out.append(
            (rows.copy(), *(np.array(a) for a in (last.z, last.score, last.baseline, last.threshold, last.flags)))
        )
    return out


def _unpacked(det):
    """The same detector on separate C-contiguous arrays (the layout before the packed record)."""
    det.state = K.State(*(np.ascontiguousarray(a).copy() for a in det.state))
    det.sp = np.ascontiguousarray(det.sp).copy()
    return det


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


@pytest.fixture
def cfg():
    return DetectorConfig.for_interval(300, refire_s=0, gate_g=3.0, warmup=10)


def test_packed_fields_are_views_of_one_aligned_record(cfg):
    det = AnomalyDetector(5, cfg)
    S = det.state
    base = S.st.base
    for a in (S.gate, S.nobs, S.last_t, S.run, S.open_dir, det.sp):
        assert np.shares_memory(a, S.st) or a.base is base or np.shares_memory(a.base, base)
        assert a.strides[0] == 128
    assert S.st.ctypes.data % 64 == 0
    assert (S.nobs.dtype, S.last_t.dtype, S.run.dtype, S.open_dir.dtype) == (np.int32, np.int64, np.int16, np.int8)
    # writing one field leaves its neighbours in the record alone
    S.nobs[2], S.run[2], S.open_dir[2], S.last_t[2] = 2_000_000_000, -30000, -1, 2**62
    assert S.nobs[2] == 2_000_000_000 and S.run[2] == -30000 and S.open_dir[2] == -1 and S.last_t[2] == 2**62
    assert S.nobs[1] == 0 and S.run[3] == 0 and S.last_t[1] == -1 and S.st[2, K.F_THR] == S.st[1, K.F_THR]
    assert np.array_equal(det.sp[2], det.sp[1]) and np.array_equal(S.gate[2], S.gate[1])


def test_packed_and_separate_arrays_give_the_same_results(cfg):
    packed = _run(AnomalyDetector(60, cfg), _feed())
    separate = _run(_unpacked(AnomalyDetector(60, cfg)), _feed())
    assert sum(len(r[0]) for r in packed) > 5  # episodes and changes took place
    _same(packed, separate)


def test_a_checkpoint_of_separate_arrays_loads_into_the_record_and_continues_exactly(cfg):
    batches = list(_feed())
    full = AnomalyDetector(60, cfg)
    _run(full, batches[:250])
    old = _unpacked(AnomalyDetector.from_state(full.to_state()))  # as an older version held it
    d = old.to_state()
    for f in K.State._fields:
        assert d[f].flags.c_contiguous and d[f].dtype == getattr(full.state, f).dtype
    back = AnomalyDetector.from_state(d)
    assert back.state.st.strides[0] == 128  # packed again
    _same(_run(back, batches[250:]), _run(full, batches[250:]))


def test_grow_keeps_the_packed_state(cfg):
    batches = list(_feed(n_slots=40))
    a, b = AnomalyDetector(40, cfg), AnomalyDetector(40, cfg)
    _run(a, batches[:200])
    _run(b, batches[:200])
    b.grow(45)
    assert b.state.st.strides[0] == 128 and b.sp.shape == (45, K.N_SP) and b.state.last_t[44] == -1
    _same(_run(b, batches[200:]), _run(a, batches[200:]))


def test_a_checkpoint_with_a_wrong_shape_is_refused(cfg):
    d = AnomalyDetector(4, cfg).to_state()
    d["gate"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match="'gate' has shape"):
        AnomalyDetector.from_state(d)
    d = AnomalyDetector(4, cfg).to_state()
    d["sp"] = np.zeros((3, K.N_SP))
    with pytest.raises(ValueError, match="'sp' has shape"):
        AnomalyDetector.from_state(d)
