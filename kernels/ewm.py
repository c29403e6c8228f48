"""Continuous exponentially weighted (time-decayed) mean and variance, O(1) state per slot.

State layout
------------
``state`` is a float64 array of shape ``(n_slots, 1 + 3 * n_h)`` for ``n_h`` half-lives:

* column 0: ``t_ref`` the reference time in ms (float64; NaN while the slot is empty);
* columns ``1 + 3h .. 3 + 3h``: for half-life ``h`` the weight ``W`` (sum of event weights at
  ``t_ref``), the weighted ``mean`` and ``S`` (the weighted sum of squared deviations, so that
  the weighted population variance is ``S / W``).

An event at time ``t`` carries at reference time ``t_ref >= t`` the weight
``2 ** (-(t_ref - t) / half_life)``. The half-lives come in as coefficients
``coef[h] = -ln 2 / half_life_ms`` (0 for an infinite half-life, which gives plain sums).

Notes
-----
The incremental update is the weighted form of Welford's algorithm (D. H. D. West, "Updating
mean and variance estimates: an improved method", CACM 22(9), 1979; T. Finch, "Incremental
calculation of weighted mean and variance", 2009). When a new event is newer than ``t_ref`` the
state is first decayed by ``a = exp(coef * (t - t_ref))`` (exact for irregular spacing); when it
is older (out of order) the *event* is decayed instead by ``exp(coef * (t_ref - t))``, so the
result is independent of arrival order. Gaps are whole milliseconds, so the update takes the
factor from a three-level table (:func:`ewm_table`: ``exp(c dt) = T0[dt mod 2^10] *
T1[(dt >> 10) mod 2^10] * T2[dt >> 20]``, each entry correctly rounded, so the product is
within a few ulp of the true factor: measured <= 3 ulp from ``exp(c * dt)`` for ``|c dt| < 1``;
for larger arguments both the table and ``exp`` itself carry the rounding of the argument,
about ``|c dt| * 2**-53`` relative, e.g. 1e-13 for a factor near 1e-290) instead of calling
``exp``; gaps of 2**30 ms (12.4 days) or more and non-integer gaps call ``exp``. Three
half-lives (the common case) run through a loop with the three written out
(:func:`ewm_fold3`), bit-identical to the general one (:func:`ewm_fold_n`). Two states merge
by rescaling the older one to the newer reference time and combining the moments with Chan's
pairwise formula (Chan, Golub & LeVeque, "Algorithms for computing the sample variance", 1979).
"""

import math

import numpy as np

from ._numba import kernel, prefetch_at, prefetch_row  # noqa: F401  (re-exported for detect, windows)

PREFETCH_AHEAD = 12
"""How many events ahead the update kernels prefetch state rows."""


TABLE_BITS = 10
"""Bits of ``dt`` (ms) resolved by one level of the decay-factor table."""
TABLE_LEVELS = 3
"""Levels of the decay-factor table: ``dt < 2 ** (TABLE_BITS * TABLE_LEVELS)`` ms (12.4 days) is
looked up, longer gaps call ``exp``."""
TABLE_LIMIT_MS = float(1 << (TABLE_BITS * TABLE_LEVELS))
"""Gaps (ms) from which the decay factor is computed with ``exp`` instead of the table."""


@kernel
def ewm_table(coef, table):
    """Fill the decay-factor table ``table[l, i, h] = exp(coef[h] * i * 2 ** (TABLE_BITS * l))``.

    ``table`` is float64 ``(TABLE_LEVELS, 2 ** TABLE_BITS, n_h)``. A factor for an integer gap
    ``dt = i0 + i1 * 2**B + i2 * 2**(2B)`` ms is then ``table[0, i0] * table[1, i1] * table[2, i2]``
    (see :func:`ewm_fold`).
    """
    n_lev = table.shape[0]
    n_i = table.shape[1]
    for h in range(coef.shape[0]):
        scale = 1.0
        for lev in range(n_lev):
            c = coef[h] * scale  # a power-of-two scaling: exact
            for i in range(n_i):
                table[lev, i, h] = math.exp(c * i)
            scale *= n_i


@kernel
def ewm_fold(ts_ms, slot, value, status, coef, table, state):
    """Fold the events with ``status == 0`` into the EW state (all half-lives at once).

    An event newer than the slot's reference time decays the state by ``a = exp(coef dt)`` and
    enters with weight 1; an older one (out of order) enters with weight ``exp(coef dt)`` and the
    state is not decayed. Both are one update ``W' = a W + w``, ``m' = m + (x - m) w / W'``,
    ``S' = a S + w (x - m)(x - m')`` with ``(a, w) = (f, 1)`` or ``(1, f)``, so the loop has no
    data-dependent branch apart from the rare first event of a slot.

    Parameters
    ----------
    ts_ms, slot : int64 (n,)
    value : float64 (n,)
    status : int8 (n,), events with a non-zero status are skipped
    coef : float64 (n_h,)
    table : float64 ``(TABLE_LEVELS, 2 ** TABLE_BITS, n_h)`` from :func:`ewm_table`
    state : float64 (n_slots, 1 + 3 n_h), updated in place

    Notes
    -----
    Three half-lives (the common case) go through :func:`ewm_fold3`, any other count through
    :func:`ewm_fold_n`; both give bit-identical states. With tens of thousands of slots the
    per-event cost is dominated by the random state row (prefetched ``PREFETCH_AHEAD`` events
    ahead), the decay factors (three table loads and two multiplications per half-life instead
    of an ``exp``) and one division per half-life; the loops make no per-event calls. Rates are
    in ``benchmarks/bench_windows.py`` and the README.
    """
    if coef.shape[0] == 3:
        ewm_fold3(ts_ms, slot, value, status, coef, table, state, False)
    else:
        ewm_fold_n(ts_ms, slot, value, status, coef, table, state)


@kernel
def ewm_fold3(ts_ms, slot, value, status, coef, table, state, set_status):
    """:func:`ewm_fold` for exactly three half-lives, written out; returns the events folded.

    With ``set_status`` the status is not read but written (0 for a finite value, which is
    folded, 3 for NaN/inf, which is skipped), so :func:`ewm_update` needs no separate pass.

    Notes
    -----
    The same arithmetic, in the same order, as :func:`ewm_fold_n` (bit-identical states), with
    the table-or-``exp`` choice taken once per event instead of once per half-life, the three
    coefficients and table levels in registers, the state row read as a whole before it is
    written (the compiler need not reload it after every store), and separate in-order
    (``w = 1``: no multiplications by the weight) and late (``a = 1``) updates instead of the
    selects (a rare, well-predicted branch), which makes it faster than the loop of
    :func:`ewm_fold_n` (``bench_windows.py``).
    """
    n = ts_ms.shape[0]
    last = state.shape[1] - 1
    mask = (1 << TABLE_BITS) - 1
    c0 = coef[0]
    c1 = coef[1]
    c2 = coef[2]
    tab0 = table[0]
    tab1 = table[1]
    tab2 = table[2]
    n_ok = 0
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            sa = slot[i + PREFETCH_AHEAD]
            prefetch_row(state, sa)
            prefetch_at(state, sa, last)  # rows of 10 doubles span two lines
        x = value[i]
        if set_status:
            if not math.isfinite(x):  # NaN or +-inf: missing
                status[i] = 3
                continue
            status[i] = 0
        elif status[i] != 0:
            continue
        n_ok += 1
        row = state[slot[i]]
        t = float(ts_ms[i])
        t_ref = row[0]
        if not (t_ref == t_ref):  # empty slot (NaN reference time)
            row[0] = t
            row[1] = 1.0
            row[2] = x
            row[3] = 0.0
            row[4] = 1.0
            row[5] = x
            row[6] = 0.0
            row[7] = 1.0
            row[8] = x
            row[9] = 0.0
            continue
        dt = t - t_ref
        late = dt < 0.0
        if late:
            dt = -dt
        else:
            row[0] = t
        if dt < TABLE_LIMIT_MS and float(np.int64(dt)) == dt:
            idt = np.int64(dt)
            i0 = idt & mask  # masked: provably >= 0, no negative-index code
            i1 = (idt >> TABLE_BITS) & mask
            i2 = (idt >> (2 * TABLE_BITS)) & mask
            f0 = tab0[i0, 0] * tab1[i1, 0] * tab2[i2, 0]
            f1 = tab0[i0, 1] * tab1[i1, 1] * tab2[i2, 1]
            f2 = tab0[i0, 2] * tab1[i1, 2] * tab2[i2, 2]
        else:
            f0 = math.exp(c0 * dt)
            f1 = math.exp(c1 * dt)
            f2 = math.exp(c2 * dt)
        w0_old = row[1]
        m0 = row[2]
        s0 = row[3]
        w1_old = row[4]
        m1 = row[5]
        s1 = row[6]
        w2_old = row[7]
        m2 = row[8]
        s2 = row[9]
        if late:  # the event decayed to t_ref, the state not
            w0_new = w0_old + f0
            w1_new = w1_old + f1
            w2_new = w2_old + f2
            d0 = x - m0
            d1 = x - m1
            d2 = x - m2
            m0 += d0 * (f0 / w0_new)
            m1 += d1 * (f1 / w1_new)
            m2 += d2 * (f2 / w2_new)
            row[1] = w0_new
            row[2] = m0
            row[3] = s0 + f0 * d0 * (x - m0)
            row[4] = w1_new
            row[5] = m1
            row[6] = s1 + f1 * d1 * (x - m1)
            row[7] = w2_new
            row[8] = m2
            row[9] = s2 + f2 * d2 * (x - m2)
        else:
            w0_new = w0_old * f0 + 1.0
            w1_new = w1_old * f1 + 1.0
            w2_new = w2_old * f2 + 1.0
            d0 = x - m0
            d1 = x - m1
            d2 = x - m2
            m0 += d0 * (1.0 / w0_new)  # as d * (w / W) with w = 1 (same rounding)
            m1 += d1 * (1.0 / w1_new)
            m2 += d2 * (1.0 / w2_new)
            row[1] = w0_new
            row[2] = m0
            row[3] = s0 * f0 + d0 * (x - m0)
            row[4] = w1_new
            row[5] = m1
            row[6] = s1 * f1 + d1 * (x - m1)
            row[7] = w2_new
            row[8] = m2
            row[9] = s2 * f2 + d2 * (x - m2)
    return n_ok


@kernel
def ewm_fold_n(ts_ms, slot, value, status, coef, table, state):
    """:func:`ewm_fold` for any number of half-lives (a loop over them per event)."""
    n = ts_ms.shape[0]
    n_h = coef.shape[0]
    last = state.shape[1] - 1
    mask = (1 << TABLE_BITS) - 1
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            sa = slot[i + PREFETCH_AHEAD]
            prefetch_row(state, sa)
            prefetch_at(state, sa, last)  # rows of 10 doubles span two lines
        if status[i] != 0:
            continue
        s = slot[i]
        t = float(ts_ms[i])
        x = value[i]
        t_ref = state[s, 0]
        if not (t_ref == t_ref):  # empty slot (NaN reference time)
            state[s, 0] = t
            for h in range(n_h):
                j = 1 + 3 * h
                state[s, j] = 1.0
                state[s, j + 1] = x
                state[s, j + 2] = 0.0
            continue
        dt = t - t_ref
        late = dt < 0.0
        if late:
            dt = -dt
        else:
            state[s, 0] = t
        exact = dt < TABLE_LIMIT_MS
        idt = np.int64(dt) if exact else np.int64(0)
        exact = exact and float(idt) == dt
        i0 = idt & mask
        i1 = (idt >> TABLE_BITS) & mask
        i2 = (idt >> (2 * TABLE_BITS)) & mask
        for h in range(n_h):
            if exact:
                f = table[0, i0, h] * table[1, i1, h] * table[2, i2, h]
            else:
                f = math.exp(coef[h] * dt)
            a = 1.0 if late else f
            w = f if late else 1.0
            j = 1 + 3 * h
            w_new = state[s, j] * a + w
            m = state[s, j + 1]
            d = x - m
            m += d * (w / w_new)
            state[s, j] = w_new
            state[s, j + 1] = m
            state[s, j + 2] = state[s, j + 2] * a + w * d * (x - m)


@kernel
def ewm_update(ts_ms, slot, value, coef, table, state, status):
    """Fold a batch of events into the EW state; NaN/inf values are skipped.

    Parameters
    ----------
    ts_ms : int64 (n,)
    slot : int64 (n,), each in ``0..n_slots-1`` (checked by the caller)
    value : float64 (n,)
    coef : float64 (n_h,), ``-ln 2 / half_life_ms`` (0 for an infinite half-life)
    table : float64 ``(TABLE_LEVELS, 2 ** TABLE_BITS, n_h)`` from :func:`ewm_table`
    state : float64 (n_slots, 1 + 3 n_h), updated in place
    status : int8 (n,), set to 0 for folded events and 3 for non-finite values

    Returns
    -------
    int
        Number of events folded.
    """
    if coef.shape[0] == 3:  # status set inside the fold: one pass
        return ewm_fold3(ts_ms, slot, value, status, coef, table, state, True)
    n_ok = 0
    for i in range(ts_ms.shape[0]):
        if math.isfinite(value[i]):
            status[i] = 0
            n_ok += 1
        else:  # NaN or +-inf: missing
            status[i] = 3
    ewm_fold_n(ts_ms, slot, value, status, coef, table, state)
    return n_ok


@kernel
def ewm_merge(src, dst_of_src, coef, dst):
    """Merge every row ``s`` of ``src`` into row ``dst_of_src[s]`` of ``dst`` (same half-lives).

    The older of the two states is decayed to the newer reference time, then the moments are
    combined: ``W = W1 + W2``, ``mean = m1 + (m2 - m1) W2 / W``,
    ``S = S1 + S2 + (m2 - m1)^2 W1 W2 / W``.
    """
    n_h = coef.shape[0]
    for s in range(src.shape[0]):
        t2 = src[s, 0]
        if not (t2 == t2):
            continue
        g = dst_of_src[s]
        t1 = dst[g, 0]
        if not (t1 == t1):
            for j in range(src.shape[1]):
                dst[g, j] = src[s, j]
            continue
        t = t1 if t1 >= t2 else t2
        dst[g, 0] = t
        for h in range(n_h):
            j = 1 + 3 * h
            a1 = 1.0 if t1 == t else math.exp(coef[h] * (t - t1))
            a2 = 1.0 if t2 == t else math.exp(coef[h] * (t - t2))
            w1 = dst[g, j] * a1
            w2 = src[s, j] * a2
            w = w1 + w2
            m1 = dst[g, j + 1]
            d = src[s, j + 1] - m1
            if w > 0.0:
                dst[g, j + 1] = m1 + d * (w2 / w)
                dst[g, j + 2] = dst[g, j + 2] * a1 + src[s, j + 2] * a2 + d * d * (w1 * w2 / w)
            dst[g, j] = w


@kernel
def ewm_values(state, slots, t_query_ms, coef, out):
    """Statistics of the selected slots at ``t_query_ms``.

    ``out`` is float64 ``(len(slots), n_h, 5)``: weight decayed to the query time, decayed sum,
    mean, population variance ``S / W`` and standard deviation. Empty slots give weight 0,
    sum 0 and NaN for mean, variance and std. A query time before ``t_ref`` extrapolates the
    weight backwards (factor > 1), which is the same formula read the other way.
    """
    n_h = coef.shape[0]
    nan = math.nan
    for q in range(slots.shape[0]):
        s = slots[q]
        t_ref = state[s, 0]
        for h in range(n_h):
            j = 1 + 3 * h
            if not (t_ref == t_ref) or state[s, j] <= 0.0:
                out[q, h, 0] = 0.0
                out[q, h, 1] = 0.0
                out[q, h, 2] = nan
                out[q, h, 3] = nan
                out[q, h, 4] = nan
                continue
            a = math.exp(coef[h] * (t_query_ms - t_ref))
            w = state[s, j] * a
            m = state[s, j + 1]
            # S >= 0 in exact arithmetic (each update adds w d (x - m_new) >= 0); rounding can
            # leave -1 ulp, never report a negative variance
            var = max(state[s, j + 2] / state[s, j], 0.0)
            out[q, h, 0] = w
            out[q, h, 1] = w * m
            out[q, h, 2] = m
            out[q, h, 3] = var
            out[q, h, 4] = math.sqrt(var)
