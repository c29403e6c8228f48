"""A robust event-time clock, and the ``time_in_future`` side output for rows ahead of it.

A pipeline's watermark used to follow the single largest event time seen, so one row dated a day
(or a century) ahead dragged it along: every later row looked late, silence detection saw the
whole network go quiet, and advancing to the new watermark meant walking minute by minute to
the year 2099. :class:`EventClock` instead follows what most rows say:

* **Clock.** After each batch (rows in arrival order) the clock is the largest of its previous
  value and the ``(outliers + 1)``-th largest event time among the last ``window`` rows seen (all
  sources together). Up to ``outliers`` rows dated ahead among the last ``window`` cannot move
  it; when the data really moves on (a feed resumes after an outage), the clock follows as soon
  as ``outliers + 1`` of the recent rows agree. Before ``outliers + 1`` rows were seen the clock is
  unset.
* **Skew.** Rows more than ``max_skew_ms`` ahead of the clock (default 5 min) are not handed to
  the analyses yet: they wait in the side output and are *admitted* as soon as the clock comes
  within ``max_skew_ms`` of them (their time has come; they are then as fresh as the rows around
  them).
* **Horizon.** Rows more than ``future_horizon_ms`` ahead of the clock (default 6 h) are not
  kept waiting: they are quarantined with reason ``time_in_future``.

Counts: ``n_held`` rows went to the side output, ``n_admitted`` came back out, ``n_rejected``
were quarantined; ``held_rows`` are waiting now. Memory: the rows waiting, which the horizon
bounds.

Examples
--------
>>> import numpy as np
>>> c = EventClock(max_skew_ms=60_000, future_horizon_ms=3_600_000, window=8, outliers=2)
>>> t = 1_700_000_000_000 + np.arange(8) * 1000
>>> t[3] += 600_000      # ten minutes ahead: waits
>>> t[5] += 86_400_000   # a day ahead: quarantined
>>> c.observe(t) == 1_700_000_000_000 + 7000
True
>>> now, hold, reject = c.classify(t)
>>> hold.nonzero()[0].tolist(), reject.nonzero()[0].tolist()
([3], [5])
"""

from __future__ import annotations

import numpy as np

from kernels.validate import clock_route

DEFAULT_MAX_SKEW_MS = 300_000
"""Rows more than this far ahead of the clock wait in the ``time_in_future`` side output (5 min)."""

DEFAULT_FUTURE_HORIZON_MS = 6 * 3_600_000
"""Rows more than this far ahead of the clock are quarantined as ``time_in_future`` (6 h)."""

_NONE = int(np.iinfo(np.int64).min)

__all__ = ["DEFAULT_MAX_SKEW_MS", "DEFAULT_FUTURE_HORIZON_MS", "EventClock"]


class EventClock:
    """Robust event-time clock with a side output for rows ahead of it (see the module docstring).

    Parameters
    ----------
    max_skew_ms : int
        Rows ahead of the clock by more than this wait until the clock comes within it.
    future_horizon_ms : int
        Rows ahead of the clock by more than this are rejected (``time_in_future``); at least
        ``max_skew_ms``.
    window : int
        Recent rows the clock looks at.
    outliers : int
        Rows dated ahead among the last ``window`` that cannot move the clock (< ``window``).
    """

    def __init__(
        self,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
        future_horizon_ms: int = DEFAULT_FUTURE_HORIZON_MS,
        window: int = 64,
        outliers: int = 7,
    ):
        for name, v in (("max_skew_ms", max_skew_ms), ("future_horizon_ms", future_horizon_ms)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative int (ms), got {v!r}")
        if future_horizon_ms < max_skew_ms:
            raise ValueError(f"future_horizon_ms ({future_horizon_ms}) must be >= max_skew_ms ({max_skew_ms})")
        if not (isinstance(window, int) and isinstance(outliers, int) and 0 <= outliers < window):
            raise ValueError(f"need ints 0 <= outliers < window, got outliers={outliers!r} window={window!r}")
        self.max_skew_ms = int(max_skew_ms)
        self.future_horizon_ms = int(future_horizon_ms)
        self.window = window
        self.outliers = outliers
        self.now_ms = _NONE
        self._recent = np.zeros(0, np.int64)
        self._held: list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]] = []  # (source, rows, index, time)
        self.n_held = 0
        self.n_admitted = 0
        self.n_rejected = 0

    @property
    def held_rows(self) -> int:
        """Rows waiting in the side output now."""
        return sum(len(h[1]) for h in self._held)

    def observe(self, t: np.ndarray) -> int:
        """Advance the clock with the event times of one batch (arrival order); returns the clock."""
        t = np.asarray(t, dtype=np.int64)
        if not len(t):
            return self.now_ms
        w = np.concatenate([self._recent, t[-self.window :]])[-self.window :]
        self._recent = w
        k = self.outliers + 1
        if len(w) >= k:
            cand = int(np.partition(w, len(w) - k)[len(w) - k])
            self.now_ms = max(self.now_ms, cand)
        return self.now_ms

    def observe_route(self, t: np.ndarray, idx: np.ndarray, route: np.ndarray, counts: np.ndarray):
        """:meth:`observe` one batch and, in the same pass over it, route its rows: returns ``(node,
        t_max)``, ``node = route[idx]`` for every row and the largest event time; ``counts[node + 1]``
        is incremented for every row (``kernels.validate.clock_route``)."""
        t = np.asarray(t, dtype=np.int64)
        if not len(t):
            return np.zeros(0, np.int64), _NONE
        node = np.empty(len(t), dtype=np.int64)
        recent = np.empty(min(self.window, len(self._recent) + len(t)), dtype=np.int64)
        cand, t_max = clock_route(t, self._recent, self.outliers + 1, idx, route, node, counts, recent)
        self._recent = recent
        self.now_ms = max(self.now_ms, int(cand))
        return node, int(t_max)

    def classify(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks ``(now, hold, reject)`` of event times against the clock: in time, waiting, too far ahead."""
        t = np.asarray(t, dtype=np.int64)
        if self.now_ms == _NONE:
            z = np.zeros(len(t), bool)
            return ~z, z, z.copy()
        ahead = t - self.now_ms
        reject = ahead > self.future_horizon_ms
        hold = (ahead > self.max_skew_ms) & ~reject
        return ~(hold | reject), hold, reject

    def hold(self, source: str, rows: np.ndarray, element_index: np.ndarray | None, t: np.ndarray) -> None:
        """Put rows (canonical, with their element indices and event times) in the side output."""
        if len(rows):
            self._held.append((source, rows, element_index, np.asarray(t, np.int64)))
            self.n_held += len(rows)

    def due(self) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        """Remove and return the waiting rows whose time has come, as ``(source, rows, element_index)``."""
        if not self._held or self.now_ms == _NONE:
            return []
        limit = self.now_ms + self.max_skew_ms
        out, keep = [], []
        for source, rows, idx, t in self._held:
            m = t <= limit
            if m.all():
                out.append((source, rows, idx))
            elif m.any():
                out.append((source, rows[m], None if idx is None else idx[m]))
                keep.append((source, rows[~m], None if idx is None else idx[~m], t[~m]))
            else:
                keep.append((source, rows, idx, t))
        self._held = keep
        self.n_admitted += sum(len(o[1]) for o in out)
        return out

    def to_state(self) -> dict:
        """The clock's whole state, waiting rows included (for checkpoints)."""
        held = {
            str(k): {
                "source": src,
                "rows": rows,
                "idx": np.full(len(rows), -1, np.int64) if idx is None else idx,
                "t": t,
            }
            for k, (src, rows, idx, t) in enumerate(self._held)
        }
        return {
            "settings": [self.max_skew_ms, self.future_horizon_ms, self.window, self.outliers],
            "now_ms": int(self.now_ms),
            "recent": self._recent,
            "counts": [self.n_held, self.n_admitted, self.n_rejected],
            "held": held,
        }

    @classmethod
    def from_state(cls, d: dict) -> EventClock:
        """Rebuild a clock saved by :meth:`to_state`."""
        c = cls(*(int(x) for x in d["settings"]))
        c.now_ms = int(d["now_ms"])
        c._recent = np.asarray(d["recent"], np.int64)
        c.n_held, c.n_admitted, c.n_rejected = (int(x) for x in d["counts"])
        c._held = [
            (str(h["source"]), h["rows"], h["idx"], np.asarray(h["t"], np.int64))
            for _, h in sorted(d["held"].items(), key=lambda kv: int(kv[0]))
        ]
        return c

    def summary(self) -> str:
        """One line for reports."""
        return (
            f"time_in_future side output (rows > {self.max_skew_ms / 60000:g} min ahead of the robust clock): "
            f"held {self.n_held:,}, admitted later {self.n_admitted:,}, still waiting {self.held_rows:,}; "
            f"quarantined (> {self.future_horizon_ms / 3_600_000:g} h ahead) {self.n_rejected:,}"
        )
