"""HyperLogLog distinct-count sketch kernels (registers as ``uint8`` rows, one row per cube cell).

A sketch with precision ``p`` has ``m = 2**p`` registers. Each 64-bit hash ``h`` selects register
``j = h >> (64 - p)`` and offers the rank ``rho`` = 1 + number of leading zeros of the remaining
``64 - p`` bits; the register keeps the maximum rank seen. Merging two sketches is the
register-wise maximum, so sketches are mergeable, order independent and idempotent.

Notes
-----
Estimate (Flajolet, Fusy, Gandouet, Meunier 2007, "HyperLogLog: the analysis of a near-optimal
cardinality estimation algorithm"), with the small-range linear-counting correction of
Heule, Nunkesser, Hall 2013 ("HyperLogLog in practice"):

``E = alpha_m * m**2 / sum_j 2**-M[j]``; if ``E <= 2.5 m`` and ``V`` registers are zero,
``E = m ln(m / V)``. The relative standard error is ``1.04 / sqrt(m)`` (1.63 % for ``p = 12``).
The 64-bit hash makes the large-range correction unnecessary.

Hashing happens in NumPy (``splitmix64`` in ``telcoanalytics.cube.dims``), because unsigned 64-bit
wrap-around multiplication warns in plain Python, and kernels must also run with
``NUMBA_DISABLE_JIT=1``. The kernels here only use shifts and masks that are exact in int64.
"""

import math

from ._numba import kernel


@kernel
def hll_add(row, h, p):
    """Offer one signed 64-bit hash ``h`` (bit pattern of a uint64) to one sketch.

    Parameters
    ----------
    row : uint8 array (m,)
        The registers of one sketch, updated in place.
    h : int64
        The hash (a uint64 bit pattern viewed as int64).
    p : int
        Precision, ``m = 2**p``, 4 <= p <= 18.
    """
    j = (h >> (64 - p)) & ((1 << p) - 1)
    nbits = 64 - p
    w = h & ((1 << nbits) - 1)
    r = 1
    bit = 1 << (nbits - 1)
    while r <= nbits and (w & bit) == 0:
        r += 1
        bit >>= 1
    if r > row[j]:
        row[j] = r


@kernel
def hll_estimate(regs, n, out):
    """Cardinality estimate of the first ``n`` register rows into ``out[:n]``.

    Parameters
    ----------
    regs : uint8 array (n_cells, m)
    n : int
    out : float64 array (>= n,)
    """
    m = regs.shape[1]
    if m == 16:
        alpha = 0.673
    elif m == 32:
        alpha = 0.697
    elif m == 64:
        alpha = 0.709
    else:
        alpha = 0.7213 / (1.0 + 1.079 / m)
    for c in range(n):
        s = 0.0
        zeros = 0
        for j in range(m):
            r = regs[c, j]
            s += 2.0 ** (-float(r))
            if r == 0:
                zeros += 1
        e = alpha * m * m / s
        if e <= 2.5 * m and zeros > 0:
            e = m * math.log(m / zeros)
        out[c] = e
