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


def _same(fused: Ingestor, steps: Ingestor, a: np.ndarray) -> dict:
    r1, r2 = fused.ingest(a), steps.ingest(a.copy())
    assert r1.by_reason == r2.by_reason
    assert r1.accepted.tobytes() == r2.accepted.tobytes()
    return r1.by_reason


def _pair(source: str) -> tuple[Ingestor, Ingestor]:
    fused, steps = Ingestor(source), Ingestor(source)
    steps.fused_dedup = False
    return fused, steps


def test_edge_paths_decide_as_the_separate_steps():
    """Before the clock, a batch with no valid row, a bucket that fills, a ring that must grow, the
    empty-slot key, a day with a gap then late rows into kept and missing buckets: the same decisions."""
    fused, steps = _pair("equip")
    a = rows("equip", 5)
    a["ts_ms"] = T0 + np.arange(5) * 90 * 60_000  # 6 h over five rows before the clock: the ring grows
    assert _same(fused, steps, a) == {}
    bad = rows("equip", 3)
    bad["value"] = np.nan  # no valid row (and still no clock)
    assert _same(fused, steps, bad) == {"non_finite": 3}
    full = rows("equip", 400)  # 400 keys in one bucket: its table grows
    full["ts_ms"] = T0 + 6 * 3_600_000 + 60_000
    full["element_id"] = 1000 + np.arange(400)
    assert _same(fused, steps, np.concatenate([full, full[:50]])) == {"duplicate_id": 50}

    fused, steps = _pair("qos")
    day = rows("qos", 30_000)
    t = T0 + np.sort(np.random.default_rng(3).integers(0, 86_400_000, 30_000))
    t = t[(t < T0 + 5 * 3_600_000) | (t >= T0 + 10 * 3_600_000)]  # no rows from 05:00 to 10:00
    day = day[: len(t)]
    day["ts_ms"] = t // 1000 * 1000
    day["element_id"] = 1000 + np.arange(len(t)) % 97
    _same(fused, steps, day)
    late = rows("qos", 40)  # late rows: in kept buckets (copies and new) and in the gap (no bucket)
    late["ts_ms"] = np.r_[day["ts_ms"][:10], day["ts_ms"][:10] + 1, np.full(20, T0 + 7 * 3_600_000)]
    late["element_id"] = np.r_[day["element_id"][:10], day["element_id"][:10], 1000 + np.arange(20)]
    assert _same(fused, steps, late) == {"duplicate_id": 10}
    assert _same(fused, steps, late) == {"duplicate_id": 40}

    fused, steps = _pair("cdr")
    c = rows("cdr", 6)
    c["record_id"] = [np.iinfo(np.int64).min, 5, 6, 7, 8, 9]  # the empty-slot value as an id
    assert _same(fused, steps, c) == {}
    assert _same(fused, steps, c[:2]) == {"duplicate_id": 2}
    for day_n in (1, 2, 3):  # the generations turn over: an id of the day before is still caught
        d = rows("cdr", 20, t0=T0 + day_n * 86_400_000)
        d["record_id"] = 100 * day_n + np.arange(20)
        assert _same(fused, steps, d) == {}
        prev = d.copy()
        prev["record_id"] -= 100
        prev["start_ms"] += 3_600_000
        prev["end_ms"] += 3_600_000
        assert _same(fused, steps, prev) == {"duplicate_id": 20 if day_n > 1 else 5}  # day 0 held ids 5..9


def test_no_valid_row_before_the_clock_and_the_empty_slot_key():
    for source, field, value in (("flow", "bytes", -1), ("qos", "latency_ms", np.inf)):
        fused, steps = _pair(source)
        bad = rows(source, 3)
        bad[field] = value
        assert sum(_same(fused, steps, bad).values()) == 3
    # the key equal to the empty-slot marker (a natural-key hash could be it) is kept by a flag
    from kernels.dedup import EMPTY
    from kernels.dedup_batch import G_BUCKET_MS, G_CODE, G_FIELD, G_HORIZON, G_KEEP, G_LO, G_RLO, G_SIZE, _ring_chunk

    geo = np.zeros(G_SIZE, np.int64)
    geo[[G_BUCKET_MS, G_HORIZON, G_LO, G_RLO, G_KEEP, G_CODE, G_FIELD]] = [300_000, H, 0, 0, EMPTY, 12, 3]
    tables = np.empty((4, 16), np.int64)
    meta = np.zeros((4, 3), np.int64)
    meta[:, 0] = EMPTY
    keys = np.array([EMPTY, 5, EMPTY], np.int64)
    code, fld, flag = np.zeros(3, np.int8), np.zeros(3, np.int8), np.zeros(3, np.int8)
    assert _ring_chunk(keys, np.array([0, 1, 2]), np.arange(3), 3, geo, tables, meta, code, fld, flag) == -1
    assert code.tolist() == [0, 0, 12] and fld.tolist() == [0, 0, 3] and meta[0, 1] == 2
