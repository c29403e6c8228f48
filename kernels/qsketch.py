"""Mergeable log-bucket percentile sketch (DDSketch-style) kernels, one count row per cube cell.

Bucket ``0`` holds every value below ``min_value`` (zero and, for data that should not have them,
negatives). Bucket ``i >= 1`` holds ``min_value * gamma**(i-1) < x <= min_value * gamma**i`` with
``gamma = (1 + alpha) / (1 - alpha)``; the last bucket also takes everything above the range.
Counts add under merge, so the sketch is exactly mergeable and order independent.

Notes
-----
Masson, Rim, Lee 2019, "DDSketch: a fast and fully-mergeable quantile sketch with
relative-error guarantees". The representative value of bucket ``i`` is
``2 min_value gamma**i / (gamma + 1)``, within relative error ``alpha`` of every value of the
bucket. The q-quantile is the nearest-rank order statistic, of 0-based rank ``ceil(q n) - 1``
among the ``n`` values (SQL ``quantile_disc``, Hyndman-Fan type 1),
so the answer is within ``alpha`` (relative) of that order statistic when it lies in
``[min_value, max_value]``, and below ``min_value`` (reported as 0) when it is below the range.
"""

import math

from ._numba import kernel


@kernel
def qs_index(x, min_value, inv_log_gamma, n_buckets):
    """Bucket of value ``x`` (NaN must be filtered by the caller)."""
    if x < min_value:
        return 0
    i = int(math.ceil(math.log(x / min_value) * inv_log_gamma))
    if i < 1:
        i = 1
    if i > n_buckets - 1:
        i = n_buckets - 1
    return i


@kernel
def qs_quantiles(counts, n, qs, min_value, gamma, out):
    """Quantiles ``qs`` of the first ``n`` sketch rows into ``out[:n, :len(qs)]`` (NaN if empty).

    Parameters
    ----------
    counts : int64 array (n_cells, n_buckets)
    n : int
    qs : float64 array (k,), each in [0, 1]
    min_value, gamma : float
    out : float64 array (>= n, k)
    """
    nb = counts.shape[1]
    for c in range(n):
        total = 0
        for b in range(nb):
            total += counts[c, b]
        for k in range(qs.shape[0]):
            if total == 0:
                out[c, k] = math.nan
                continue
            rank = int(math.ceil(qs[k] * total - 1e-9)) - 1
            if rank < 0:
                rank = 0
            acc = 0
            b = 0
            while b < nb:
                acc += counts[c, b]
                if acc > rank:
                    break
                b += 1
            if b == 0:
                out[c, k] = 0.0
            else:
                out[c, k] = 2.0 * min_value * gamma**b / (gamma + 1.0)
