"""``kernels.validate.flow_check_route`` (one branch-free test per row, the ordered walk only for
failing rows) against the flow checks written out in plain Python in the documented order, with
dense (flat table) and run-like (paged table) element ids, rows failed before, and every limit
crossed; compiled and with ``NUMBA_DISABLE_JIT=1``."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import validate as V
from telcoanalytics.ingest import ingestor as I
from telcoanalytics.ingest.ingestor import DEFAULT_TIME_RANGE_MS, _ElementLookup
from telcoanalytics.records import DOMAIN, empty

LO, HI = DEFAULT_TIME_RANGE_MS
C_TIME, C_DOM, C_NEG, C_UNKNOWN = I._C["time_out_of_range"], I._C["out_of_domain"], I._C["negative_counter"], 11


def _reference(a, known: dict, pre_code, pre_field, unknown_code):
    """Code, field and element index of every row, check by check as the ingestor documents them."""
    mx = [DOMAIN["flow"][f][1] for f in ("bytes", "packets", "flows")]
    code, field, index = [], [], []
    for i in range(len(a)):
        idx = known.get(int(a["src_element_id"][i]), -1)
        index.append(idx)
        if pre_code[i] != 0:
            code.append(int(pre_code[i]))
            field.append(int(pre_field[i]))
            continue
        t = int(a["ts_ms"][i])
        vals = [int(a[f][i]) for f in ("bytes", "packets", "flows")]
        c, f = 0, -1
        if t < LO or t >= HI:
            c, f = C_TIME, 0
        elif any(v > m for v, m in zip(vals, mx)):
            c, f = C_DOM, 1 + next(j for j, (v, m) in enumerate(zip(vals, mx)) if v > m)
        elif any(v < 0 for v in vals):
            c, f = C_NEG, 1 + next(j for j, v in enumerate(vals) if v < 0)
        elif idx < 0:
            c, f = unknown_code, 9
        if c == 0:
            c, f = 0, int(pre_field[i])
        code.append(c)
        field.append(f)
    return code, field, index


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    paged=st.booleans(),
    p_bad=st.sampled_from([0.0, 0.05, 0.5]),
    with_route=st.booleans(),
)
def test_flow_checks_decide_as_the_written_out_rules(n, seed, paged, p_bad, with_route):
    rng = np.random.default_rng(seed)
    if paged:  # ids in runs far apart (a region prefix before a sequence number)
        ids = np.concatenate([p * 10_000_000 + np.arange(1, 200, dtype=np.int64) * 3 for p in (3, 40, 700)])
    else:
        ids = 1_000 + np.arange(500, dtype=np.int64) * 2
    lk = _ElementLookup(ids, np.arange(len(ids), dtype=np.int64))
    assert (lk.paged is not None) == paged
    a = empty("flow", n)
    a["ts_ms"] = 1_700_000_000_000 + rng.integers(0, 10**6, n)
    a["src_element_id"] = ids[rng.integers(0, len(ids), n)]
    a["dst_element_id"] = rng.integers(0, 10**9, n)
    for f in ("bytes", "packets", "flows"):
        a[f] = rng.integers(0, DOMAIN["flow"][f][1] + 1, n)
    mx = {f: DOMAIN["flow"][f][1] for f in ("bytes", "packets", "flows")}
    bad = np.flatnonzero(rng.random(n) < p_bad)
    for i in bad:  # one or more problems per bad row, at and just past every limit
        for _ in range(rng.integers(1, 3)):
            kind = rng.integers(0, 7)
            if kind == 0:
                a["ts_ms"][i] = rng.choice([LO - 1, HI, HI + 5, -(2**63)])
            elif kind <= 3:
                f = ("bytes", "packets", "flows")[kind - 1]
                a[f][i] = rng.choice([mx[f] + 1, 2**63 - 1, mx[f]])
            elif kind <= 6:
                f = ("bytes", "packets", "flows")[kind - 4]
                a[f][i] = rng.choice([-1, -(2**63), 0])
        if rng.random() < 0.3:
            a["src_element_id"][i] = rng.choice([ids[0] - 1, ids[-1] + 1, ids[1] + 1, -(2**63), 2**63 - 1])
    pre_code = np.where(rng.random(n) < 0.1, rng.integers(1, 4, n), 0).astype(np.int8)
    pre_field = np.where(pre_code != 0, 5, -1).astype(np.int8)
    if with_route:
        route, unknown = lk.route(C_UNKNOWN, 9), C_UNKNOWN
    else:  # the lookup that marks nothing: only the row checks decide
        route, unknown = lk.route(0, 9), 0
    code, field, out = pre_code.copy(), pre_field.copy(), np.empty(n, np.int64)
    n_bad = V.flow_check_route(a, *I._route_limits("flow", LO, HI), code, field, lk.table, route, out)
    known = {int(k): j for j, k in enumerate(ids)}
    want_code, want_field, want_index = _reference(a, known, pre_code, pre_field, unknown)
    assert out.tolist() == want_index
    assert code.tolist() == want_code
    assert field.tolist() == want_field
    assert n_bad == int(np.sum((np.array(want_code) != 0) & (pre_code == 0)))
