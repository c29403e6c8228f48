"""Slow, obvious references for the cube tests: synthetic data and a DuckDB oracle.

DuckDB is the oracle: every measure of every cuboid is recomputed with ``GROUP BY GROUPING SETS``
over a plain table holding the same rows with their dimension codes.
"""

from __future__ import annotations

import numpy as np

from telcoanalytics.records import CDR_DTYPE, TOPOLOGY_DTYPE
from telcoanalytics.topology.model import Topology

DAY_MS = 86_400_000
T0_MS = 1_790_000_000_000 - (1_790_000_000_000 % DAY_MS)  # a UTC midnight in 2026


def make_topology(rng, n_elements=60, n_sites=12, n_regions=3) -> Topology:
    """A region > site > element topology with random equipment class / vendor / technology."""
    t = np.zeros(n_elements, dtype=TOPOLOGY_DTYPE)
    t["element_id"] = rng.permutation(np.arange(1000, 1000 + 7 * n_elements, 7))[:n_elements]
    site_of = rng.integers(0, n_sites, n_elements)
    site_of[:n_sites] = np.arange(n_sites)
    t["site_id"] = 500 + site_of
    t["region_id"] = 90 + (site_of % n_regions)
    t["equipment_class"] = rng.integers(0, 5, n_elements)
    t["vendor"] = rng.integers(0, 3, n_elements)
    t["technology"] = rng.integers(0, 5, n_elements)
    return Topology.from_table(t)


def make_cdr(rng, topo: Topology, n: int, days: float = 2.0, unknown_frac: float = 0.0) -> np.ndarray:
    """Random CDRs over ``days`` from T0_MS; ``unknown_frac`` of rows get an unknown element."""
    r = np.zeros(n, dtype=CDR_DTYPE)
    r["record_id"] = np.arange(n)
    r["start_ms"] = T0_MS + rng.integers(0, int(days * DAY_MS), n)
    answered = rng.random(n) < 0.8
    r["answer_ms"] = np.where(answered, r["start_ms"] + rng.integers(500, 8000, n), -1)
    dur = np.round(rng.lognormal(10.0, 1.2, n)).astype(np.int64)
    r["end_ms"] = r["start_ms"] + dur
    r["calling_id"] = rng.integers(0, 10**9, n)
    r["called_id"] = rng.integers(0, 10**9, n)
    r["imsi_hash"] = rng.integers(0, max(n // 3, 5), n) * 7919 + 13
    eidx = rng.integers(0, topo.n_elements, n)
    r["element_id"] = topo.ids[topo.element_level][eidx]
    if unknown_frac:
        bad = rng.random(n) < unknown_frac
        r["element_id"][bad] = -12345
    r["service"] = rng.integers(0, 4, n)
    causes = np.array([16, 16, 16, 31, 17, 18, 34, 42, 27, 38, 41, 102, 99])
    r["cause"] = causes[rng.integers(0, len(causes), n)]
    r["bytes_up"] = rng.integers(0, 10**6, n)
    r["bytes_down"] = rng.integers(0, 10**7, n)
    return r


def _norm(x):
    return x if isinstance(x, str) else int(x)


def duckdb_grouping_sets(
    columns: dict[str, np.ndarray],
    sets: list[tuple[str, ...]],
    value_fields: list[str],
    quantiles: list[tuple[str, float]] = (),
    distinct: list[str] = (),
) -> dict[tuple, dict]:
    """Every grouping set's groups and measures, computed by DuckDB.

    Returns ``{grouping_set: {group_tuple: {measure_name: value}}}`` with measure names as in
    the cube (``count``, ``sum_x``, ``min_x``, ``max_x``, ``mean_x``, ``var_x``, ``pQ_x``,
    ``distinct_x`` (exact count distinct)).
    """
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    con.execute("SET threads=1")
    tbl = pa.table({k: np.asarray(v) for k, v in columns.items()})
    con.register("t", tbl)
    dims = sorted({d for s in sets for d in s})
    aggs = ["count(*) AS count"]
    for f in value_fields:
        aggs += [
            f"sum({f}) AS sum_{f}",
            f"min({f}) AS min_{f}",
            f"max({f}) AS max_{f}",
            f"avg({f}) AS mean_{f}",
            f"var_samp({f}) AS var_{f}",
        ]
    for f, q in quantiles:
        aggs.append(f"quantile_disc({f}, {q}) AS q_{f}_{int(round(q * 1000))}")
    for f in distinct:
        aggs.append(f"count(DISTINCT {f}) AS distinct_{f}")
    gsets = ", ".join("(" + ", ".join(s) + ")" for s in sets)
    gid = ", ".join(f"grouping({d}) AS g_{d}" for d in dims) if dims else "0 AS g_none"
    sql = (
        f"SELECT {', '.join(dims) + ', ' if dims else ''}{gid}, {', '.join(aggs)} "
        f"FROM t GROUP BY GROUPING SETS ({gsets})"
    )
    df = con.execute(sql).fetch_df()
    out: dict[tuple, dict] = {tuple(s): {} for s in sets}
    for row in df.to_dict("records"):
        present = tuple(d for d in dims if row[f"g_{d}"] == 0)
        key_set = next(s for s in sets if set(s) == set(present))
        gkey = tuple(_norm(row[d]) for d in key_set)
        out[tuple(key_set)][gkey] = row
    con.close()
    return out
