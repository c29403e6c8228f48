"""Holt-Winters kernels: additive damped trend, additive seasonality, fitted per series.

State-space form ETS(A,Ad,A) (Hyndman et al. 2008), one step:

    f_t = l_{t-1} + phi b_{t-1} + s_{t-m},   e_t = y_t - f_t
    l_t = l_{t-1} + phi b_{t-1} + alpha e_t
    b_t = phi b_{t-1} + beta e_t
    s_t = s_{t-m} + gamma e_t

with ``0 < alpha < 1``, ``0 <= beta <= alpha``, ``0 <= gamma <= 1 - alpha``. Parameters are
searched in a unit cube (``beta = alpha rb``, ``gamma = (1 - alpha) rg``, squares of the cube
coordinates so that small smoothing weights get fine resolution): a coarse grid, then a compass
search whose 8 trial points (one step each way per parameter) are evaluated together, as 8
lanes of one pass over the series. A missing point (NaN) propagates the state with the forecast and adds no error.

Two drivers run that search. ``hw_fit_blocks`` (the path of ``fit_holt_winters``) runs it in
lockstep for a block of series: each pass evaluates the 8 trial points of every series still
searching as ``8 x active`` lanes with the series innermost, so the recursion runs as SIMD
across series and candidates, and a converged series leaves the lanes. ``hw_fit_rows`` runs it
per series (``_fit_one``): the first version, kept as the cross-check of the tests and the
benchmarks' old-versus-new comparison.

The lockstep search runs its recursion in float32 (each series shifted by its initial level;
squared errors summed in float32 over at most 256 steps, then in float64) and the last pass at
the optimum in float64, so the state, SSE and sigma^2 returned are float64 (see ``_fit_block``).
The lane arrays are rows of one local 2-D array: with separate arrays the compiler kept the
lane loop scalar (too many possible overlaps to check at run time); with one array it is SIMD,
8 float32 lanes per AVX2 instruction.
"""

import numpy as np

from kernels._numba import kernel

kernel_rows = kernel  # serial, as every kernel of the package (see kernels/trend.py)

N_PARAMS = 4  # alpha, beta, gamma, phi
STATS_COLS = 3  # sse, valid points, sigma^2
_LANES = 8
_ALPHA, _BETA, _GAMMA, _PHI, _LEV, _TR, _PART, _Y, _PHI_H, _PHI_POW = range(10)  # rows of the lanes' array
_ROWS = 10
INIT_CYCLES = 10  # cycles averaged for the initial seasonals (more: less noise, less adaptivity)


@kernel
def _params_from_cube(z, bounds, par):
    """Cube coordinates ``z`` (4, P) -> parameters ``par`` (4, P): alpha, beta, gamma, phi."""
    for p in range(z.shape[1]):
        alpha = bounds[0, 0] + (bounds[0, 1] - bounds[0, 0]) * z[0, p] * z[0, p]
        par[0, p] = alpha
        par[1, p] = alpha * (bounds[1, 0] + (bounds[1, 1] - bounds[1, 0]) * z[1, p] * z[1, p])
        par[2, p] = (1.0 - alpha) * (bounds[2, 0] + (bounds[2, 1] - bounds[2, 0]) * z[2, p] * z[2, p])
        par[3, p] = bounds[3, 0] + (bounds[3, 1] - bounds[3, 0]) * z[3, p]


@kernel
def hw_sse(y, m, init, par, horizon, sse, state):
    """Sum of squared errors of ``y`` for each column of ``par`` (4, P).

    ``horizon <= 1``: one-step errors. ``horizon = H > 1``: the errors of the 1..H-step
    forecasts made from every H-th point (a multi-step criterion, like R's
    ``ets(opt.crit = "amse")`` on sparse origins, for about one more pass of work).
    ``init`` = (l0, b0, s0 for phases 0..m-1); ``state`` (2 + m, P) receives the final level,
    trend and seasonal ring (the seasonal of time ``i`` is ``state[2 + i % m]``).
    """
    n_lanes = par.shape[1]
    # Local arrays (not views of ``state``) let the compiler prove the lanes do not alias and
    # run them as SIMD.
    lev = np.full(n_lanes, init[0])
    tr = np.full(n_lanes, init[1])
    acc = np.zeros(n_lanes)
    seas = np.empty((m, n_lanes))
    for j in range(m):
        seas[j, :] = init[2 + j]
    alpha = par[0].copy()
    beta = par[1].copy()
    gamma = par[2].copy()
    phi = par[3].copy()
    multi = horizon > 1
    phi_h = np.empty(n_lanes)
    phi_pow = np.empty(n_lanes)
    n = y.shape[0]
    j = 0
    for i in range(n):
        if multi and i % horizon == 0:
            phi_h[:] = 0.0
            phi_pow[:] = 1.0
            for h in range(min(horizon, n - i)):
                yh = y[i + h]
                jh = (i + h) % m
                for p in range(n_lanes):
                    phi_pow[p] *= phi[p]
                    phi_h[p] += phi_pow[p]
                if np.isfinite(yh):
                    for p in range(n_lanes):
                        e = yh - lev[p] - phi_h[p] * tr[p] - seas[jh, p]
                        acc[p] += e * e
        yi = y[i]
        if np.isfinite(yi):
            for p in range(n_lanes):
                f = lev[p] + phi[p] * tr[p]
                e = yi - f - seas[j, p]
                if not multi:
                    acc[p] += e * e
                lev[p] = f + alpha[p] * e
                tr[p] = phi[p] * tr[p] + beta[p] * e
                seas[j, p] += gamma[p] * e
        else:
            for p in range(n_lanes):
                lev[p] = lev[p] + phi[p] * tr[p]
                tr[p] = phi[p] * tr[p]
        j += 1
        if j == m:
            j = 0
    sse[:] = acc
    state[0] = lev
    state[1] = tr
    state[2:] = seas


@kernel
def hw_init(y, m, init):
    """Heuristic initial states into ``init`` (2 + m): the first cycles' means give the level
    and trend, the mean deviation per phase the (centred) seasonals. Needs two cycles when
    ``m > 1``; missing points are skipped."""
    n = y.shape[0]
    if m == 1:
        k = min(n, 10)
        first = np.nan
        i0 = 0
        for i in range(k):
            if np.isfinite(y[i]):
                first = y[i]
                i0 = i
                break
        slope = 0.0
        c = 0
        for i in range(i0 + 1, k):
            if np.isfinite(y[i]) and np.isfinite(y[i - 1]):
                slope += y[i] - y[i - 1]
                c += 1
        init[1] = slope / c if c > 0 else 0.0
        init[0] = first - init[1] if np.isfinite(first) else 0.0
        init[2] = 0.0
        return
    k = min(n // m, INIT_CYCLES)
    means = np.zeros(k)
    for c in range(k):
        total = 0.0
        cnt = 0
        for j in range(m):
            v = y[c * m + j]
            if np.isfinite(v):
                total += v
                cnt += 1
        means[c] = total / cnt if cnt > 0 else np.nan
    # least-squares line through the cycle means (each finite mean tested on its own: under
    # fast math the compiled ``isfinite(a - b)`` can fold to True)
    c_first = -1
    sw = 0.0
    sc = 0.0
    sm = 0.0
    for c in range(k):
        if np.isfinite(means[c]):
            if c_first < 0:
                c_first = c
            sw += 1.0
            sc += c
            sm += means[c]
    b0 = 0.0
    cbar = sc / sw if sw > 0 else 0.0
    mbar = sm / sw if sw > 0 else 0.0
    if sw > 1:
        num = 0.0
        den = 0.0
        for c in range(k):
            if np.isfinite(means[c]):
                num += (c - cbar) * (means[c] - mbar)
                den += (c - cbar) * (c - cbar)
        b0 = num / den / m
    centre = 0.0
    for j in range(m):
        total = 0.0
        cnt = 0
        for c in range(k):
            v = y[c * m + j]
            if np.isfinite(v) and np.isfinite(means[c]):
                total += v - (means[c] + (j - (m - 1) / 2.0) * b0)
                cnt += 1
        init[2 + j] = total / cnt if cnt > 0 else 0.0
        centre += init[2 + j]
    for j in range(m):
        init[2 + j] -= centre / m
    if c_first < 0:
        init[0] = 0.0
    else:  # the level one step before the first point, on the fitted line
        init[0] = mbar - (cbar * m + (m - 1) / 2.0 + 1.0) * b0
    init[1] = b0


@kernel
def _fit_one(y, m, bounds, max_iter, horizon, par_out, state_out):
    """Compass search of the parameters of one series; returns the SSE at the optimum."""
    init = np.empty(2 + m)
    hw_init(y, m, init)
    z = np.empty((N_PARAMS, _LANES))
    par = np.empty((N_PARAMS, _LANES))
    sse = np.empty(_LANES)
    state = np.empty((2 + m, _LANES))
    grid0 = (0.25, 0.55, 0.85)
    best = np.inf
    best_z = np.full(N_PARAMS, 0.5)
    for g in range(3):  # coarse start: alpha x (rb, rg, phi) corners, 8 lanes per pass
        for p in range(_LANES):
            z[0, p] = grid0[g]
            z[1, p] = 0.15 if p & 1 == 0 else 0.5
            z[2, p] = 0.15 if p & 2 == 0 else 0.5
            z[3, p] = 0.3 if p & 4 == 0 else 0.85
        _params_from_cube(z, bounds, par)
        hw_sse(y, m, init, par, horizon, sse, state)
        for p in range(_LANES):
            if sse[p] < best:
                best = sse[p]
                best_z[:] = z[:, p]
    step = 0.15
    for _ in range(max_iter):
        for p in range(_LANES):
            z[:, p] = best_z
            d = p // 2
            z[d, p] = min(max(best_z[d] + (step if p % 2 == 0 else -step), 0.0), 1.0)
        _params_from_cube(z, bounds, par)
        hw_sse(y, m, init, par, horizon, sse, state)
        arg = -1
        for p in range(_LANES):
            if sse[p] < best:
                best = sse[p]
                arg = p
        if arg >= 0:
            best_z[:] = z[:, arg]
        else:
            step *= 0.5
            if step < 0.004:
                break
    z1 = np.empty((N_PARAMS, 1))
    z1[:, 0] = best_z
    par1 = np.empty((N_PARAMS, 1))
    _params_from_cube(z1, bounds, par1)
    sse1 = np.empty(1)
    state1 = np.empty((2 + m, 1))
    hw_sse(y, m, init, par1, 1, sse1, state1)  # one-step errors: sigma^2 of the intervals
    par_out[:] = par1[:, 0]
    state_out[:] = state1[:, 0]
    return sse1[0]


@kernel_rows
def hw_fit_rows(Y, m, bounds, fit_horizon, max_iter, par_out, state_out, stats_out):
    """Fit Holt-Winters per row of ``Y`` (n_series, n_points), NaN = missing.

    Parameters
    ----------
    Y : float64 (n_series, n_points)
    m : int, season length (1 = no seasonality; then ``bounds[2]`` should be (0, 0))
    bounds : float64 (4, 2), ranges of alpha, beta / alpha, gamma / (1 - alpha), phi
    fit_horizon : int, 1 to fit one-step errors, H > 1 the 1..H-step errors (see ``hw_sse``)
    max_iter : int, compass iterations
    par_out : float64 (n_series, 4), written: alpha, beta, gamma, phi
    state_out : float64 (n_series, 2 + m), written: final level, trend, seasonal ring
    stats_out : float64 (n_series, STATS_COLS), written: one-step SSE, valid points, sigma^2
    """
    for r in range(Y.shape[0]):
        sse = _fit_one(Y[r], m, bounds, max_iter, fit_horizon, par_out[r], state_out[r])
        n_valid = 0
        for v in Y[r]:
            if np.isfinite(v):
                n_valid += 1
        stats_out[r, 0] = sse
        stats_out[r, 1] = n_valid
        stats_out[r, 2] = sse / max(n_valid - N_PARAMS, 1)


@kernel
def _lanes_sse(Yt, act, m, init, par, horizon, work, sse, lt):
    """One pass of the recursion for ``C = par.shape[1] // act.shape[0]`` candidates of each
    active series of a block, the lanes innermost so the compiler runs them as SIMD; the SSE of
    the one-step errors (``horizon <= 1``) or of the 1..H-step errors from every H-th point
    (``horizon = H``, as ``hw_sse``).

    ``Yt`` (n_points, B): the block, series innermost; ``act`` (A,): its active columns;
    ``init`` (2 + m, B); ``par`` (4, C A): lane ``c A + a`` is candidate ``c`` of series
    ``act[a]``. Written: ``sse`` (C A,), ``lt`` (2, C A) the final level and trend, ``work``
    (>= m C A) the final seasonal ring (phase ``j`` of lane ``k`` at ``work[j C A + k]``).
    A missing point (NaN) gives a zero error: the state moves with the forecast, adds no error.

    With ``1 < H <= m`` the multi-step errors are accumulated in the one pass: the forecast
    ``l_o + (phi + ... + phi^h) b_o + s`` from the origin ``o`` is carried forward as a running
    sum (``phi^h b_o`` added each step), and the seasonal it needs for the time ``o + h`` is the
    ring's entry at that time before its update, last changed at ``o + h - m <= o``. With
    ``H > m`` each origin runs its ``H`` steps ahead separately (about one more pass).
    """
    n = Yt.shape[0]
    n_act = act.shape[0]
    n_lanes = par.shape[1]
    n_cand = n_lanes // n_act
    # Every lane array is a row of one local array ``S`` (dtype of ``par``: float32 in the
    # search, float64 in the last pass), seasonal ring included: with one base pointer the
    # compiler proves the rows independent and runs the lane loops as SIMD (separate arrays
    # need more run-time overlap checks than it emits, and it kept them scalar).
    S = np.empty((_ROWS + m, n_lanes), par.dtype)
    S[_ALPHA] = par[0]
    S[_BETA] = par[1]
    S[_GAMMA] = par[2]
    S[_PHI] = par[3]
    S[_PART] = 0.0
    acc = np.zeros(n_lanes)
    yact = np.empty(n_act, par.dtype)
    for j in range(2 + m):  # rows of the initial states: _LEV, _TR, then the seasonal ring
        row = _LEV + j if j < 2 else _ROWS + j - 2
        for c in range(n_cand):
            for a in range(n_act):
                S[row, c * n_act + a] = init[j, act[a]]
    zero = S[_PART, 0]
    multi = horizon > 1
    # H <= m: one pass (see the docstring); rows _PHI_H and _PHI_POW then hold the forecast
    # from the origin and the damped trend still to add to it
    merged = multi and horizon <= m
    one_step = np.float32(0.0 if multi else 1.0)  # exact in either width
    j = 0
    for i in range(n):
        if merged and i % horizon == 0:
            S[_PHI_H] = S[_LEV]
            S[_PHI_POW] = S[_TR]
        elif multi and not merged and i % horizon == 0:
            S[_PHI_H] = 0.0
            S[_PHI_POW] = 1.0
            for h in range(min(horizon, n - i)):
                for a in range(n_act):
                    yact[a] = Yt[i + h, act[a]]
                for c in range(n_cand):  # element loops: a slice copy per candidate costs more
                    for a in range(n_act):
                        S[_Y, c * n_act + a] = yact[a]
                jh = _ROWS + (i + h) % m
                for k in range(n_lanes):
                    S[_PHI_POW, k] *= S[_PHI, k]
                    S[_PHI_H, k] += S[_PHI_POW, k]
                    yh = S[_Y, k]
                    dh = yh - S[_LEV, k] - S[_PHI_H, k] * S[_TR, k] - S[jh, k]
                    eh = dh if yh == yh else zero
                    S[_PART, k] += eh * eh
        for a in range(n_act):
            yact[a] = Yt[i, act[a]]
        for c in range(n_cand):
            for a in range(n_act):
                S[_Y, c * n_act + a] = yact[a]
        js = _ROWS + j
        if merged:
            for k in range(n_lanes):
                yi = S[_Y, k]
                S[_PHI_POW, k] *= S[_PHI, k]
                S[_PHI_H, k] += S[_PHI_POW, k]
                dh = yi - S[_PHI_H, k] - S[js, k]
                eh = dh if yi == yi else zero
                S[_PART, k] += eh * eh
                f = S[_LEV, k] + S[_PHI, k] * S[_TR, k]
                d = yi - f - S[js, k]
                e = d if yi == yi else zero
                S[_LEV, k] = f + S[_ALPHA, k] * e
                S[_TR, k] = S[_PHI, k] * S[_TR, k] + S[_BETA, k] * e
                S[js, k] += S[_GAMMA, k] * e
        else:
            for k in range(n_lanes):
                yi = S[_Y, k]
                f = S[_LEV, k] + S[_PHI, k] * S[_TR, k]
                d = yi - f - S[js, k]
                e = d if yi == yi else zero
                S[_PART, k] += one_step * e * e
                S[_LEV, k] = f + S[_ALPHA, k] * e
                S[_TR, k] = S[_PHI, k] * S[_TR, k] + S[_BETA, k] * e
                S[js, k] += S[_GAMMA, k] * e
        j += 1
        if j == m:
            j = 0
        if i & 255 == 255:
            for k in range(n_lanes):
                acc[k] += S[_PART, k]
                S[_PART, k] = zero
    for k in range(n_lanes):
        acc[k] += S[_PART, k]
    sse[:n_lanes] = acc
    lt[0, :n_lanes] = S[_LEV]
    lt[1, :n_lanes] = S[_TR]
    for j in range(m):
        work[j * n_lanes : (j + 1) * n_lanes] = S[_ROWS + j]


@kernel
def _search_block(Yt, init, m, bounds, search, best_z):
    """The compass search of ``_fit_one`` (same grid, steps and tie-breaking) run in lockstep
    for the columns of ``Yt`` (n_points, B), the recursion in the dtype of ``Yt``: each pass
    evaluates 8 candidates of every series that has not converged, as ``8 x active`` SIMD
    lanes; a series stops when its step falls below ``tol``. Writes ``best_z`` (4, B), the
    optimum in the unit cube; returns the number of candidate evaluations."""
    max_iter, tol, n_grid, min_gain, horizon = search[0], search[1], search[2], search[3], search[5]
    n_rows = Yt.shape[1]
    max_lanes = _LANES * n_rows
    z = np.empty((N_PARAMS, max_lanes))
    par = np.empty((N_PARAMS, max_lanes))
    par_t = np.empty((N_PARAMS, max_lanes), Yt.dtype)
    sse = np.empty(max_lanes)
    lt = np.empty((2, max_lanes), Yt.dtype)
    work = np.empty(m * max_lanes, Yt.dtype)
    best = np.full(n_rows, np.inf)
    step = np.full(n_rows, 0.15)
    act = np.arange(n_rows)
    if n_grid == 3:
        grid0 = (0.25, 0.55, 0.85)
    elif n_grid == 2:
        grid0 = (0.1, 0.55, 0.55)
    else:
        grid0 = (0.55, 0.55, 0.55)
    n_eval = 0
    for g in range(n_grid):  # coarse start: alpha x (rb, rg, phi) corners
        n_eval += _LANES * n_rows
        for p in range(_LANES):
            for a in range(n_rows):
                k = p * n_rows + a
                z[0, k] = grid0[g]
                z[1, k] = 0.15 if p & 1 == 0 else 0.5
                z[2, k] = 0.15 if p & 2 == 0 else 0.5
                z[3, k] = 0.3 if p & 4 == 0 else 0.85
        _params_from_cube(z, bounds, par)
        par_t[:, :] = par
        _lanes_sse(Yt, act, m, init, par_t, horizon, work, sse, lt)
        for p in range(_LANES):
            for a in range(n_rows):
                if sse[p * n_rows + a] < best[a]:
                    best[a] = sse[p * n_rows + a]
                    best_z[:, a] = z[:, p * n_rows + a]
    for _ in range(max_iter):
        n_act = act.shape[0]
        if n_act == 0:
            break
        n_lanes = _LANES * n_act
        n_eval += n_lanes
        for p in range(_LANES):
            d = p // 2
            for a in range(n_act):
                k = p * n_act + a
                r = act[a]
                z[:, k] = best_z[:, r]
                z[d, k] = min(max(best_z[d, r] + (step[r] if p % 2 == 0 else -step[r]), 0.0), 1.0)
        _params_from_cube(z[:, :n_lanes], bounds, par[:, :n_lanes])
        par_t[:, :n_lanes] = par[:, :n_lanes]
        _lanes_sse(Yt, act, m, init, par_t[:, :n_lanes], horizon, work, sse, lt)
        keep = np.ones(n_act, dtype=np.bool_)
        for a in range(n_act):
            r = act[a]
            arg = -1
            for p in range(_LANES):
                if sse[p * n_act + a] < best[r] * (1.0 - min_gain):
                    best[r] = sse[p * n_act + a]
                    arg = p
            if arg >= 0:
                best_z[:, r] = z[:, arg * n_act + a]
            else:
                step[r] *= 0.5
                keep[a] = step[r] >= tol
        act = act[keep]
    return n_eval


@kernel
def _final_pass(Yt, m, init, par, step, hgrid, sse, lt, work, hmse, hcnt):
    """The one-step pass at the chosen parameters for every column of ``Yt`` (n_points, B),
    float64, the series as SIMD lanes (the one-step path of ``_lanes_sse``, same operations),
    and in the same pass the in-sample errors of the ``hgrid[q]``-step forecasts from every
    ``step``-th point (as ``hw_horizon_mse``, the per-series reference). Written: ``sse`` (B,),
    ``lt`` (2, B), ``work`` (m B) as ``_lanes_sse``; ``hmse`` (B, Q) the mean squared errors,
    ``hcnt`` (B, Q) how many (0: the mean is 0)."""
    n, n_lanes = Yt.shape
    n_h = hgrid.shape[0]
    S = np.empty((_ROWS + m, n_lanes))
    S[_ALPHA] = par[0]
    S[_BETA] = par[1]
    S[_GAMMA] = par[2]
    S[_PHI] = par[3]
    S[_LEV] = init[0]
    S[_TR] = init[1]
    for j in range(m):
        S[_ROWS + j] = init[2 + j]
    S[_PART] = 0.0
    acc = np.zeros(n_lanes)
    phi_h = np.empty((n_h, n_lanes))
    for k in range(n_lanes):
        total = 0.0
        pw = 1.0
        h = 0
        for q in range(n_h):
            while h < hgrid[q]:
                pw *= S[_PHI, k]
                total += pw
                h += 1
            phi_h[q, k] = total
    em = np.zeros((n_h, n_lanes))
    ec = np.zeros((n_h, n_lanes))
    j = 0
    for i in range(n):
        if i > 0 and i % step == 0:
            for q in range(n_h):
                t = i + hgrid[q] - 1
                if t < n:
                    jq = j + hgrid[q] - 1
                    if jq >= m:
                        jq -= m
                    jq += _ROWS
                    for k in range(n_lanes):
                        yt = Yt[t, k]
                        d = yt - S[_LEV, k] - phi_h[q, k] * S[_TR, k] - S[jq, k]
                        em[q, k] += d * d if yt == yt else 0.0
                        ec[q, k] += 1.0 if yt == yt else 0.0
        js = _ROWS + j
        for k in range(n_lanes):
            yi = Yt[i, k]
            f = S[_LEV, k] + S[_PHI, k] * S[_TR, k]
            d = yi - f - S[js, k]
            e = d if yi == yi else 0.0
            S[_PART, k] += e * e
            S[_LEV, k] = f + S[_ALPHA, k] * e
            S[_TR, k] = S[_PHI, k] * S[_TR, k] + S[_BETA, k] * e
            S[js, k] += S[_GAMMA, k] * e
        j += 1
        if j == m:
            j = 0
        if i & 255 == 255:
            for k in range(n_lanes):
                acc[k] += S[_PART, k]
                S[_PART, k] = 0.0
    for k in range(n_lanes):
        acc[k] += S[_PART, k]
    sse[:n_lanes] = acc
    lt[0, :n_lanes] = S[_LEV]
    lt[1, :n_lanes] = S[_TR]
    for j in range(m):
        work[j * n_lanes : (j + 1) * n_lanes] = S[_ROWS + j]
    for k in range(n_lanes):
        for q in range(n_h):
            hcnt[k, q] = np.int64(ec[q, k])
            hmse[k, q] = em[q, k] / ec[q, k] if ec[q, k] > 0 else 0.0


@kernel
def _fit_block(Y, m, bounds, search, calib, par_out, state_out, stats_out, hmse_out, hcnt_out):
    """Fit the rows of ``Y`` (a block of B series): the lockstep search (``_search_block``) in
    the dtype of ``search[6]`` (float32 or float64), then one float64 pass at the optimum for
    the one-step SSE and the final state.

    The float32 search runs on each series minus its initial level (the model is equivariant
    to a shift: errors, trend and seasonals do not change), so the rounding is relative to the
    series' variation, not its magnitude; squared errors are summed in float32 over at most 256
    steps, then in float64."""
    n_rows, n = Y.shape
    Yt = np.empty((n, n_rows))
    for r in range(n_rows):
        for i in range(n):
            Yt[i, r] = Y[r, i]
    init = np.empty((2 + m, n_rows))
    tmp = np.empty(2 + m)
    for r in range(n_rows):
        hw_init(Y[r], m, tmp)
        init[:, r] = tmp
    best_z = np.full((N_PARAMS, n_rows), 0.5)
    proto = search[6]  # a 0-length array of the search's dtype: one compiled search per width used
    shift = proto.itemsize == 4
    Ys = np.empty((n, n_rows), proto.dtype)
    for i in range(n):
        for r in range(n_rows):
            Ys[i, r] = Yt[i, r] - (init[0, r] if shift else 0.0)
    inits = np.empty((2 + m, n_rows), proto.dtype)
    inits[:, :] = init
    if shift:
        inits[0, :] = 0.0
    n_eval = _search_block(Ys, inits, m, bounds, search, best_z)
    par = np.empty((N_PARAMS, n_rows))
    sse = np.empty(n_rows)
    lt = np.empty((2, n_rows))
    work = np.empty(m * n_rows)
    _params_from_cube(best_z, bounds, par)
    # one-step: sigma^2; and the in-sample h-step errors of the interval calibration
    _final_pass(Yt, m, init, par, calib[0], calib[1], sse, lt, work, hmse_out, hcnt_out)
    for r in range(n_rows):
        par_out[r] = par[:, r]
        state_out[r, 0] = lt[0, r]
        state_out[r, 1] = lt[1, r]
        for j in range(m):
            state_out[r, 2 + j] = work[j * n_rows + r]
        n_valid = 0
        for v in Y[r]:
            if np.isfinite(v):
                n_valid += 1
        stats_out[r, 0] = sse[r]
        stats_out[r, 1] = n_valid
        stats_out[r, 2] = sse[r] / max(n_valid - N_PARAMS, 1)
    return n_eval + n_rows


@kernel_rows
def hw_fit_blocks(Y, m, bounds, search, calib, par_out, state_out, stats_out, hmse_out, hcnt_out):
    """Fit Holt-Winters per row of ``Y``, ``block`` series at a time in
    lockstep (see ``_fit_block``); same outputs as ``hw_fit_rows``, and ``hmse_out``,
    ``hcnt_out`` (n_series, Q) as ``hw_horizon_mse`` with ``calib = (step, hgrid)``; returns the number of
    candidate evaluations. ``search`` = (max_iter, tol, n_grid, min_gain, block, horizon, proto):
    compass iterations, the step below which a series stops (``_fit_one``: 0.004), alpha levels
    of the grid start (1: the cube coordinate of alpha at 0.55; 2: at 0.1 and 0.55; 3: at 0.25,
    0.55 and 0.85, as ``_fit_one``), the relative SSE gain a move must make (``_fit_one``: 0),
    series per block, the fit horizon (1: one-step errors; H: see ``hw_sse``), a 0-length
    float32 or float64 array whose dtype is the search's (the final pass is always float64; only
    the width used is compiled)."""
    block = search[4]
    n_eval = 0
    for r0 in range(0, Y.shape[0], block):
        r1 = min(r0 + block, Y.shape[0])
        n_eval += _fit_block(
            Y[r0:r1],
            m,
            bounds,
            search,
            calib,
            par_out[r0:r1],
            state_out[r0:r1],
            stats_out[r0:r1],
            hmse_out[r0:r1],
            hcnt_out[r0:r1],
        )
    return n_eval


@kernel
def hw_forecast_rows(par, state, n_obs, m, mean_out, sd_out):
    """Point forecasts and their standard deviations for horizons 1..H per row.

    ``mean = l + (phi + ... + phi^h) b + s`` at the phase of time ``n_obs - 1 + h``;
    ``var = sigma^2 (1 + sum_{j<h} c_j^2)``, ``c_j = alpha + beta phi_j + gamma [j mod m = 0]``
    (Hyndman et al. 2008, class 1). ``sd_out`` holds sigma^2 in column 0 on entry.
    """
    horizon = mean_out.shape[1]
    for r in range(par.shape[0]):
        alpha = par[r, 0]
        beta = par[r, 1]
        gamma = par[r, 2]
        phi = par[r, 3]
        sigma2 = sd_out[r, 0]
        phi_h = 0.0
        phi_pow = 1.0
        acc = 1.0
        for h in range(1, horizon + 1):
            phi_pow *= phi
            phi_h += phi_pow
            mean_out[r, h - 1] = state[r, 0] + phi_h * state[r, 1] + state[r, 2 + (n_obs - 1 + h) % m]
            sd_out[r, h - 1] = np.sqrt(sigma2 * acc)
            c = alpha + beta * phi_h + (gamma if h % m == 0 and m > 1 else 0.0)
            acc += c * c


@kernel
def hw_first_crossing(par, state, sigma, n_obs, m, threshold, horizon, seed, first_out):
    """Simulate ``first_out.shape[1]`` sample paths of ``horizon`` steps from each row's final
    state (Gaussian errors of s.d. ``sigma[r]``) and record in ``first_out[r, k]`` the first step
    (1-based) at which path ``k`` reaches ``threshold[r]``, or 0 if it does not."""
    np.random.seed(seed)
    n_paths = first_out.shape[1]
    for r in range(par.shape[0]):
        alpha = par[r, 0]
        beta = par[r, 1]
        gamma = par[r, 2]
        phi = par[r, 3]
        seas = np.empty(m)
        for k in range(n_paths):
            lev = state[r, 0]
            tr = state[r, 1]
            for j in range(m):
                seas[j] = state[r, 2 + j]
            first_out[r, k] = 0
            for h in range(1, horizon + 1):
                ph = (n_obs - 1 + h) % m
                f = lev + phi * tr
                e = sigma[r] * np.random.standard_normal()
                yh = f + seas[ph] + e
                if yh >= threshold[r]:
                    first_out[r, k] = h
                    break
                lev = f + alpha * e
                tr = phi * tr + beta * e
                seas[ph] += gamma * e


@kernel_rows
def hw_horizon_mse(Y, m, par, step, hgrid, mse_out, count_out):
    """In-sample mean squared errors of the ``hgrid[k]``-step forecasts (``1 <= hgrid[k] <= m``
    when ``m > 1``) made from every ``step``-th point (origins ``step, 2 step, ...``), per row of
    ``Y`` at the parameters ``par`` (n_series, 4), from ``hw_init``'s initial states.

    The forecast from origin ``o`` (the state after ``o`` points) for time ``o + h - 1`` is
    ``l_o + (phi + ... + phi^h) b_o + s``, ``s`` the ring's entry for that time's phase, last
    changed at ``o + h - 1 - m < o``. A missing target adds no error; a missing point moves the
    state with the forecast. Written: ``mse_out`` (n_series, K), ``count_out`` (n_series, K)
    the errors behind each mean (0: the mean is 0)."""
    n_series, n = Y.shape
    n_h = hgrid.shape[0]
    init = np.empty(2 + m)
    seas = np.empty(m)
    phi_h = np.empty(n_h)
    for r in range(n_series):
        y = Y[r]
        alpha = par[r, 0]
        beta = par[r, 1]
        gamma = par[r, 2]
        phi = par[r, 3]
        for k in range(n_h):
            acc = 0.0
            pw = 1.0
            for _ in range(hgrid[k]):
                pw *= phi
                acc += pw
            phi_h[k] = acc
        hw_init(y, m, init)
        lev = init[0]
        tr = init[1]
        for j in range(m):
            seas[j] = init[2 + j]
        mse_out[r, :] = 0.0
        count_out[r, :] = 0
        j = 0
        for i in range(n):
            if i > 0 and i % step == 0:
                for k in range(n_h):
                    t = i + hgrid[k] - 1
                    if t < n and np.isfinite(y[t]):
                        js = j + hgrid[k] - 1
                        if js >= m:
                            js -= m
                        e = y[t] - lev - phi_h[k] * tr - seas[js]
                        mse_out[r, k] += e * e
                        count_out[r, k] += 1
            yi = y[i]
            f = lev + phi * tr
            if np.isfinite(yi):
                e = yi - f - seas[j]
                lev = f + alpha * e
                tr = phi * tr + beta * e
                seas[j] += gamma * e
            else:
                lev = f
                tr = phi * tr
            j += 1
            if j == m:
                j = 0
        for k in range(n_h):
            if count_out[r, k] > 0:
                mse_out[r, k] /= count_out[r, k]
