"""The duplicate check in one compiled call per batch (``Ingestor.fused_dedup``, the default) decides
exactly as the check in separate steps (clock, key array, key set) and as a plain Python set."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import NATURAL_KEY, SOURCES
from tests.ingest.test_dedup_sources import T0, rows

H = 2 * 3_600_000  # the measurements' horizon

# one row: (identity 0..7, minutes from the batch's clock -180..+180, corrupt?)
ROW = st.tuples(st.integers(0, 7), st.integers(-180, 180), st.booleans())
BATCH = st.tuples(st.integers(0, 90), st.lists(ROW, max_size=40))  # (minutes the clock moves, rows)


def _batch(source: str, clock_ms: int, spec) -> np.ndarray:
    a = rows(source, len(spec))
    t = np.array([clock_ms + m * 60_000 for _, m, _ in spec], dtype=np.int64)
    ident = np.array([i for i, _, _ in spec], dtype=np.int64)
    bad = np.array([b for _, _, b in spec], dtype=bool) & (np.arange(len(spec)) % 3 == 0)
    tf = "start_ms" if source == "cdr" else "ts_ms"
    a[tf] = t
    if source == "cdr":
        a["end_ms"] = t + 1000
        a["record_id"] = ident * 1000 + (t // 3_600_000) % 5  # ids repeat within and across hours
        a["cause"][bad] = 0
    elif source == "complaint":
        a["complaint_id"] = ident * 1000 + (t // 3_600_000) % 5
        a["category"][bad] = 120
    elif source == "equip":
        a["element_id"] = 1000 + ident
        a["value"][bad] = np.nan
    elif source == "flow":
        a["src_element_id"] = 1000 + ident
        a["bytes"][bad] = -1
    else:
        a["element_id"] = 1000 + ident
        a["latency_ms"][bad] = np.inf
    return a


@settings(deadline=None, max_examples=40)
@given(source=st.sampled_from(SOURCES), batches=st.lists(BATCH, max_size=10), cut=st.integers(0, 10))
def test_one_call_decides_as_the_separate_steps_and_a_python_set(source, batches, cut):
    fused, steps = Ingestor(source), Ingestor(source)
    steps.fused_dedup = False
    seen: set = set()  # natural keys of the rows accepted so far
    clock = T0
    warm = _batch(source, T0, [(100 + i, 0, False) for i in range(8)])  # the robust clock is set from here on
    for ing in (fused, steps):
        ing.ingest(warm.copy())
    seen.update(tuple(int(x[f]) for f in NATURAL_KEY[source]) for x in warm)
    key_fields = NATURAL_KEY[source]
    for j, (advance, spec) in enumerate(batches):
        if j == cut:  # a checkpoint in the middle: both restored sets go on deciding the same
            fused, steps = Ingestor.from_state(fused.to_state()), Ingestor.from_state(steps.to_state())
            steps.fused_dedup = False
        clock += advance * 60_000
        a = _batch(source, clock, spec)
        r1, r2 = fused.ingest(a), steps.ingest(a.copy())
        assert r1.by_reason == r2.by_reason
        assert r1.accepted.tobytes() == r2.accepted.tobytes()
        # against a Python set: a row reported as a duplicate has a key accepted before (or
        # earlier in this batch); a batch delivered again at once is wholly a duplicate
        acc = set(r1.accepted_rows().tolist())
        n_dup = 0
        for i, x in enumerate(a):
            k = tuple(int(x[f]) for f in key_fields)
            if i in acc:
                seen.add(k)
            elif r1.by_reason.get("duplicate_id") and k in seen and not _corrupt(source, x):
                n_dup += 1
        assert n_dup == r1.by_reason.get("duplicate_id", 0)
        again = fused.ingest(r1.accepted)
        now = fused._dedup_clock.now_ms  # the clock after the batch decides the horizon
        t = r1.accepted["start_ms" if source == "cdr" else "ts_ms"]
        if now is not None:
            within = int(((t >= now - H + 300_000) & (t <= now + H - 300_000)).sum())
            assert again.by_reason.get("duplicate_id", 0) >= within  # caught within the horizon of the clock
        assert again.n_quarantined == again.by_reason.get("duplicate_id", 0)
        steps.ingest(r1.accepted.copy())
    assert fused.n_accepted == steps.n_accepted and fused.by_reason == steps.by_reason


def _corrupt(source: str, x) -> bool:
    """Whether ``_batch`` corrupted the row (rejected before the duplicate check)."""
    if source == "cdr":
        return int(x["cause"]) == 0
    if source == "complaint":
        return int(x["category"]) == 120
    if source == "equip":
        return bool(np.isnan(x["value"]))
    if source == "flow":
        return int(x["bytes"]) < 0
    return bool(np.isinf(x["latency_ms"]))


def test_a_day_in_one_call_is_held_in_the_ring_and_decides_as_the_steps(rng):
    """A whole day in one array (with copies of its early rows at the end): the one-call path holds
    the day's rows in buckets (not the side set), catches every duplicate of the call like the
    separate steps and a set, still catches the early rows a horizon of clock later, then frees them."""
    from kernels.dedup_batch import G_LO, G_RLO

    n = 40_000
    a = rows("equip", n)
    a["ts_ms"] = np.sort(T0 + rng.integers(0, 86_400_000, n) // 1000 * 1000)
    a["element_id"] = 1000 + rng.integers(0, 300, n)
    copies = a[rng.integers(0, n // 4, 500)]  # early rows again, 12-18 h later in the call
    a = np.concatenate([a[: 3 * n // 4], copies, a[3 * n // 4 :]])
    fused, steps = Ingestor("equip"), Ingestor("equip")
    steps.fused_dedup = False
    r1, r2 = fused.ingest(a), steps.ingest(a.copy())
    keys = a["element_id"] * 10**14 + a["ts_ms"]
    assert r1.by_reason == r2.by_reason == {"duplicate_id": len(a) - len(np.unique(keys))}
    assert r1.accepted.tobytes() == r2.accepted.tobytes()
    d = fused.dedup
    assert d.geo[G_RLO] < d.geo[G_LO] and len(d.side) == 0  # the day's buckets are kept, not moved aside
    assert len(d) == len(np.unique(keys))
    early = r1.accepted[:100]  # sent again soon after: caught by both (kept buckets / side set)
    assert fused.ingest(early).by_reason == steps.ingest(early.copy()).by_reason == {"duplicate_id": 100}
    later = r1.accepted[-20:].copy()
    later["ts_ms"] += 3 * H  # the clock moves three horizons on: the day is forgotten, memory shrinks
    fused.ingest(later)
    assert d.geo[G_RLO] == d.geo[G_LO] and d.tables.shape[0] <= 64 and len(d) <= 20
    assert fused.ingest(early).n_accepted == 100
