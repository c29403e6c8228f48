"""Quiet stretches of the SLA monitor (a mixin of ``SlaMonitor``): a collection gap costs the
work it holds, not one evaluation per minute.

When no data arrives, every input of a tick is known to equal the previous tick's once the minute
ring's last minute with data lies more than a ring length behind the tick (no window or history
reads a held minute any more) and the SLO short windows have been spanned; the hour ring is
then read the same way until the next hour boundary (and not at all once the longest hour window
has passed its last held hour). Over such a stretch the condition codes and values of every
lifecycle are those of its first tick, so the monitor steps the lifecycles with them (no KPI
evaluation) until every lifecycle, its committed copy and its ring of recent codes are at a fixed
point of those conditions (:func:`kernels.sla.sla_settled`), then jumps to the stretch's end. The
events, states and rings are exactly those of the minute-by-minute path; a gap of days costs one
evaluation per hour boundary while the hour windows still hold data, and a fixed amount after.
"""

from __future__ import annotations

import numpy as np

from kernels import sla as SK
from telcoanalytics.sla.rules import SlaEvent


class _QuietTicks:
    """Ticks whose inputs equal an earlier tick's: stepped from cached conditions, then skipped."""

    def _quiet_until(self, tick: int, wm_tick: int) -> int:
        """Last tick ``<= wm_tick`` whose inputs equal those of ``tick`` (``tick`` when the next differs)."""
        st = self.store
        if wm_tick <= tick or st.head_minute < 0 or tick - st.minute_ring <= st.head_minute:
            return tick  # the minute ring is still read (or will be: its last minute is near)
        short = [ev.burn[3] for ev in self.evals if ev.burn is not None]
        if short and tick - st.first_minute < max(short):
            return tick  # an SLO pair is still waiting for its short window to be spanned
        # hours an SLO window reads from the hour ring (windows too long for the minute ring)
        n_h = [
            -(-w // 60)
            for ev in self.evals
            if ev.burn
            for w in ev.burn[2:]
            if w + self.reeval_minutes + 1 > st.minute_ring
        ]
        if not n_h or not st.hour_columns:
            return wm_tick
        held = st.slot_hour[st.slot_hour >= 0]
        last_h = (tick - 1) // 60
        if len(held) == 0 or last_h - max(n_h) + 1 > int(held.max()):
            return wm_tick  # no hour window reaches a held hour, now or later
        return min(wm_tick, 60 * last_h + 60)  # same hours read until the next hour boundary

    def _coast(self, tick: int, end: int) -> list[SlaEvent]:
        """Ticks ``tick + 1 .. end`` with the conditions of ``tick`` (just evaluated)."""
        cached = self._tick_conditions
        out: list[SlaEvent] = []
        for t in range(tick + 1, end + 1):
            if self._settled(cached):
                self._skip_settled(t, end)
                break
            out += self._evaluate_tick(t, cached)
            self.last_tick = t
        self.last_tick = end
        return out

    def _settled(self, cached) -> bool:
        """Whether further ticks with the ``cached`` conditions change nothing but the tick count."""
        L = self.reeval_minutes
        for ev, (codes, values) in zip(self.evals, cached):
            v = np.ascontiguousarray(values, dtype=np.float64)
            if not SK.sla_settled(codes, v, ev.sign, ev.state.state, ev.state.count, ev.state.worst):
                return False
            if not L:
                continue
            v32 = v.astype(ev.values.dtype)
            if not (np.array_equal(ev.codes, np.broadcast_to(codes, ev.codes.shape))) or not np.array_equal(
                ev.values, np.broadcast_to(v32, ev.values.shape), equal_nan=True
            ):
                return False  # the committed copy still has other ticks' conditions to step
            vc = v32.astype(np.float64)
            if not SK.sla_settled(codes, vc, ev.sign, ev.committed.state, ev.committed.count, ev.committed.worst):
                return False
        return True

    def _skip_settled(self, t_from: int, t_to: int):
        """Ticks ``t_from .. t_to`` of settled lifecycles: only the forgetting of old firing
        records happens (as at each tick whose ring position is 0); rings already hold them."""
        L = self.reeval_minutes
        if not L:
            return
        t0 = t_to - t_to % L  # the last tick at ring position 0
        if t0 < t_from:
            return
        for ev in self.evals:
            if ev.fired:
                self._forget_fired(ev, t0 - L)
