"""Evaluation ticks of the SLA monitor (a mixin of ``SlaMonitor``): conditions of every lifecycle at a
minute boundary, one kernel call stepping all lifecycles (and their committed copies) from the
bank (:class:`~telcoanalytics.sla.lifecycle._Bank`), and the events of their transitions."""

from __future__ import annotations

from kernels import kpi as K
from kernels import sla as SK
from telcoanalytics.kpi import MINUTE_MS
from telcoanalytics.sla.lifecycle import _Bank, _Eval, _fmt_min
from telcoanalytics.sla.rules import EVENT_STATES, SlaEvent


class _Ticks:
    """Per-tick evaluation and lifecycle steps."""

    #: False: the committed copies, the ring and the lifecycles in three steps (kept for A/B
    #: measurements and equality tests)
    ring_step = True

    def _event(self, ev: _Eval, node, kind, start, value, worst, tick, note="") -> SlaEvent:
        t = tick * MINUTE_MS
        state = EVENT_STATES[kind]
        sid = int(self.topology.ids[ev.level][node])
        if ev.kind == "burn":
            desc = (
                f"{ev.kpi} error budget burning at {value:.3g}x (>= {ev.threshold:g}x over "
                f"{_fmt_min(ev.burn[2])} and {_fmt_min(ev.burn[3])}) on {ev.level} {sid}"
            )
        else:
            desc = (
                f"{ev.kpi} {value:.4g} {ev.comparator} {ev.threshold:g} over {_fmt_min(ev.window_min)} "
                f"on {ev.level} {sid}"
            )
        if state == "resolved" and ev.kind == "threshold":
            desc = (
                f"{ev.kpi} {value:.4g} back on the healthy side of {ev.clear_threshold:g} over "
                f"{_fmt_min(ev.window_min)} on {ev.level} {sid}, worst was {worst:.4g}"
            )
        elif state == "resolved":
            desc = f"{ev.kpi} error budget burn back below {ev.threshold:g}x on {ev.level} {sid}"
        if kind == K.EV_CANCELLED:
            note = note or "pending violation ended before firing"
        summary = f"{state}: {desc}" + (f" ({note})" if note else "")
        return SlaEvent(
            ev.name,
            ev.kpi,
            ev.severity,
            state,
            ev.level,
            sid,
            ev.service,
            t,
            start,
            t if state == "resolved" else -1,
            value,
            ev.threshold,
            worst,
            summary,
            ev.window_min,
            ev.comparator,
            "x" if ev.kind == "burn" else self.kpis[ev.kpi].unit,
            ev.kind,
        )

    def _emit(self, ev: _Eval, raw, tick, out: list, note=""):
        for node, kind, start, value, worst in raw:
            if kind == K.EV_FIRING:
                ev.fired.setdefault(node, {})[start] = tick
            if kind == K.EV_CANCELLED and not self.emit_cancelled:
                continue
            out.append(self._event(ev, node, kind, start, value, worst, tick, note))

    def _evaluate_tick(self, tick: int, cached: list | None = None) -> list[SlaEvent]:
        """One tick of every lifecycle; ``cached``: each lifecycle's (codes, values) of an earlier
        tick whose inputs equal this one's (a quiet stretch, :mod:`telcoanalytics.sla.quiet`).

        The conditions of all lifecycles are laid end to end in the bank (:class:`_Bank`), and
        one kernel call steps them all in one pass over the entries
        (:func:`kernels.sla.sla_tick_step_ring`: per entry the committed copy over the conditions
        leaving the ring, this tick's conditions into the ring, the lifecycle over them): Python
        only for the transitions."""
        out: list[SlaEvent] = []
        L = self.reeval_minutes
        bank = self._bank
        if bank is None or not bank.intact(self.evals):
            bank = self._bank = _Bank(self.evals, max(L, 1))
            self._chg_reset()  # the new bank holds no conditions yet
        if cached is None:
            self.store.slide_running(tick)  # every rule window of a ring moved in one pass
            cached = self._tick_conditions = []  # views of the bank: read before the next tick only
            carried = self._tick_kept = self._carried(tick)  # rules whose inputs did not change keep theirs
            for ev, o, m, kept in zip(self.evals, bank.ptr[:-1], bank.ptr[1:], carried):
                codes, values = bank.cur_codes[o:m], bank.cur_values[o:m]
                if kept is not True and kept is not False:  # the elements whose inputs changed
                    if self.kpis[ev.kpi].kind == "quantile":
                        self._quantile_rows(ev, tick, kept, codes, values)
                    else:
                        self._fused_rows(ev, tick, kept, codes, values)
                elif not kept and not (self.fused_conditions and self._fused_codes(ev, tick, codes, values)):
                    c, v = self._codes(ev, tick)
                    codes[:], values[:] = c, v
                cached.append((codes, values))
            self._chg_done(tick)
        else:
            for (codes, values), o, m in zip(cached, bank.ptr[:-1], bank.ptr[1:]):
                bank.cur_codes[o:m] = codes
                bank.cur_values[o:m] = values
        if L and not self.ring_step:
            self._step_in_three(tick, L)
        if L and self.ring_step:
            pos = tick % L
            old_tick = tick - L
            if pos == 0:  # reads the lifecycles before this tick's step
                for ev in self.evals:
                    if ev.fired:
                        self._forget_fired(ev, old_tick)
            # one pass: the committed copies over the conditions leaving the ring (their transitions
            # are not emitted), this tick's conditions into the ring, the lifecycles over them
            k = SK.sla_tick_step_ring(
                bank.arrays("state"),
                bank.arrays("committed"),
                bank.params,
                (bank.codes, bank.values),
                pos,
                (bank.cur_codes, bank.cur_values),
                tick * MINUTE_MS,
                old_tick * MINUTE_MS,
                old_tick >= self.first_tick,
                bank.out,
            )
        else:
            k = SK.sla_tick_step(
                bank.arrays("state"), bank.params, bank.cur_codes, bank.cur_values, tick * MINUTE_MS, bank.out
            )
        if k:
            rule, node, kind, start, value, worst = (a[:k].tolist() for a in bank.out)
            for j in range(k):
                self._emit(self.evals[rule[j]], [(node[j], kind[j], start[j], value[j], worst[j])], tick, out)
        return out

    def _step_in_three(self, tick: int, L: int):
        """The committed copies' step, the ring row assignment, as three steps (``ring_step`` False):
        what :func:`kernels.sla.sla_tick_step_ring` does in one pass."""
        bank = self._bank
        pos = tick % L
        old_tick = tick - L
        if old_tick >= self.first_tick:  # transitions of the committed copies are not emitted
            SK.sla_tick_step(
                bank.arrays("committed"), bank.params, bank.codes[pos], bank.values[pos], old_tick * MINUTE_MS, bank.out
            )
        if pos == 0:
            for ev in self.evals:
                if ev.fired:
                    self._forget_fired(ev, old_tick)
        bank.codes[pos] = bank.cur_codes
        bank.values[pos] = bank.cur_values

    @staticmethod
    def _forget_fired(ev: _Eval, old_tick: int):
        """Drop firing records older than the re-evaluation horizon (except the open episode's)."""
        for node in list(ev.fired):
            keep = {
                st: t
                for st, t in ev.fired[node].items()
                if t > old_tick or (ev.state.state[node] != K.ST_INACTIVE and st == ev.state.start[node])
            }
            if keep:
                ev.fired[node] = keep
            else:
                del ev.fired[node]
