"""Per-slot causal detector: one kernel call per batch over all slots (see ``kernels.detect``)."""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from kernels import detect as _k
from telcoanalytics.anomaly.config import ANOMALY_DTYPE, NAME_LEN, DetectorConfig, _as_1d, _check, to_ms

_NO_MULT = np.empty(0)
"""Empty threshold multiplier: the kernel then uses 1.0 for every event without reading a stream."""
_EP_DTYPES = (np.int64, np.int8, np.int64, np.int64, np.float64, np.int8, np.float64, np.float64, np.float64)
"""Episode row buffers: index, kind, start, end, peak, direction, baseline, threshold, value."""


_REC = 16
"""Doubles per slot in the packed record (128 bytes, two cache lines): hot state ``st`` (8),
score gate (2), per-slot settings ``sp`` (4), latest event time (int64), then the observation
count (int32), alarm run (int16) and open direction (int8) in the last eight bytes."""
_PACKED = ("st", "gate", "nobs", "last_t", "run", "open_dir")
"""State fields that are views into the packed record (with ``sp``)."""


def _new_state(n: int, n_day: int, n_week: int) -> tuple:
    """Zeroed detector state of ``n`` slots and the per-slot settings array.

    Every field the kernel reads for each event (the hot state, the gate, the settings, the event
    time, count, run and direction) is a strided view into one 128-byte record per slot, aligned to
    a cache line, so an event touches two adjacent lines of slot state instead of one or two lines
    in each of seven arrays. The views are ordinary NumPy arrays (``to_state`` copies them out in
    the same shapes and dtypes as separate arrays, so checkpoints keep their format)."""
    buf = np.zeros(n * _REC + 8)
    off = (-buf.ctypes.data % 64) // 8  # numpy aligns to 16 bytes at least: start on a 64-byte line
    rec = buf[off : off + n * _REC].reshape(n, _REC)
    tail = rec[:, 15:16].view(np.uint8)
    state = _k.State(
        rec[:, 0 : _k.N_FIELDS],
        tail[:, 0:4].view(np.int32)[:, 0],
        rec[:, 14:15].view(np.int64)[:, 0],
        np.zeros((n, _k.N_COLD)),
        tail[:, 6:7].view(np.int8)[:, 0],
        tail[:, 4:6].view(np.int16)[:, 0],
        np.zeros((n_day, n, 2)),
        np.zeros((n_week, n, 2)),
        np.zeros(_k.N_GLOBAL),
        np.zeros((n_day, n, 2)),
        rec[:, 8:10],
    )
    state.last_t[:] = -1
    return state, rec[:, 10 : 10 + _k.N_SP]


def _refcounts(pool: tuple) -> list:
    """``sys.getrefcount`` of each buffer of ``pool`` (compared only with a count taken through
    this same function when the buffers were new, never with a constant)."""
    return [sys.getrefcount(b) for b in pool]


@dataclass
class BatchScores:
    """Per-event outputs of the last :meth:`AnomalyDetector.update` (event order)."""

    z: np.ndarray  # robust z-score before the update (NaN for invalid values)
    score: np.ndarray  # calibrated score: -log10 tail probability
    baseline: np.ndarray  # baseline before the update
    threshold: np.ndarray  # effective score threshold (configured x metric x calendar x budget gain)
    flags: np.ndarray  # int8 bit set: 1 alarm, 2 change, 4 warm, 8 invalid, 16 learned, 32 backwards


class AnomalyDetector:
    """Causal per-slot detector, vectorised over all slots (one kernel call per batch).

    Parameters
    ----------
    n_slots : int
        Number of dense slots (e.g. ``n_elements * n_metrics``).
    config : DetectorConfig, optional
        Parameters; defaults to ``DetectorConfig()``.
    slot_element_id : int64 array (n_slots,), optional
        External element id of each slot, copied into the rows (default -1).
    slot_metric : array of str (n_slots,), optional
        Metric name of each slot, copied into the rows (default "").

    Notes
    -----
    Each point is scored against the state before it, then folded in only if it is normal. The
    score is calibrated: ``-log10`` of the tail probability of the deviation under the slot's own
    adaptive model (``kernels.detect``), so one threshold means one false-alarm rate everywhere.

    Examples
    --------
    >>> det = AnomalyDetector(2, DetectorConfig(season="none", warmup=10))
    >>> t = np.arange(40, dtype=np.int64) * 60_000
    >>> x = np.where(np.arange(40) == 30, 50.0, 10.0 + np.sin(np.arange(40)))
    >>> rows = det.update(t, np.zeros(40, dtype=np.int64), x)
    >>> int(rows["start_ms"][0]) == 30 * 60_000, str(rows["classification"][0])
    (True, 'fault')
    """

    warn_late = True
    """Warn when a batch holds events older than their slot's previous event (a caller that counts
    them in ``n_backwards`` and reports them, like the replay's anomaly component, turns it off)."""

    def __init__(self, n_slots: int, config: DetectorConfig | None = None, slot_element_id=None, slot_metric=None):
        _check(int(n_slots) == n_slots and n_slots >= 0, f"n_slots must be a non-negative integer, got {n_slots!r}")
        self.n_slots = int(n_slots)
        self.config = config if config is not None else DetectorConfig()
        _check(
            isinstance(self.config, DetectorConfig),
            f"config must be a DetectorConfig, got {type(self.config).__name__}",
        )
        probe = self.config.params(np.zeros((0, _k.N_SP)))
        self.n_day, self.n_week = probe.n_day, probe.n_week
        n = self.n_slots
        self.state, self.sp = _new_state(n, self.n_day, self.n_week)
        self.state.gate[:, _k.GT_MEAN] = _k.GATE_M0  # the score of a null point: mean and sd 1 / ln 10
        self.state.gate[:, _k.GT_VAR] = _k.GATE_M0 * _k.GATE_M0
        _k.detect_init(self.state.st, -np.log10(self.config.tail_p) / self.config.q_min)
        self.state.g[_k.G_GAIN] = 1.0
        self.sp[:, _k.P_FLOOR] = self.config.floor_abs
        self.sp[:, _k.P_CONFIRM] = 1.0
        self.sp[:, _k.P_LOWER] = -np.inf
        self.sp[:, _k.P_SCALE] = 1.0
        self.slot_element_id = (
            np.full(n, -1, dtype=np.int64)
            if slot_element_id is None
            else _as_1d("slot_element_id", slot_element_id, np.int64)
        )
        if slot_metric is None:
            self.slot_metric = np.full(n, "", dtype=f"U{NAME_LEN}")
        else:
            names = np.asarray(slot_metric)
            longest = max((len(str(m)) for m in names), default=0)
            _check(longest <= NAME_LEN, f"slot_metric holds a name of {longest} characters; at most {NAME_LEN}")
            self.slot_metric = names.astype(f"U{NAME_LEN}")
        _check(
            len(self.slot_element_id) == n and len(self.slot_metric) == n,
            f"slot_element_id and slot_metric need {n} entries, got "
            f"{len(self.slot_element_id)} and {len(self.slot_metric)}",
        )
        self.n_invalid = 0
        self.n_backwards = 0
        self.last: BatchScores | None = None

    # ---- per-slot settings -----------------------------------------------------------------
    def _set(self, col: int, slots, values, what: str):
        slots = _as_1d("slots", slots, np.int64)
        self.sp[slots, col] = values

    def set_floor(self, slots, floor_abs):
        """Absolute sigma floor of some slots (e.g. 1.0 for counters)."""
        _check(bool(np.all(np.asarray(floor_abs) >= 0)), f"floor_abs must be >= 0, got {floor_abs}")
        self._set(_k.P_FLOOR, slots, floor_abs, "floor")

    def set_confirm(self, slots, n_points: int):
        """Require ``n_points`` consecutive alarm points before an episode of these slots opens."""
        _check(
            int(n_points) == n_points and 1 <= n_points <= 1000,
            f"n_points must be an integer in 1..1000, got {n_points}",
        )
        self._set(_k.P_CONFIRM, slots, float(n_points), "confirm")

    def set_lower(self, slots, lower):
        """Lower bound of the baseline (0 for non-negative metrics; ``-inf`` for none)."""
        self._set(_k.P_LOWER, slots, lower, "lower")

    def set_threshold_scale(self, slots, scale):
        """Multiplier of the score threshold of some slots."""
        _check(bool(np.all(np.asarray(scale) > 0)), f"threshold scale must be > 0, got {scale}")
        self._set(_k.P_SCALE, slots, scale, "threshold scale")

    # ---- scoring ---------------------------------------------------------------------------
    def update(self, ts_ms, slot, value, thr_mult=None) -> np.ndarray:
        """Score a batch causally, update the state, return the episode rows it produced.

        Parameters
        ----------
        ts_ms : int64 ms UTC or datetime64 array (n,)
            Event times; processed in the given order, normally sorted by time. Events older than
            their slot's previous event are scored, learned only when at most
            ``DetectorConfig.learn_late_s`` late, and counted in ``n_backwards`` (a warning names the
            batch's count).
        slot : int64 array (n,)
            Dense slot per event, ``0 <= slot < n_slots``.
        value : float array (n,)
            Values; NaN/inf are not scored and counted in ``n_invalid`` (flag 8 in ``last``).
        thr_mult : float array (n,), optional
            Per-event threshold multiplier (calendar events), default 1.

        Returns
        -------
        ANOMALY_DTYPE array
            Episodes opened (``end_ms = -1``), closed, and changes (classification ``"change"``),
            in event order. Opened/closed rows are classified ``"fault"`` here.

        Raises
        ------
        ValueError
            If the arrays differ in length, are not 1-D, or a slot is out of range.
        """
        ts_ms = to_ms(ts_ms)
        _check(ts_ms.ndim == 1, f"ts_ms must be one-dimensional, got shape {ts_ms.shape}")
        slot = _as_1d("slot", slot, np.int64)
        value = _as_1d("value", value, np.float64)
        n = len(ts_ms)
        _check(
            len(slot) == n and len(value) == n,
            f"ts_ms, slot and value must have one length, got {n}, {len(slot)}, {len(value)}",
        )
        # one pass: a negative slot is a huge unsigned one
        if n and slot.view(np.uint64).max() >= self.n_slots:
            bad = int(np.flatnonzero((slot < 0) | (slot >= self.n_slots))[0])
            raise ValueError(
                f"slot[{bad}] = {slot[bad]} is outside 0..{self.n_slots - 1}; "
                f"create the detector with more slots or call grow()"
            )
        if thr_mult is not None:
            thr_mult = _as_1d("thr_mult", thr_mult, np.float64)
            _check(len(thr_mult) == n, f"thr_mult has {len(thr_mult)} entries for {n} events")
            _check(bool(np.all(thr_mult > 0)), "thr_mult must be > 0 everywhere (1 = unchanged)")
        return self._score(ts_ms, slot, value, thr_mult, stacklevel=3)

    def _score(self, ts_ms: np.ndarray, slot: np.ndarray, value: np.ndarray, thr_mult=None, stacklevel=2) -> np.ndarray:
        """:meth:`update` of checked inputs: contiguous int64 times and slots in range, float64
        values, the same length (``thr_mult`` None or a checked float64 array); the late-event
        warning names the frame ``stacklevel`` up."""
        n = len(ts_ms)
        if thr_mult is None:
            thr_mult = _NO_MULT
        g = self.state.g
        n_bad, n_back = g[_k.G_INVALID], g[_k.G_BACKWARDS]
        batch = _k.Batch(ts_ms, slot, value, thr_mult)
        out = _k.Out(*self._score_buffers(n), *self._episode_buffers(n))
        m = _k.detect_batch(batch, self._params(), self.state, out)
        self.n_invalid += int(g[_k.G_INVALID] - n_bad)
        back = int(g[_k.G_BACKWARDS] - n_back)
        self.n_backwards += back
        if back and self.warn_late:
            warnings.warn(
                f"{back} event(s) of this batch are older than their slot's previous event: scored, and "
                f"learned only within {self.config.learn_late_s:g} s ({self.n_backwards} so far; sort each batch by time)",
                UserWarning,
                stacklevel=stacklevel,
            )
        self.last = BatchScores(out.z, out.score, out.base, out.thr, out.flags)
        rows = np.zeros(m, dtype=ANOMALY_DTYPE)
        if m:
            _k.fill_episode_rows(rows, batch, self.slot_element_id, out)
            rows["metric"] = np.take(self.slot_metric, np.take(slot, out.ep_idx[:m]))
            cls = rows["classification"]  # a view: filled in place (no temporary string arrays)
            cls[...] = "fault"
            cls[out.ep_kind[:m] == _k.KIND_CHANGE] = "change"
            rows["scope_level"] = "element"
        return rows

    def _params(self) -> _k.Params:
        """Kernel parameters, rebuilt when the config object or the settings array changes
        (a config is read as given: replace it rather than mutate it)."""
        key = (id(self.config), id(self.sp))
        if getattr(self, "_pkey", None) != key:
            self._pcache = self.config.params(self.sp)
            self._pkey = key
        return self._pcache

    def _score_buffers(self, n: int) -> tuple:
        """Per-event output arrays of length ``n`` (they become ``self.last``), reused across
        batches while nothing outside holds a view of them (``sys.getrefcount``), so a caller who
        keeps ``last.z`` of an earlier batch gets fresh buffers and never sees them overwritten."""
        self.last = None  # drop our own views before counting the others
        pool = getattr(self, "_out", None)
        if pool is None or len(pool[0]) < n or _refcounts(pool) != self._out_free:
            cap = max(n, 1024)
            pool = (np.empty(cap), np.empty(cap), np.empty(cap), np.empty(cap), np.empty(cap, dtype=np.int8))
            self._out = pool
            self._out_free = _refcounts(pool)
        return tuple(b[:n] for b in pool)

    def _episode_buffers(self, n: int) -> tuple:
        """Scratch arrays for the kernel's episode rows (at most two rows per event), reused."""
        buf = getattr(self, "_ep", None)
        if buf is None or len(buf[0]) < 2 * n:
            cap = max(2 * n, 1024)
            buf = tuple(np.empty(cap, dtype=dt) for dt in _EP_DTYPES)
            self._ep = buf
        return buf

    # ---- state -----------------------------------------------------------------------------
    @property
    def threshold(self) -> np.ndarray:
        """Tracked ``(1 - tail_p)`` quantile of ``|z|`` of each slot (the score's anchor)."""
        return -np.log10(self.config.tail_p) / self.state.st[:, _k.F_THR]

    @property
    def gain(self) -> float:
        """Network-wide budget gain currently applied to every threshold (>= 1)."""
        return float(self.state.g[_k.G_GAIN])

    @property
    def open_direction(self) -> np.ndarray:
        """Direction (+1/-1) of each slot's open episode, 0 where none is open."""
        return self.state.open_dir.copy()

    @property
    def n_obs(self) -> np.ndarray:
        """Observations folded into each slot."""
        return self.state.nobs.astype(np.float64)

    def baseline_at(self, ts_ms: int) -> np.ndarray:
        """Baseline of every slot at time ``ts_ms`` (level plus the shrunk seasonal offsets)."""
        S, c = self.state, self.config
        level = S.st[:, _k.F_LEVEL].copy()
        p = c.params(self.sp)
        if p.bucket_ms:
            q = int(ts_ms) // p.bucket_ms
            k = c.season_prior
            sig = np.maximum(
                _k.SQRT_HALF_PI * S.st[:, _k.F_SCALE], self.sp[:, _k.P_FLOOR] + c.floor_rel * np.abs(level)
            )

            def weight(o, e):
                if not c.season_snr:
                    return e / (e + k)
                ev = e * o * o
                with np.errstate(invalid="ignore", divide="ignore"):
                    return np.where(ev > 0, ev / (ev + k * sig * sig), 0.0)

            ed = S.seas_d[q % p.n_day, :, _k.S_EVID]
            sd = np.where(ed > 0, S.seas_d[q % p.n_day, :, _k.S_OFF], 0.0)
            sc = np.where(ed > 0, sd * weight(sd, ed), 0.0)
            if p.n_week:
                ew = S.seas_w[q % p.n_week, :, _k.S_EVID]
                dw = S.seas_w[q % p.n_week, :, _k.S_OFF] - sd
                sc = sc + np.where(ew > 0, dw * weight(dw, ew), 0.0)
            level += sc
        return np.maximum(level, self.sp[:, _k.P_LOWER])

    def grow(self, n_slots: int):
        """Add empty slots (new elements) without losing the existing state."""
        _check(n_slots >= self.n_slots, f"grow() cannot shrink from {self.n_slots} to {n_slots} slots")
        new = AnomalyDetector(n_slots, self.config)
        n = self.n_slots
        for f, a, b in zip(_k.State._fields, self.state, new.state):
            if f == "g":
                b[:] = a
            elif f.startswith("seas"):
                b[:, :n] = a
            else:
                b[:n] = a
        new.sp[:n] = self.sp
        self.state, self.sp = new.state, new.sp
        self.slot_element_id = np.concatenate([self.slot_element_id, new.slot_element_id[n:]])
        self.slot_metric = np.concatenate([self.slot_metric, new.slot_metric[n:]])
        self.n_slots = n_slots

    def to_state(self) -> dict:
        """Checkpoint: numpy arrays and plain scalars only."""
        d = {"kind": "AnomalyDetector", "config": asdict(self.config)}
        d.update({f: a.copy() for f, a in zip(_k.State._fields, self.state)})
        d.update(
            sp=self.sp.copy(),
            slot_element_id=self.slot_element_id.copy(),
            slot_metric=self.slot_metric.copy(),
            n_invalid=self.n_invalid,
            n_backwards=self.n_backwards,
        )
        return d

    @classmethod
    def from_state(cls, d: dict) -> AnomalyDetector:
        """Restore from :meth:`to_state` output."""
        _check(
            d.get("kind") == "AnomalyDetector", f"state is not an AnomalyDetector checkpoint (kind={d.get('kind')!r})"
        )
        _check("seas_d" in d, "checkpoint predates the earned-season detector; rebuild it from history")
        det = cls(d["st"].shape[0], DetectorConfig(**d["config"]), d["slot_element_id"], d["slot_metric"])
        if "seas_m" not in d:  # a checkpoint from before the recurrence memory: start it empty
            d = dict(d, seas_m=np.zeros_like(d["seas_d"]))
        if "gate" not in d:  # a checkpoint from before the score gate: the gate starts afresh
            d = dict(d, gate=det.state.gate)
        for f, a in zip(_k.State._fields, det.state):
            _check(
                np.shape(d[f]) == a.shape,
                f"checkpoint field {f!r} has shape {np.shape(d[f])}, expected {a.shape} for this config and slot count",
            )
            a[...] = d[f]  # into the packed record (same shapes and dtypes as the separate arrays)
        _check(
            np.shape(d["sp"]) == det.sp.shape,
            f"checkpoint field 'sp' has shape {np.shape(d['sp'])}, expected {det.sp.shape}",
        )
        det.sp[...] = d["sp"]
        det.n_invalid = int(d["n_invalid"])
        det.n_backwards = int(d["n_backwards"])
        return det
