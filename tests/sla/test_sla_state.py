"""The SLA monitor's checkpoint: minute rings as their non-zero cells, the hour ring at its full
size (dense and sparse rings of older checkpoints still load), restored monitors continue exactly."""

import io

import numpy as np

from telcoanalytics.kpi import CounterStore
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import MIN, T0, topo6

from .test_sla_quiet import RULES, minute_batches


def fed(minutes):
    mon = SlaMonitor(topo6(), RULES)
    rng = np.random.default_rng(9)
    for m in minutes:
        for src, b in minute_batches(rng, m):
            mon.update(src, b)
        mon.advance(T0 + (m + 1) * MIN)
    return mon, rng


def npz_bytes(d: dict) -> int:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in d.items()})
    return buf.tell()


def test_rings_checkpoint_as_non_zero_cells_and_dense_ones_still_load():
    mon, _ = fed(range(130))
    st = mon.store
    d = st.to_state()
    assert "cdr" not in d and d["cdr.value"].dtype == np.float32 and d["cdr.at"].dtype == np.uint32
    for a in ("cdr", "elem", "hist"):
        ring = getattr(st, a)
        assert len(d[f"{a}.at"]) == np.count_nonzero(ring) < ring.size
    assert "hour.at" not in d and d["hour"].shape == st.hour.shape  # the hour ring at its full size
    back = CounterStore.from_state(d)
    old = dict(d)  # the dense format of earlier checkpoints
    sparse_hour = dict(d)  # format 4 before the hour ring was stored at its full size
    del sparse_hour["hour"]
    at = np.flatnonzero(st.hour)
    sparse_hour.update({"hour.shape": np.array(st.hour.shape), "hour.at": at.astype(np.uint32)})
    sparse_hour["hour.value"] = st.hour.reshape(-1)[at]
    for a in ("cdr", "elem", "hist"):
        for k in ("shape", "at", "value"):
            del old[f"{a}.{k}"]
        old[a] = getattr(st, a).copy()
    dense = CounterStore.from_state(old)
    was_sparse = CounterStore.from_state(sparse_hour)
    for a in ("cdr", "elem", "hist", "hour", "slot_minute", "slot_hour"):
        for got in (back, dense, was_sparse):
            np.testing.assert_array_equal(getattr(got, a), getattr(st, a))
            assert getattr(got, a).dtype == getattr(st, a).dtype
    assert npz_bytes(d) < npz_bytes(old) / 2


def test_restored_monitor_continues_exactly():
    mon, rng = fed(range(130))
    back = SlaMonitor.from_state(mon.to_state())
    evs = {}
    for name, m in (("orig", mon), ("back", back)):
        r = np.random.default_rng(11)
        out = []
        for minute in range(130, 200):
            for src, b in minute_batches(r, minute):
                m.update(src, b)
            out += m.advance(T0 + (minute + 1) * MIN)
        evs[name] = [e.to_dict() for e in out]
    assert evs["orig"] == evs["back"] and len(evs["orig"]) > 0
