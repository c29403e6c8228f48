"""Slow, obvious references for the topology and partition kernels (loops and NumPy only)."""

import numpy as np


def ref_partition(keys, n_keys):
    """Stable grouping by key via np.argsort(kind="stable"); out-of-range keys last."""
    keys = np.asarray(keys, dtype=np.int64)
    k = np.where((keys < 0) | (keys >= n_keys), n_keys, keys)
    order = np.argsort(k, kind="stable")
    counts = np.bincount(k, minlength=n_keys + 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return order, offsets


def ref_ancestor(parents_chain, idx):
    """Walk the parent arrays one node at a time (parents_chain: child level first)."""
    out = []
    for i in idx:
        cur = int(i)
        for par in parents_chain:
            cur = int(par[cur])
        out.append(cur)
    return np.array(out, dtype=np.int64)


def ref_segment(values, seg, n_seg, how):
    """Per-segment nan-aware reduction by a Python loop over segments."""
    values = np.asarray(values, dtype=np.float64).reshape(len(seg), -1)
    k = values.shape[1]
    out = np.zeros((n_seg, k), dtype=np.int64 if how == "count" else np.float64)
    for s in range(n_seg):
        rows = values[np.asarray(seg) == s]
        for j in range(k):
            col = rows[:, j]
            col = col[~np.isnan(col)]
            if how == "sum":
                out[s, j] = col.sum()
            elif how == "count":
                out[s, j] = len(col)
            elif how == "mean":
                out[s, j] = col.mean() if len(col) else np.nan
            elif how == "min":
                out[s, j] = col.min() if len(col) else np.nan
            else:
                out[s, j] = col.max() if len(col) else np.nan
    return out


def ref_rollup_sum(values, element_to_node, n_nodes):
    """np.add.at reference of a sum roll-up (NaN treated as 0)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64))
    out = np.zeros((n_nodes,) + v.shape[1:])
    np.add.at(out, element_to_node, v)
    return out
