"""Complaints: place them on the network, count them per node, category and time bin, and keep a
complaint cube.

A complaint (``records.COMPLAINT_DTYPE``) names a serving cell, a customer location, or both.
:func:`locate_complaints` gives location-only complaints the nearest radio cell before ingest
(ingest quarantines an unknown ``element_id`` as ``unknown_element``). :func:`complaint_counts`
turns accepted complaints into a dense ``(node, category, bin)`` count array: the series that the
correlation analysis (``analysis.correlate``) relates to KPIs with lags. :func:`complaint_table`
is the per node and category summary the replay prints.
"""

from __future__ import annotations

import numpy as np

from telcoanalytics.records import COMPLAINT_CATEGORIES, COMPLAINT_DTYPE, EQUIPMENT_CLASS_CODE

__all__ = [
    "locate_complaints",
    "complaint_counts",
    "complaint_table",
    "complaint_cube_spec",
    "category_dimension",
]

_EARTH_KM = 6371.0
_RADIO = (EQUIPMENT_CLASS_CODE["macro_cell"], EQUIPMENT_CLASS_CODE["small_cell"])


def _check_rows(rows, what="rows"):
    if not isinstance(rows, np.ndarray) or rows.dtype.names is None:
        raise ValueError(f"{what} must be a structured array of records.COMPLAINT_DTYPE, got {type(rows).__name__}")
    missing = [f for f in COMPLAINT_DTYPE.names if f not in rows.dtype.names]
    if missing:
        raise ValueError(f"{what} lack the complaint fields {missing}; build them with records.empty('complaint', n)")
    return rows if rows.dtype == COMPLAINT_DTYPE else rows.astype(COMPLAINT_DTYPE)


def locate_complaints(rows: np.ndarray, topology_table: np.ndarray, max_km: float = 20.0):
    """Fill ``element_id`` of location-only complaints with the nearest radio cell.

    Parameters
    ----------
    rows : COMPLAINT_DTYPE array
    topology_table : TOPOLOGY_DTYPE array
        Elements with ``lat``/``lon``; only macro and small cells are candidates.
    max_km : float
        Complaints farther than this from every cell stay without an element.

    Returns
    -------
    (COMPLAINT_DTYPE array, int, int)
        A copy with the cells filled, how many were placed, how many could not be (no location,
        or too far): those keep ``element_id = -1`` and ingest quarantines them.

    Raises
    ------
    ValueError
        For input that is not complaint records, or a topology without radio cells.

    Notes
    -----
    Nearest by great-circle distance (haversine), in blocks of 4,096 complaints.

    Examples
    --------
    >>> from telcoanalytics.records import TOPOLOGY_DTYPE, empty
    >>> topo = np.zeros(2, TOPOLOGY_DTYPE)
    >>> topo["element_id"], topo["lat"], topo["lon"] = [7, 8], [48.0, 49.0], [11.0, 11.0]
    >>> c = empty("complaint", 1)
    >>> c["element_id"], c["lat"], c["lon"] = -1, 48.9, 11.0
    >>> out, placed, left = locate_complaints(c, topo)
    >>> int(out["element_id"][0]), placed, left
    (8, 1, 0)
    """
    rows = _check_rows(rows).copy()
    radio = np.isin(topology_table["equipment_class"], _RADIO)
    if not radio.any():
        raise ValueError("topology_table has no macro or small cells to place complaints on")
    cell_id = topology_table["element_id"][radio]
    clat, clon = np.radians(topology_table["lat"][radio]), np.radians(topology_table["lon"][radio])
    need = np.flatnonzero(rows["element_id"] < 0)
    has_loc = np.isfinite(rows["lat"][need]) & np.isfinite(rows["lon"][need])
    todo = need[has_loc]
    placed = 0
    for s in range(0, len(todo), 4096):
        blk = todo[s : s + 4096]
        lat, lon = np.radians(rows["lat"][blk])[:, None], np.radians(rows["lon"][blk])[:, None]
        a = np.sin((clat - lat) / 2) ** 2 + np.cos(lat) * np.cos(clat) * np.sin((clon - lon) / 2) ** 2
        j = np.argmin(a, axis=1)
        d_km = 2 * _EARTH_KM * np.arcsin(np.sqrt(np.minimum(a[np.arange(len(blk)), j], 1.0)))
        ok = d_km <= max_km
        rows["element_id"][blk[ok]] = cell_id[j[ok]]
        placed += int(ok.sum())
    return rows, placed, len(need) - placed


def complaint_counts(
    rows: np.ndarray,
    topology,
    *,
    level: str = "region",
    bin_ms: int = 3_600_000,
    start_ms: int | None = None,
    end_ms: int | None = None,
):
    """Complaints per topology node, category and time bin.

    Parameters
    ----------
    rows : COMPLAINT_DTYPE array
        Accepted complaints (their ``element_id`` in ``topology``).
    topology : Topology
    level : str
        Topology level to count at (``region``, ``site``, ``element`` ...).
    bin_ms : int
        Width of the time bins.
    start_ms, end_ms : int, optional
        Span ``[start_ms, end_ms)`` (default: the complaints' own, aligned to ``bin_ms``).

    Returns
    -------
    (node_ids int64 (n_nodes,), bin_start_ms int64 (n_bins,), counts int64 (n_nodes, n_categories, n_bins))
        Categories in ``records.COMPLAINT_CATEGORIES`` order; complaints outside the span or of
        unknown elements are not counted.

    Raises
    ------
    ValueError
        For a bad level, ``bin_ms`` or span.
    """
    rows = _check_rows(rows)
    if int(bin_ms) <= 0:
        raise ValueError(f"bin_ms must be a positive number of milliseconds, got {bin_ms!r}")
    bin_ms = int(bin_ms)
    t = rows["ts_ms"]
    if start_ms is None:
        start_ms = int(t.min()) // bin_ms * bin_ms if len(t) else 0
    if end_ms is None:
        end_ms = (int(t.max()) // bin_ms + 1) * bin_ms if len(t) else start_ms + bin_ms
    if end_ms <= start_ms:
        raise ValueError(f"end_ms must be after start_ms, got {start_ms}, {end_ms}")
    n_bins = -(-(int(end_ms) - int(start_ms)) // bin_ms)
    node_of = topology.element_to(level)
    n_nodes = topology.n_nodes(level)
    idx = topology.index_of(rows["element_id"])
    b = (t - int(start_ms)) // bin_ms
    cat = rows["category"].astype(np.int64)
    ok = (idx >= 0) & (b >= 0) & (b < n_bins) & (cat >= 0) & (cat < len(COMPLAINT_CATEGORIES))
    node = node_of[idx[ok]]
    keep = node >= 0
    key = (node[keep] * len(COMPLAINT_CATEGORIES) + cat[ok][keep]) * n_bins + b[ok][keep]
    counts = np.bincount(key, minlength=n_nodes * len(COMPLAINT_CATEGORIES) * n_bins)
    bins = int(start_ms) + bin_ms * np.arange(n_bins, dtype=np.int64)
    return topology.ids[level].copy(), bins, counts.reshape(n_nodes, len(COMPLAINT_CATEGORIES), n_bins)


def complaint_table(rows: np.ndarray, topology, level: str = "region") -> np.ndarray:
    """Complaints per node of ``level`` and category, most complained-about first.

    Returns
    -------
    structured array ``(node_id i8, category U16, count i8)`` with the non-zero pairs, by count
    descending (ties by node id, then category).
    """
    ids, _, counts = complaint_counts(rows, topology, level=level, bin_ms=1 << 50, start_ms=0, end_ms=1 << 50)
    c = counts[:, :, 0]
    ni, ci = np.nonzero(c)
    out = np.zeros(len(ni), dtype=[(f"{level}_id", "i8"), ("category", "U16"), ("count", "i8")])
    out[f"{level}_id"] = ids[ni]
    out["category"] = np.array(COMPLAINT_CATEGORIES)[ci]
    out["count"] = c[ni, ci]
    return out[np.lexsort((ci, ids[ni], -c[ni, ci]))]


def category_dimension():
    """The ``category`` cube dimension of complaints (labels the category names)."""
    from telcoanalytics.cube import Dimension

    n = len(COMPLAINT_CATEGORIES)

    def compute(ctx):
        c = ctx.records["category"].astype(np.int64)
        return np.where((c >= 0) & (c < n), c, -1)

    return Dimension("category", n, compute, labels=np.array(COMPLAINT_CATEGORIES))


def complaint_cube_spec(time_dim: str = "hour", **overrides):
    """A complaint cube (``source="complaint"``): counts and distinct subscribers by element x
    category x ``time_dim`` (region, site and the element attributes derive from the element)."""
    from telcoanalytics.cube import CubeSpec

    args = dict(
        dimensions=["element", category_dimension(), time_dim],
        measures=["count", "distinct:imsi_hash"],
        cuboids=[("element", "category", time_dim)],
        source="complaint",
    )
    args.update(overrides)
    return CubeSpec(**args)
