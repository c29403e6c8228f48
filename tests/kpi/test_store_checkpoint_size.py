"""The counter store's checkpoint does not grow while its hour ring fills: the hour ring is stored
at its full size (a checkpoint's fixed-size entry), the minute rings as their non-zero cells."""

import json

import numpy as np

from telcoanalytics.kpi import CounterStore
from telcoanalytics.pipeline import checkpoint as ck
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6

HOUR_COLS = [("attempts", ""), ("answered", "")]


def stored(minutes: int, rng) -> tuple[dict, CounterStore]:
    """Stored checkpoint entries of a store with a 30-day hour ring fed ``minutes`` minutes."""
    st = CounterStore(topo6(), minute_ring=90, hour_columns=HOUR_COLS, hour_ring=30 * 24 + 2)
    for m0 in range(0, minutes, 60):
        cdr = random_cdr(rng, 600, np.array([10, 11, 12, 13, 14, 15]), 60)
        cdr["start_ms"] += m0 * MIN
        cdr["answer_ms"] = np.where(cdr["answer_ms"] >= 0, cdr["answer_ms"] + m0 * MIN, -1)
        cdr["end_ms"] += m0 * MIN
        st.add("cdr", cdr)
        st.set_watermark(T0 + (m0 + 60) * MIN)
        st._advance_minutes((T0 // MIN) + m0 + 60)
    flat = {f"comp.sla::mon::store.{k}": v for k, v in st.to_state().items() if isinstance(v, np.ndarray)}
    small, ck.ENCODE_MIN_BYTES = ck.ENCODE_MIN_BYTES, 0  # a tiny topology: compact every entry
    try:
        enc, how = ck.encode_entries(flat)
    finally:
        ck.ENCODE_MIN_BYTES = small
    back = ck.decode_entries(dict(enc), json.loads(json.dumps(how)))
    restored = CounterStore.from_state({**st.to_state(), **{k.split("store.", 1)[1]: v for k, v in back.items()}})
    for a in ("cdr", "elem", "hist", "hour", "slot_minute", "slot_hour"):
        np.testing.assert_array_equal(getattr(restored, a), getattr(st, a), err_msg=a)
    return enc, st


def test_hour_ring_entry_has_the_same_size_on_day_1_and_day_9(rng):
    day1, st1 = stored(6 * 60, rng)
    day9, st9 = stored(9 * 24 * 60, rng)
    assert (st1.slot_hour >= 0).sum() < (st9.slot_hour >= 0).sum()  # the ring filled meanwhile
    key = "comp.sla::mon::store.hour"
    assert key + "@nz" not in day1 and day1[key].nbytes == day9[key].nbytes == st9.hour.nbytes
    minute = [k for k in day9 if ".cdr." in k or ".elem." in k or ".hist." in k]
    assert minute and all(day9[k].size <= st9.cdr.size for k in minute)  # bounded by the 90-minute ring
