"""Per-element reporting intervals and silence detection (suspected failures, collection gaps)."""

from __future__ import annotations

import numpy as np

from kernels import anomaly_events as _ke
from kernels import detect as _k
from kernels import silence as _ks
from telcoanalytics.anomaly.config import _as_1d, _check


class SilenceMonitor:
    """Per-element reporting intervals and silence detection.

    Parameters
    ----------
    n_elements : int
        Dense elements tracked.
    gap_factor : float
        An element is silent when ``now - last_report > gap_factor * mean_gap + slack_ms``.
    slack_ms : int
        Allowance for jitter and transport delay added to the expected gap.
    min_reports : int
        Reports needed before an element's gap is trusted.
    gap_alpha : float
        EW factor of the mean gap between distinct report times.

    Notes
    -----
    ``mean_gap`` is the EW mean of the gaps between distinct report timestamps of the element
    (with 5-minute PM files and ``gap_factor = 1``, ``slack_ms = 60 s`` an element is flagged
    about one minute after its first missing report).
    """

    def __init__(
        self,
        n_elements: int,
        gap_factor: float = 1.0,
        slack_ms: int = 60_000,
        min_reports: int = 3,
        gap_alpha: float = 0.1,
    ):
        _check(
            int(n_elements) == n_elements and n_elements >= 0,
            f"n_elements must be a non-negative integer, got {n_elements!r}",
        )
        _check(gap_factor > 0, f"gap_factor must be > 0, got {gap_factor}")
        _check(slack_ms >= 0, f"slack_ms must be >= 0, got {slack_ms}")
        _check(min_reports >= 2, f"min_reports must be >= 2 (a gap needs two reports), got {min_reports}")
        _check(0 < gap_alpha <= 1, f"gap_alpha must be in (0, 1], got {gap_alpha}")
        self.n_elements = int(n_elements)
        self.gap_factor = float(gap_factor)
        self.slack_ms = int(slack_ms)
        self.min_reports = int(min_reports)
        self.gap_alpha = float(gap_alpha)
        self.last_ts = np.full(self.n_elements, -1, dtype=np.int64)
        self.gap_ms = np.zeros(self.n_elements)
        self.n_reports = np.zeros(self.n_elements, dtype=np.int64)
        self.silent_since = np.full(self.n_elements, -1, dtype=np.int64)  # -1: not flagged
        self._watching = False
        # first report after a silence (event time), watched from the flag until release()
        self.back_from = np.full(self.n_elements, -1, dtype=np.int64)  # -1: not watched
        self.back_ts = np.full(self.n_elements, -1, dtype=np.int64)  # -1: none seen yet
        self.flag_gap_ms = np.zeros(self.n_elements)  # the expected gap when the silence was flagged

    def observe(self, ts_ms, elem):
        """Record reports of dense elements ``elem`` at ``ts_ms`` (any order within the batch)."""
        ts_ms = _as_1d("ts_ms", ts_ms, np.int64)
        elem = _as_1d("elem", elem, np.int64)
        _check(len(ts_ms) == len(elem), f"ts_ms and elem differ in length: {len(ts_ms)} vs {len(elem)}")
        if len(elem) and (elem.min() < 0 or elem.max() >= self.n_elements):
            raise ValueError(
                f"elem contains {int(elem[(elem < 0) | (elem >= self.n_elements)][0])} but the "
                f"monitor has {self.n_elements} elements; call grow()"
            )
        self._observe(ts_ms, elem)

    def _observe(self, ts_ms: np.ndarray, elem: np.ndarray, ts_sorted: bool = False) -> None:
        """:meth:`observe` of checked inputs (contiguous int64 arrays of one length, elements in
        range; ``ts_sorted``: ``ts_ms`` is known to be non-decreasing)."""
        if self._watching:  # the first report after each watched silence, in any arrival order
            _ks.resume_update(ts_ms, elem, self.back_from, self.back_ts)
        if not ts_sorted and not _ke.is_sorted(ts_ms):  # arrivals in time order (a stable sort keeps ties as given)
            order = np.argsort(ts_ms, kind="stable")
            ts_ms, elem = ts_ms[order], elem[order]
        _k.arrivals_update(ts_ms, elem, self.gap_alpha, self.last_ts, self.gap_ms, self.n_reports)

    def expected_by(self) -> np.ndarray:
        """Time by which each element's next report is due (int64 ms; -1 if not yet trusted)."""
        due = self.last_ts + np.ceil(self.gap_factor * self.gap_ms).astype(np.int64) + self.slack_ms
        return np.where(self.n_reports >= self.min_reports, due, -1)

    def check(self, now_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Elements that became silent and elements that resumed since the last check.

        Returns
        -------
        (newly_silent, resumed) : int64 arrays of dense element indices
        """
        newly, resumed = np.empty(self.n_elements, dtype=np.int64), np.empty(self.n_elements, dtype=np.int64)
        n_new, n_res, watching = _ks.check_due(
            int(now_ms), self.gap_factor, self.slack_ms, self.min_reports, self.last_ts, self.gap_ms,
            self.n_reports, self.silent_since, self.back_from, self.back_ts, self.flag_gap_ms, newly, resumed,
        )  # fmt: skip
        self._watching = bool(watching)
        return newly[:n_new], resumed[:n_res]

    def resume_ms(self, elem) -> np.ndarray:
        """Event time of the first report after each element's latest silence (the resume time,
        whatever order the reports arrived in and whenever the checks ran); -1 if none yet.

        Examples
        --------
        >>> m = SilenceMonitor(1, min_reports=2)
        >>> m.observe([0, 60_000], [0, 0])
        >>> m.check(300_000)[0].tolist()  # silent: next report was due by 180 s
        [0]
        >>> m.observe([400_000, 350_000], [0, 0])  # back, the later report arrives first
        >>> m.check(410_000)[1].tolist(), m.resume_ms([0]).tolist()
        ([0], [350000])
        """
        return self.back_ts[_as_1d("elem", elem, np.int64)]

    def release(self, elem) -> None:
        """Stop watching for the first report after the silence of ``elem`` (its silence was closed)."""
        self.back_from[_as_1d("elem", elem, np.int64)] = -1
        self._watching = bool((self.back_from >= 0).any())

    @property
    def silent(self) -> np.ndarray:
        """Boolean mask of elements currently flagged silent."""
        return self.silent_since >= 0

    def grow(self, n_elements: int):
        """Track more elements (new ones start unknown)."""
        _check(n_elements >= self.n_elements, f"grow() cannot shrink from {self.n_elements} to {n_elements}")
        k = n_elements - self.n_elements
        self.last_ts = np.concatenate([self.last_ts, np.full(k, -1, dtype=np.int64)])
        self.gap_ms = np.concatenate([self.gap_ms, np.zeros(k)])
        self.n_reports = np.concatenate([self.n_reports, np.zeros(k, dtype=np.int64)])
        self.silent_since = np.concatenate([self.silent_since, np.full(k, -1, dtype=np.int64)])
        self.back_from = np.concatenate([self.back_from, np.full(k, -1, dtype=np.int64)])
        self.back_ts = np.concatenate([self.back_ts, np.full(k, -1, dtype=np.int64)])
        self.flag_gap_ms = np.concatenate([self.flag_gap_ms, np.zeros(k)])
        self.n_elements = n_elements

    def to_state(self) -> dict:
        """Checkpoint: numpy arrays and plain scalars only."""
        return {
            "kind": "SilenceMonitor",
            "gap_factor": self.gap_factor,
            "slack_ms": self.slack_ms,
            "min_reports": self.min_reports,
            "gap_alpha": self.gap_alpha,
            "last_ts": self.last_ts.copy(),
            "gap_ms": self.gap_ms.copy(),
            "n_reports": self.n_reports.copy(),
            "silent_since": self.silent_since.copy(),
            "back_from": self.back_from.copy(),
            "back_ts": self.back_ts.copy(),
            "flag_gap_ms": self.flag_gap_ms.copy(),
        }

    @classmethod
    def from_state(cls, d: dict) -> SilenceMonitor:
        """Restore from :meth:`to_state` output."""
        _check(d.get("kind") == "SilenceMonitor", f"state is not a SilenceMonitor checkpoint (kind={d.get('kind')!r})")
        m = cls(len(d["last_ts"]), d["gap_factor"], d["slack_ms"], d["min_reports"], d["gap_alpha"])
        m.last_ts = np.array(d["last_ts"], dtype=np.int64)
        m.gap_ms = np.array(d["gap_ms"], dtype=np.float64)
        m.n_reports = np.array(d["n_reports"], dtype=np.int64)
        m.silent_since = np.array(d["silent_since"], dtype=np.int64)
        # checkpoints written before resume times were tracked: watch the silences still open
        m.back_from = np.array(d.get("back_from", m.silent_since), dtype=np.int64)
        m.back_ts = np.array(d.get("back_ts", np.full(len(m.last_ts), -1)), dtype=np.int64)
        m.flag_gap_ms = np.array(d.get("flag_gap_ms", m.gap_ms), dtype=np.float64)
        m._watching = bool((m.back_from >= 0).any())
        return m
