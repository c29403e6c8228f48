"""Element ids in a few dense runs far apart (a region prefix before a sequence number, the
synthetic network's ids) take a paged table, and every source's row checks run fused with the
element lookup. References: a dict of the ids, the checks written out in NumPy (complaints) or
plain Python (CDRs), and the same rows through the flat table of dense ids (ids renumbered)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import validate as V
from telcoanalytics.ingest import ingestor as I
from telcoanalytics.ingest.ingestor import DEFAULT_TIME_RANGE_MS, Ingestor, _ElementLookup
from telcoanalytics.records import COMPLAINT_CATEGORIES, DOMAIN, MAX_BYTES, NO_TIME_MS, SERVICES, empty
from telcoanalytics.topology.model import Topology
from tests.ingest.test_ingest_gather import _rows

T0 = 1_700_000_000_000
LO, HI = DEFAULT_TIME_RANGE_MS


def _run_ids(prefixes, sizes, gap=10_000_000):
    return np.concatenate([p * gap + np.arange(1, n + 1, dtype=np.int64) * 3 for p, n in zip(prefixes, sizes)])


@settings(max_examples=60, deadline=None)
@given(
    prefixes=st.lists(st.integers(1, 900), min_size=2, max_size=6, unique=True),
    sizes=st.lists(st.integers(1, 3000), min_size=6, max_size=6),
    probes=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30),
    seed=st.integers(0, 2**16),
)
def test_paged_lookup_matches_a_dict(prefixes, sizes, probes, seed):
    ids = _run_ids(prefixes, sizes)
    rng = np.random.default_rng(seed)
    index = rng.permutation(len(ids)).astype(np.int64)
    lk = _ElementLookup(ids, index)
    assert lk.paged is not None and lk.lut is None and lk.map_keys is None
    near = np.concatenate([ids - 1, ids + 1, ids[[0, -1]] + [-(10**7), 10**7]])
    q = np.concatenate([ids, near, np.array(probes, dtype=np.int64)])
    ref = {int(k): int(v) for k, v in zip(ids, index)}
    want = [ref.get(int(k), -1) for k in q]
    assert lk(q).tolist() == want
    # the compiled lookup (through the QoS checks on valid rows) gives the same index
    a = empty("qos", len(q))
    a["ts_ms"], a["element_id"], a["latency_ms"], a["mos"] = T0, q, 10.0, 4.0
    code, field, out = np.zeros(len(q), np.int8), np.full(len(q), -1, np.int8), np.empty(len(q), np.int64)
    V.qos_check_route(a, *I._route_limits("qos", LO, HI), code, field, lk.table, lk.route(42, 7), out)
    assert out.tolist() == want
    assert code.tolist() == [42 if w < 0 else 0 for w in want]
    assert field.tolist() == [7 if w < 0 else -1 for w in want]


def test_lookup_kinds_by_id_layout():
    """Dense ids: the flat table; runs far apart: pages; ids spread over the int64 range: the hash map."""
    assert _ElementLookup(np.arange(10, dtype=np.int64), np.arange(10)).lut is not None
    runs = _ElementLookup(_run_ids([1, 2], [100, 100]), np.arange(200))
    assert runs.paged is not None and runs.route(1, 2).tolist()[:4] == [10_000_003, 20_000_300, 1, 2]
    spread = np.array([1, 10**15, 2 * 10**15, -(10**17)], dtype=np.int64)
    lk = _ElementLookup(spread, np.arange(4))
    assert lk.table is None and lk.route(1, 2) is None
    assert lk(np.array([10**15, 5])).tolist() == [1, -1]


def _complaints(n, ids, rng):
    a = empty("complaint", n)
    a["complaint_id"] = np.arange(n)
    a["ts_ms"] = T0 + rng.integers(0, 3_600_000, n)
    a["element_id"] = ids[rng.integers(0, len(ids), n)]
    a["lat"], a["lon"] = rng.uniform(-60, 60, n), rng.uniform(-120, 120, n)
    a["category"] = rng.integers(0, len(COMPLAINT_CATEGORIES), n)
    pick = rng.random(n)
    a["lat"][pick < 0.05] = np.inf
    a["lon"][(pick >= 0.05) & (pick < 0.1)] = -np.inf
    a["ts_ms"][(pick >= 0.1) & (pick < 0.15)] = 5
    a["category"][(pick >= 0.15) & (pick < 0.2)] = rng.choice([-1, 99, len(COMPLAINT_CATEGORIES)])
    a["lat"][(pick >= 0.2) & (pick < 0.25)] = 91.0
    a["lon"][(pick >= 0.25) & (pick < 0.3)] = np.nan  # only one of them given
    a["lat"][(pick >= 0.3) & (pick < 0.35)] = np.nan
    a["lon"][(pick >= 0.3) & (pick < 0.35)] = np.nan  # no location: fine
    a["lon"][(pick >= 0.35) & (pick < 0.4)] = -181.0
    a["element_id"][(pick >= 0.4) & (pick < 0.45)] = -1  # no cell
    a["element_id"][(pick >= 0.45) & (pick < 0.5)] = 12345
    several = rng.random(n) < 0.2  # several problems: the first in check order counts
    a["ts_ms"][several] = 5
    return a


def _complaint_reference(a, known):
    """The complaint checks in NumPy, marked in check order (first failure wins)."""
    lat, lon = a["lat"], a["lon"]
    checks = [
        ("non_finite", "lat", np.isinf(lat)),
        ("non_finite", "lon", np.isinf(lon)),
        ("time_out_of_range", "ts_ms", (a["ts_ms"] < LO) | (a["ts_ms"] >= HI)),
        ("out_of_domain", "category", (a["category"] < 0) | (a["category"] >= len(COMPLAINT_CATEGORIES))),
        ("out_of_domain", "lat", (lat < -90) | (lat > 90) | (np.isnan(lat) != np.isnan(lon))),
        ("out_of_domain", "lon", (lon < -180) | (lon > 180)),
        ("unknown_element", "element_id", ~np.isin(a["element_id"], known)),
    ]
    reason = np.full(len(a), None, dtype=object)
    field = np.full(len(a), None, dtype=object)
    for r, f, m in checks:
        m = m & (reason == None)  # noqa: E711
        reason[m], field[m] = r, f
    return reason, field


def _cdr_reference(a, known):
    """The CDR checks row by row in plain Python (the order of ``telcoanalytics.ingest.ingestor``)."""
    out = []
    max_call = DOMAIN["cdr"]["duration_ms"][1]
    for r in a.tolist():
        (_, s, ans, e, _, _, _, el, svc, cause, bu, bd) = r
        if not LO <= s < HI:
            out.append(("time_out_of_range", "start_ms"))
        elif not LO <= e < HI:
            out.append(("time_out_of_range", "end_ms"))
        elif e < s:
            out.append(("end_before_start", "end_ms"))
        elif ans >= 0 and not s <= ans <= e:
            out.append(("answer_outside_call", "answer_ms"))
        elif not 1 <= cause <= 127:
            out.append(("bad_cause", "cause"))
        elif not 0 <= svc < len(SERVICES):
            out.append(("out_of_domain", "service"))
        elif e - s > max_call:
            out.append(("out_of_domain", "end_ms"))
        elif ans < 0 and ans != NO_TIME_MS:
            out.append(("out_of_domain", "answer_ms"))
        elif bu > MAX_BYTES:
            out.append(("out_of_domain", "bytes_up"))
        elif bd > MAX_BYTES:
            out.append(("out_of_domain", "bytes_down"))
        elif bu < 0:
            out.append(("negative_counter", "bytes_up"))
        elif bd < 0:
            out.append(("negative_counter", "bytes_down"))
        elif el not in known:
            out.append(("unknown_element", "element_id"))
        else:
            out.append((None, None))
    return out


def _cdrs(n, ids, rng):
    a = empty("cdr", n)
    a["record_id"] = np.arange(n)
    a["start_ms"] = T0 + rng.integers(0, 3_600_000, n)
    a["end_ms"] = a["start_ms"] + rng.integers(0, 600_000, n)
    a["answer_ms"] = np.where(rng.random(n) < 0.5, a["start_ms"] + 10, NO_TIME_MS)
    a["element_id"] = ids[rng.integers(0, len(ids), n)]
    a["service"] = rng.integers(0, len(SERVICES), n)
    a["cause"] = 16
    a["bytes_up"], a["bytes_down"] = rng.integers(0, 1000, n), rng.integers(0, 1000, n)
    pick = rng.random(n)
    a["start_ms"][pick < 0.04] = 5
    a["end_ms"][(pick >= 0.04) & (pick < 0.08)] = a["start_ms"][(pick >= 0.04) & (pick < 0.08)] - 1
    a["answer_ms"][(pick >= 0.08) & (pick < 0.12)] = a["end_ms"][(pick >= 0.08) & (pick < 0.12)] + 1
    a["cause"][(pick >= 0.12) & (pick < 0.16)] = rng.choice([0, 200])
    a["service"][(pick >= 0.16) & (pick < 0.2)] = 9
    a["answer_ms"][(pick >= 0.2) & (pick < 0.24)] = -7
    a["bytes_up"][(pick >= 0.24) & (pick < 0.28)] = rng.choice([-1, MAX_BYTES + 1])
    a["bytes_down"][(pick >= 0.28) & (pick < 0.32)] = rng.choice([-1, MAX_BYTES + 1])
    long = (pick >= 0.32) & (pick < 0.34)
    a["end_ms"][long] = a["start_ms"][long] + DOMAIN["cdr"]["duration_ms"][1] + 1
    a["answer_ms"][long] = NO_TIME_MS
    a["element_id"][(pick >= 0.34) & (pick < 0.4)] = 777
    a["end_ms"][(pick >= 0.4) & (pick < 0.42)] = 2**62
    return a


def _topology(ids):
    return Topology.from_columns(ids, {"region": ids // 10_000_000, "site": ids // 30})


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**16), paged=st.booleans())
def test_complaint_and_cdr_checks_fused_with_the_lookup(n, seed, paged):
    rng = np.random.default_rng(seed)
    ids = _run_ids([1, 5, 9], [40, 70, 25]) if paged else 1000 + np.arange(135, dtype=np.int64)
    topo = _topology(ids)
    pos = {int(x): k for k, x in enumerate(topo.ids[topo.element_level])}
    a = _complaints(n, ids, rng)
    ing = Ingestor("complaint", topology=topo)
    res = ing.ingest(a)
    reason, field = _complaint_reference(a, ids)
    q = {(r["row"], r["reason"], r["field"]) for r in ing.quarantine.records()}
    assert q == {(i, reason[i], field[i]) for i in range(n) if reason[i] is not None}
    ok = reason == None  # noqa: E711
    assert res.element_index.tolist() == [pos[int(x)] for x in a["element_id"][ok]]
    c = _cdrs(n, ids, rng)
    ing = Ingestor("cdr", topology=topo)
    res = ing.ingest(c)
    want = _cdr_reference(c, set(ids.tolist()))
    q = {(r["row"], r["reason"], r["field"]) for r in ing.quarantine.records()}
    assert q == {(i, r, f) for i, (r, f) in enumerate(want) if r is not None}
    ok = np.array([r is None for r, _ in want])
    assert res.element_index.tolist() == [pos[int(x)] for x in c["element_id"][ok]]


@settings(max_examples=20, deadline=None)
@given(source=st.sampled_from(["cdr", "equip", "flow", "qos", "complaint"]), seed=st.integers(0, 2**16))
def test_paged_ids_decide_as_dense_ids(source, seed):
    """The same rows with their element ids renumbered to a dense range: the same decisions and
    element indices (paged table against the flat one)."""
    rng = np.random.default_rng(seed)
    sparse = _run_ids([2, 4, 8], [50, 30, 60])
    dense = 100 + np.arange(len(sparse), dtype=np.int64)
    n = 300
    if source == "cdr":
        a = _cdrs(n, sparse, rng)
    elif source == "complaint":
        a = _complaints(n, sparse, rng)
    else:
        a = _rows(source, n, seed)
        ef = "src_element_id" if source == "flow" else "element_id"
        a[ef] = sparse[rng.integers(0, len(sparse), n)]
        a[ef][rng.random(n) < 0.1] = 31
        a["ts_ms"][rng.random(n) < 0.05] = 5
    ef = "src_element_id" if source == "flow" else "element_id"
    b = a.copy()
    known = np.isin(a[ef], sparse)
    b[ef][known] = dense[np.searchsorted(sparse, a[ef][known])]
    b[ef][~known & (a[ef] >= 0)] = 10**6 + 7  # unknown in both
    if source == "flow":
        b["dst_element_id"] = a["dst_element_id"]
    got = Ingestor(source, topology=_topology(sparse)).ingest(a)
    dense_topo = Topology.from_columns(dense, {"region": np.ones(len(dense), np.int64), "site": dense // 30})
    want = Ingestor(source, topology=dense_topo).ingest(b)
    assert got.by_reason == want.by_reason
    assert got.element_index.tolist() == want.element_index.tolist()
    assert got.accepted_rows().tolist() == want.accepted_rows().tolist()


def test_complaint_rows_failed_before_keep_their_reason():
    """Rows already failed (a parse failure) keep their code and field; their index is still looked up."""
    ids = np.array([7, 9], dtype=np.int64)
    lk = _ElementLookup(ids, np.arange(2))
    a = empty("complaint", 3)
    a["ts_ms"], a["element_id"], a["lat"], a["lon"] = 5, [7, 9, 8], np.nan, np.nan  # time out of range
    code = np.array([2, 0, 0], np.int8)
    field = np.array([3, -1, -1], np.int8)
    out = np.empty(3, np.int64)
    n = V.complaint_check_route(a, *I._route_limits("complaint", LO, HI), code, field, lk.table, lk.route(11, 6), out)
    assert n == 2 and code.tolist() == [2, 4, 4] and field.tolist() == [3, V.K_TS, V.K_TS]
    assert out.tolist() == [0, 1, -1]
