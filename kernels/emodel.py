"""The E-model of ITU-T G.107, simplified: R-factor and MOS from mean latency, jitter and loss.

Used by the KPI layer for the ``mos_emodel`` KPI (``telcoanalytics.kpi.emodel``).
"""

import math

import numpy as np

from ._numba import kernel


@kernel
def kpi_emodel_mos(latency_ms, jitter_ms, loss_pct, ie, bpl, r_out, mos_out):
    """Simplified ITU-T G.107 E-model: R-factor and MOS from mean latency, jitter and loss.

    ``d = latency + 2 jitter`` (one-way delay plus a jitter buffer of twice the jitter);
    ``Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)`` (Cole & Rosenbluth 2001, a fit of the G.107
    delay impairment ``Idte + Idle + Idd`` at default parameters: within 1 R point of it for
    ``d <= 300`` ms, 3 points at 400 ms, growing beyond);
    ``Ie_eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)`` with random loss (BurstR = 1) and the
    codec's ``ie`` / ``bpl`` (G.711 with packet loss concealment: 0 and 25.1, ITU-T G.113
    Appendix I); ``R = 93.2 - Id - Ie_eff`` (defaults Ro - Is = 93.2, A = 0);
    ``MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R)``, 1 for R < 0 and 4.5 for R > 100.
    NaN in any input gives NaN.
    """
    for i in range(latency_ms.shape[0]):
        d = latency_ms[i] + 2.0 * jitter_ms[i]
        ppl = loss_pct[i]
        if not (math.isfinite(d) and math.isfinite(ppl)):
            r_out[i] = np.nan
            mos_out[i] = np.nan
            continue
        i_d = 0.024 * d
        if d > 177.3:
            i_d += 0.11 * (d - 177.3)
        ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl)
        r = 93.2 - i_d - ie_eff
        r_out[i] = r
        if r < 0.0:
            mos_out[i] = 1.0
        elif r > 100.0:
            mos_out[i] = 4.5
        else:
            mos_out[i] = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
