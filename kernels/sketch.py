"""Mergeable log-bucket quantile sketch (DDSketch-style) per slot and time bucket.

Bins
----
For relative accuracy ``alpha`` let ``gamma = (1 + alpha) / (1 - alpha)``. With the range
``[min_value, max_value]``, log bin ``i`` (``1 <= i <= n_log``) holds values in
``(min_value * gamma**(i-1), min_value * gamma**i]`` and is represented by
``min_value * 2 gamma**i / (gamma + 1)``, which is within relative error ``alpha`` of every value
in the bin (Masson, Rim & Lee, "DDSketch: a fast and fully-mergeable quantile sketch with
relative-error guarantees", VLDB 2019). Bin 0 holds zeros and values below ``min_value``
(represented by 0: absolute error < ``min_value``), bin ``n_log + 1`` values above the top of the
range (represented by ``max_value``; counted so the caller can report them).

Layout
------
``bucket_of`` int64 ``(n_buckets * n_slots,)`` holds the absolute time bucket of each cell
(``NO_BUCKET`` when empty); ``counts`` uint32 ``(n_buckets * n_slots, n_log + 2)``; cell
``(bucket % n_buckets) * n_slots + slot``. Stale cells are recognised lazily as in
:mod:`kernels.windows`.
"""

import math
from typing import NamedTuple

import numpy as np

from ._numba import kernel

NO_BUCKET = np.iinfo(np.int64).min

# per-event status codes of ``sketch_update``
OK, INVALID, EXPIRED, SKIPPED = 0, 3, 4, 5


# The NamedTuples name the fields of the tuples the kernels take; callers pass plain tuples (Numba
# dispatches those through its C fast path, see kernels.cube), the kernels unpack by position.


class SketchState(NamedTuple):
    """The sketch state (module notes), updated in place by ``sketch_update``."""

    clock: np.ndarray  # int64 (1,): newest bucket seen (``NO_BUCKET`` initially)
    bucket_of: np.ndarray  # int64 (n_buckets * n_slots,)
    counts: np.ndarray  # uint32 (n_buckets * n_slots, n_bins)


class SketchParams(NamedTuple):
    """Time buckets and bins of a sketch."""

    width_ms: int
    n_buckets: int
    n_slots: int
    min_value: float
    inv_log_gamma: float  # ``1 / ln(gamma)``


@kernel
def sketch_bin(x, min_value, inv_log_gamma, n_log):
    """Bin index of a non-negative finite value."""
    if x < min_value:
        return 0
    i = int(math.ceil(math.log(x / min_value) * inv_log_gamma))
    if i < 1:
        return 1
    if i > n_log:
        return n_log + 1
    return i


@kernel
def sketch_update(state, params, ts_ms, slot, value, active, status):
    """Count each active event into the bin of its value in its slot's time-bucket cell.

    Parameters
    ----------
    state : SketchState
        Clock, bucket of each cell and bin counts, updated in place.
    params : SketchParams
        Bucket width, ring length, slots, smallest tracked value and ``1 / ln(gamma)``.
    ts_ms, slot : int64 (n,)
    value : float64 (n,)
    active : bool (n,), inactive events get ``status = SKIPPED``
    status : int8 (n,), output: OK, INVALID (NaN, inf or negative value), EXPIRED (older than
        the ring span), SKIPPED

    Returns
    -------
    int
        Number of events counted.
    """
    clock, bucket_of, counts = state
    width_ms, n_buckets, n_slots, min_value, inv_log_gamma = params
    n_bins = counts.shape[1]
    n_log = n_bins - 2
    maxb = clock[0]
    n_ok = 0
    for i in range(ts_ms.shape[0]):
        if not active[i]:
            status[i] = SKIPPED
            continue
        x = value[i]
        if not math.isfinite(x) or x < 0.0:
            status[i] = INVALID
            continue
        b = ts_ms[i] // width_ms
        if maxb == NO_BUCKET or b > maxb:
            maxb = b
        if b <= maxb - n_buckets:
            status[i] = EXPIRED
            continue
        c = (b % n_buckets) * n_slots + slot[i]
        if bucket_of[c] != b:
            for j in range(n_bins):
                counts[c, j] = 0
            bucket_of[c] = b
        counts[c, sketch_bin(x, min_value, inv_log_gamma, n_log)] += 1
        status[i] = OK
        n_ok += 1
    clock[0] = maxb
    return n_ok


@kernel
def sketch_merge(src_bucket_of, src_counts, n_src_slots, dst_of_src, n_buckets, n_dst_slots, dst_bucket_of, dst_counts):
    """Merge all cells of a source sketch into ``dst`` (slot ``s`` -> ``dst_of_src[s]``).

    Same bucket: counts add. Different buckets: the newer wins, as in a single pass.
    """
    n_bins = src_counts.shape[1]
    for p in range(n_buckets):
        for s in range(n_src_slots):
            cs = p * n_src_slots + s
            bs = src_bucket_of[cs]
            if bs == NO_BUCKET:
                continue
            cd = p * n_dst_slots + dst_of_src[s]
            bd = dst_bucket_of[cd]
            if bd == NO_BUCKET or bs > bd:
                dst_bucket_of[cd] = bs
                for j in range(n_bins):
                    dst_counts[cd, j] = src_counts[cs, j]
            elif bs == bd:
                for j in range(n_bins):
                    dst_counts[cd, j] += src_counts[cs, j]


@kernel
def sketch_query(state, params, t_query_ms, weights, slots, qs, bin_value, out_q, out_n):
    """Weighted quantiles per slot over the last ``len(weights)`` buckets up to ``t_query_ms``.

    The histogram of a slot is ``sum_k weights[k] * counts[cell of bucket age k]``. Quantile
    ``q`` is the representative value of the first bin whose cumulative weight exceeds
    ``q * (total - 1)`` (for unit weights: the order statistic of rank ``floor(q (n - 1))``,
    NumPy's ``method="lower"``, within relative error alpha). Empty slots give NaN.

    Parameters
    ----------
    state : SketchState
    params : SketchParams (``width_ms``, ``n_buckets``, ``n_slots`` are used)
    t_query_ms : int
    weights : float64 (n_span,)
    slots : int64 (n_q,)
    qs : float64 (n_qs,), in [0, 1]
    bin_value : float64 (n_bins,), representative value per bin
    out_q : float64 (n_q, n_qs), output quantiles
    out_n : float64 (n_q,), output weighted count
    """
    _, bucket_of, counts = state
    width_ms, n_buckets, n_slots, _, _ = params
    n_bins = counts.shape[1]
    hist = np.zeros(n_bins)
    bq = t_query_ms // width_ms
    for qi in range(slots.shape[0]):
        s = slots[qi]
        for j in range(n_bins):
            hist[j] = 0.0
        total = 0.0
        for k in range(weights.shape[0]):
            wk = weights[k]
            if wk <= 0.0:
                continue
            b = bq - k
            c = (b % n_buckets) * n_slots + s
            if bucket_of[c] != b:
                continue
            for j in range(n_bins):
                v = counts[c, j]
                if v != 0:
                    hist[j] += wk * v
                    total += wk * v
        out_n[qi] = total
        for m in range(qs.shape[0]):
            if total <= 0.0:
                out_q[qi, m] = math.nan
                continue
            rank = qs[m] * (total - 1.0)
            if rank < 0.0:
                rank = 0.0
            cum = 0.0
            res = bin_value[n_bins - 1]
            for j in range(n_bins):
                cum += hist[j]
                if cum > rank:
                    res = bin_value[j]
                    break
            out_q[qi, m] = res
