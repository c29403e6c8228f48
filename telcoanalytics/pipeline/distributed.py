"""Run mergeable analyses partitioned by a topology level, in-process or on a Dask cluster.

The design rests on one property of every state in telcoanalytics: partial states of disjoint
partitions merge into the state of one pass over all data. So a batch is split by a topology
level (region, say) with the counting-sort partition kernel, each partition is processed on its
own (a Dask worker each, or one after another in this process), and the partial states are folded
with their ``merge``. The same functions run with ``client=None`` (no cluster, no Dask import) and
with a ``dask.distributed.Client``; the tests check both give identical results.

Dask is an optional extra: ``pip install telcoanalytics[distributed]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from telcoanalytics.topology.model import Topology


def split_by_level(topology: Topology, element_index, columns: dict, level: str = "region") -> list[dict]:
    """Split the rows of a batch into one dict of columns per node of ``level``.

    Parameters
    ----------
    topology : Topology
    element_index : int array (n,)
        Dense element index of each row (``topology.index_of``).
    columns : dict name -> array (n,)
        Columns to split (each is gathered in partition order).
    level : str
        Partition level.

    Returns
    -------
    list of dict
        One entry per non-empty node: its rows in stable input order, plus ``"_node"`` (the
        node's dense index).

    Raises
    ------
    ValueError
        If any row is unrouted (unknown or retired element): validate with an ``Ingestor`` first,
        which quarantines unknown elements, so nothing is silently left out here.
    """
    idx = np.ascontiguousarray(element_index, dtype=np.int64)
    for name, col in columns.items():
        if len(col) != len(idx):
            raise ValueError(f"column {name!r} has {len(col)} rows, element_index has {len(idx)}")
    order, offsets = topology.partition(idx, level)
    n_unrouted = int(offsets[-1] - offsets[-2])
    if n_unrouted:
        first = int(order[offsets[-2]])
        raise ValueError(
            f"{n_unrouted} rows belong to unknown or retired elements (first at row {first}, "
            f"element index {idx[first]}); validate the batch with an Ingestor first"
        )
    gathered = {name: np.asarray(col)[order] for name, col in columns.items()}
    parts = []
    for k in range(topology.n_nodes(level)):
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        if hi > lo:
            part = {name: col[lo:hi] for name, col in gathered.items()}
            part["_node"] = k
            parts.append(part)
    return parts


def map_merge(parts: list, fn: Callable, merge: Callable, client=None):
    """Apply ``fn(part)`` to every partition and fold the results with ``merge(a, b) -> a``.

    Parameters
    ----------
    parts : list
        Partitions (e.g. from :func:`split_by_level`).
    fn : callable
        A module-level function (picklable, for Dask) returning a mergeable partial state.
    merge : callable
        Associative merge of two partial states; may update and return its first argument.
    client : dask.distributed.Client, optional
        Run the partitions on the cluster (results gathered here and merged in partition order);
        default: one after another in this process.

    Returns
    -------
    The merged state, or None when there are no partitions.
    """
    if client is None:
        results = [fn(p) for p in parts]
    else:
        futures = client.map(fn, parts, pure=False)
        results = client.gather(futures)
    out = None
    for r in results:
        out = r if out is None else merge(out, r)
    return out


# ---- ready-made partitioned analyses --------------------------------------------------------------
def _windows_partial(part: dict):
    from telcoanalytics.windows.sliding import SlidingWindows

    w = SlidingWindows(part["_n_slots"], part["_resolutions"], part["_lateness"], part["_half_lives"])
    w.update(part["ts_ms"], part["slot"], part["value"])
    return w


def _merge_windows(a, b):
    return a.merge(b)


def windows_by_partition(
    topology: Topology,
    element_index,
    ts_ms,
    slot,
    value,
    n_slots: int,
    resolutions,
    allowed_lateness_ms: int = 0,
    half_lives_s=(),
    level: str = "region",
    client=None,
):
    """Sliding windows built per partition of ``level`` and merged: equal to one pass over all rows.

    Parameters
    ----------
    topology, element_index, level, client
        As in :func:`split_by_level` and :func:`map_merge`.
    ts_ms, slot, value : arrays (n,)
        The events (slots are global, e.g. ``element_index * n_metrics + metric``).
    n_slots, resolutions, allowed_lateness_ms, half_lives_s
        As in :class:`telcoanalytics.windows.sliding.SlidingWindows`.

    Returns
    -------
    SlidingWindows

    Notes
    -----
    Each partition applies the allowed lateness against its own newest event; when the input is
    in order within the lateness (every event newer than ``max seen - allowed_lateness_ms``
    globally), the merged state equals one pass exactly (counts, min, max) and to rounding (sums).
    """
    parts = split_by_level(topology, element_index, {"ts_ms": ts_ms, "slot": slot, "value": value}, level)
    for p in parts:
        p.update(
            _n_slots=int(n_slots),
            _resolutions=tuple(map(tuple, resolutions)),
            _lateness=int(allowed_lateness_ms),
            _half_lives=tuple(half_lives_s),
        )
    out = map_merge(parts, _windows_partial, _merge_windows, client)
    if out is None:
        from telcoanalytics.windows.sliding import SlidingWindows

        out = SlidingWindows(n_slots, resolutions, allowed_lateness_ms, half_lives_s)
    return out
