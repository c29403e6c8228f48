"""Routing along a :class:`~telcoanalytics.topology.model.Topology`: the element-to-partition map of
a level, the counting-sort partition of a batch, scatter and roll-up of per-element values.
"""

from __future__ import annotations

import numpy as np

from kernels.partition import (
    partition_by_map_into,
    partition_scatter,
    segment_count,
    segment_max,
    segment_min,
    segment_sum,
)

ROLLUP_HOWS = ("sum", "count", "min", "max", "mean")


def scratch_dtype(n_keys: int) -> type:
    """Narrowest scratch dtype for :meth:`Topology.partition` over ``n_keys`` partitions.

    The scratch holds each row's key, ``0..n_keys`` (``n_keys`` = unrouted); a narrower buffer
    means less memory traffic: uint8 up to 255 partitions, int16 up to 32767, else int32.
    """
    return np.uint8 if n_keys <= 255 else np.int16 if n_keys <= 32767 else np.int32


class _Routing:
    """Mixin of :class:`~telcoanalytics.topology.model.Topology`: partition, scatter and roll-up by any level."""

    def route_map(self, level: str) -> np.ndarray:
        """Routing table: ancestor of each element at ``level``, ``-1`` for retired elements.

        Parameters
        ----------
        level : str
            Routing level.

        Returns
        -------
        int64 array, shape (n_elements,)
            What :meth:`partition` routes by (cached; do not modify it).

        Raises
        ------
        ValueError
            If ``level`` is unknown.
        """
        self._check_level(level)
        if level not in self._route:
            self._route[level] = np.where(self.active, self.element_to(level), -1).astype(np.int64)
        return self._route[level]

    # ---- routing and roll-up -----------------------------------------------------------------
    def _check_element_index(self, element_index) -> np.ndarray:
        idx = np.asarray(element_index)
        if idx.ndim != 1:
            raise ValueError(f"element_index must be one-dimensional, got shape {idx.shape}")
        if idx.dtype.kind not in "iu":
            raise ValueError(f"element_index must hold dense integer indices (from index_of), got dtype {idx.dtype}")
        return np.ascontiguousarray(idx, dtype=np.int64)

    def _raise_bad_index(self, idx: np.ndarray):
        bad = np.flatnonzero((idx < -1) | (idx >= self.n_elements))
        raise ValueError(
            f"element_index has {len(bad)} values outside -1..{self.n_elements - 1}, first "
            f"{idx[bad[0]]} at row {bad[0]}; map external ids with topology.index_of(ids) "
            "of this topology version (-1 marks unknown elements)"
        )

    def partition(self, element_index, level: str, *, out=None, scratch=None):
        """Group the rows of a batch by their element's node at ``level`` (counting sort).

        Parameters
        ----------
        element_index : int array, shape (n,)
            Dense element index of every row (``index_of``), ``-1`` for unknown elements.
        level : str
            Routing level (e.g. ``"region"``); the element level groups by element.
        out : int64 array, shape (>= n,), optional
            Reused output buffer for ``order`` (a view ``out[:n]`` is returned).
        scratch : uint8, int16 or int32 array, shape (>= n,), optional
            Reused scratch buffer, wide enough for ``n_nodes(level)`` (see :func:`scratch_dtype`).

        Returns
        -------
        order : int64 array, shape (n,)
            Row numbers grouped by node, stable (input order) within a node.
        offsets : int64 array, shape (n_nodes(level) + 2,)
            Rows of node ``k`` are ``order[offsets[k]:offsets[k + 1]]``. The last slice,
            ``order[offsets[-2]:offsets[-1]]``, holds the *unrouted* rows: unknown elements
            (``-1``) and retired elements; tell them apart with ``element_index[rows] == -1``
            and quarantine them. Nothing is dropped: ``offsets[-1] == n``.

        Raises
        ------
        ValueError
            If ``level`` is unknown, ``element_index`` is not 1-D integer, or holds a value
            outside ``-1..n_elements-1`` (naming the first row), or a buffer is too small.

        Notes
        -----
        One counting-sort pass (:func:`kernels.partition.partition_by_map_into`), O(n + nodes).
        """
        idx = self._check_element_index(element_index)
        route = self.route_map(level)
        n = len(idx)
        n_keys = self.n_nodes(level)
        order = np.empty(n, dtype=np.int64) if out is None else out
        if scratch is None:
            scratch = np.empty(n, dtype=scratch_dtype(n_keys))
        for name, buf, kinds in (("out", order, (np.int64,)), ("scratch", scratch, (np.uint8, np.int16, np.int32))):
            if buf.ndim != 1 or buf.dtype not in kinds or len(buf) < n or not buf.flags.c_contiguous:
                raise ValueError(
                    f"{name} must be a contiguous 1-D {'/'.join(np.dtype(k).name for k in kinds)} "
                    f"array of at least {n} entries, got {buf.dtype} {buf.shape}"
                )
        if n_keys > np.iinfo(scratch.dtype).max:
            raise ValueError(
                f"scratch is {scratch.dtype} but level {level!r} has {n_keys} nodes; pass a "
                f"{np.dtype(scratch_dtype(n_keys)).name} scratch (see scratch_dtype)"
            )
        offsets, n_invalid = partition_by_map_into(idx, route, n_keys, order, scratch)
        if n_invalid:
            self._raise_bad_index(idx)
        return order[:n], offsets

    def scatter(self, element_index, level: str, values):
        """Move ``values`` into partition order directly (one column, no ``order`` array).

        Parameters
        ----------
        element_index : int array, shape (n,)
            Dense element index of every row, ``-1`` for unknown elements.
        level : str
            Routing level.
        values : 1-D numeric array, shape (n,)
            Column to move.

        Returns
        -------
        sorted_values : array, shape (n,)
            ``values[order]`` for the ``order`` :meth:`partition` would return.
        offsets : int64 array, shape (n_nodes(level) + 2,)
            As in :meth:`partition` (last slice: unrouted rows).

        Raises
        ------
        ValueError
            As :meth:`partition`, and if ``values`` has another length or is not 1-D numeric.
        """
        idx = self._check_element_index(element_index)
        vals = np.asarray(values)
        if vals.shape != idx.shape or vals.dtype.kind not in "iufb":
            raise ValueError(f"values must be a numeric array of shape {idx.shape}, got {vals.dtype} {vals.shape}")
        if len(idx) and (idx.min() < -1 or idx.max() >= self.n_elements):
            self._raise_bad_index(idx)
        keys = np.full(len(idx), -1, dtype=np.int64)
        ok = idx >= 0
        keys[ok] = self.route_map(level)[idx[ok]]
        return partition_scatter(keys, self.n_nodes(level), np.ascontiguousarray(vals))

    def rollup(
        self, values, to_level: str, how: str = "sum", from_level: str | None = None, active_only: bool = False
    ) -> np.ndarray:
        """Roll per-node values up the hierarchy (segment reduction over the parent arrays).

        Parameters
        ----------
        values : float array, shape (n,) or (n, k)
            One row per dense node of ``from_level`` (elements by default). NaN is missing.
        to_level : str
            Target level, ``from_level`` or above.
        how : {"sum", "count", "min", "max", "mean"}
            Reduction. ``count`` counts non-NaN values; ``mean`` is sum / count.
        from_level : str, optional
            Level of the rows of ``values`` (default: the element level).
        active_only : bool
            Leave retired elements out (element-level input only). By default every row counts,
            so totals are conserved across a retire.

        Returns
        -------
        ndarray, shape (n_nodes(to_level),) or (n_nodes(to_level), k)
            float64 (int64 for ``count``). Empty nodes: sum 0, count 0, NaN for min/max/mean.

        Raises
        ------
        ValueError
            If a level or ``how`` is unknown, ``to_level`` is below ``from_level``, the shape is
            wrong, or ``active_only`` is used with a non-element ``from_level``.

        Notes
        -----
        Rolling up level by level equals rolling up directly for sum, count (sum the counts),
        min and max, since each is an associative, commutative reduction.
        """
        from_level = self.element_level if from_level is None else from_level
        if how not in ROLLUP_HOWS:
            raise ValueError(f"how must be one of {ROLLUP_HOWS}, got {how!r}")
        seg = self.node_to(from_level, to_level)
        n_from = len(seg)
        v = np.asarray(values)
        if v.ndim not in (1, 2) or v.shape[0] != n_from:
            raise ValueError(
                f"values must have shape ({n_from},) or ({n_from}, k): one row per {from_level}, got {v.shape}"
            )
        if v.dtype.kind not in "iufb":
            raise ValueError(f"values must be numeric, got dtype {v.dtype}")
        if active_only:
            if from_level != self.element_level:
                raise ValueError(f"active_only applies to element-level values, not {from_level!r}")
            seg = np.where(self.active, seg, -1)
        v2 = np.ascontiguousarray(v.reshape(n_from, -1), dtype=np.float64)
        n_to = self.n_nodes(to_level)
        if how == "sum":
            out = segment_sum(v2, seg, n_to)
        elif how == "count":
            out = segment_count(v2, seg, n_to)
        elif how == "min":
            out = segment_min(v2, seg, n_to)
        elif how == "max":
            out = segment_max(v2, seg, n_to)
        else:
            cnt = segment_count(v2, seg, n_to)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(cnt > 0, segment_sum(v2, seg, n_to) / np.maximum(cnt, 1), np.nan)
        return out.reshape(-1) if v.ndim == 1 else out
