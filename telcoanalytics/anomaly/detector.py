"""Streaming anomaly detection with self-tuning thresholds and topology-aware classification.

Three layers, each usable alone:

``AnomalyDetector``
    Per-slot causal detector over ``(ts_ms, slot, value)`` batches: seasonal baseline (time of day
    x day of week, configurable), robust z-score, self-tuned threshold toward a target false-alarm
    rate, network-wide alert budget, CUSUM change detection with re-baselining. Returns anomaly
    episodes as ``ANOMALY_DTYPE`` rows (one row when an episode opens, with ``end_ms = -1``, and one
    when it closes).
``SilenceMonitor``
    Per-element expected reporting interval; elements silent for longer than their normal gaps are
    suspected failures, many silent elements of one region together are a collection gap.
``NetworkAnomalyDetector``
    The two above over a :class:`~telcoanalytics.topology.model.Topology` with classification: deviations
    shared by many elements of one site (crowd) or region (surge) in the same direction are reported
    but not faults; an isolated deviation is a fault; a parent element's failure inhibits its
    children; calendar events widen thresholds for their scope and time.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields

import numpy as np

from kernels import detect as _k
from telcoanalytics.records import EQUIP_DTYPE, EQUIPMENT_CLASS_CODE, METRICS
from telcoanalytics.topology.model import Topology

ANOMALY_DTYPE = np.dtype(
    [
        ("slot", "i8"),
        ("element_id", "i8"),  # external element id (-1 when the slot has no element)
        ("metric", "U24"),
        ("start_ms", "i8"),
        ("end_ms", "i8"),  # -1 while the episode is open
        ("peak_score", "f8"),  # peak |z| (robust sigmas) of the episode so far
        ("direction", "i1"),  # +1 above baseline, -1 below
        ("classification", "U16"),  # fault|silence|crowd|surge|collection_gap|change|inhibited
        ("baseline", "f8"),  # baseline at the peak
        ("threshold", "f8"),  # effective threshold at the peak
        ("value", "f8"),  # observed value at the peak
        ("scope_level", "U8"),  # extension: "element", "site" or "region"
        ("scope_id", "i8"),  # extension: external id of the scope node
        ("t_ms", "i8"),  # extension: event time of this transition (open/close/change/check)
    ]
)
"""One anomaly episode (open or closed). The last three fields extend the agreed interface."""

CLASSIFICATIONS = ("fault", "silence", "crowd", "surge", "collection_gap", "change", "inhibited")
DEFAULT_METRIC_TRANSFORM = {
    "throughput_mbps": 1.0,
    "error_count": 1.0,
    "loss_pct": 0.05,
    "latency_ms": 1.0,
    "jitter_ms": 1.0,
}
"""Metrics scored on ``log(x + c)`` (value -> c): skewed positive quantities whose noise grows with
their level; the baseline and value in the rows are converted back to the metric's unit."""
DEFAULT_METRIC_FLOOR = {
    "error_count": 0.3,
    "unavailable_s": 10.0,
    "loss_pct": 0.3,
    "latency_ms": 0.1,
    "throughput_mbps": 0.02,
}
"""Absolute sigma floors (in the scored unit, i.e. after the transform): one count more than a run
of zeros, or a few unavailable seconds, is not an infinite deviation."""
DEFAULT_METRIC_CONFIRM = {"unavailable_s": 2}
"""Consecutive alarm points before an episode opens: isolated unavailable-second blips are normal."""
_PARENT_CLASSES = ("aggregation_switch", "core_router", "packet_gateway")
_CHILD_CLASSES = ("macro_cell", "small_cell")


_NO_MULT = np.empty(0)
"""Empty threshold multiplier: the kernel then uses 1.0 for every event without reading a stream."""
_EP_DTYPES = (np.int64, np.int8, np.int64, np.int64, np.float64, np.int8, np.float64, np.float64, np.float64)
"""Episode row buffers of ``kernels.detect.detect_batch``: index, kind, start, end, peak, direction,
baseline, threshold, value."""


def _check(cond: bool, msg: str):
    if not cond:
        raise ValueError(msg)


def _refcounts(pool: tuple) -> list:
    """``sys.getrefcount`` of each buffer of ``pool`` (compared only with a count taken through
    this same function when the buffers were new, never with a constant)."""
    return [sys.getrefcount(b) for b in pool]


@dataclass
class DetectorConfig:
    """Parameters of :class:`AnomalyDetector` (defaults suit 5-minute performance counters).

    Parameters
    ----------
    season_s : float
        Season length in seconds (default one week: time of day x day of week); 0 disables it.
    n_phase : int
        Phase buckets per season (default 168: hour of the week).
    level_alpha, season_alpha, scale_alpha : float
        EW factors per observation (level, scale) and per visit of a phase bucket (season);
        half-life in observations is ``ln 2 / alpha``.
    huber_c : float
        Residuals beyond ``huber_c`` sigmas are clipped before they update the baseline.
    floor_abs, floor_rel : float
        Sigma floor ``floor_abs + floor_rel * |baseline|`` (flat or integer series).
    warmup : int
        Observations per slot before it may alarm.
    target_fa : float
        Target false-alarm rate per observation of the self-tuned thresholds.
    tune_eta : float
        Relative step of the threshold's quantile tracker.
    thr_init, thr_min, thr_max : float
        Starting threshold and bounds on |z|.
    budget_fa : float
        Network-wide alert budget as a fraction of all scored events; ``1.0`` disables it. When
        the alarm rate exceeds it, a common gain (>= 1, <= ``gain_max``) raises every threshold.
    budget_eta, gain_max : float
        Step and bound of that gain.
    cusum_k, cusum_h, cusum_clip : float
        CUSUM allowance, decision limit and per-point clip, in sigmas.
    close_after : int
        Non-alarm observations that close an episode.
    """

    season_s: float = 7 * 86400.0
    n_phase: int = 168
    level_alpha: float = 0.05
    season_alpha: float = 0.3
    scale_alpha: float = 0.02
    huber_c: float = 3.0
    floor_abs: float = 1e-6
    floor_rel: float = 1e-3
    warmup: int = 24
    target_fa: float = 1e-3
    tune_eta: float = 0.02
    thr_init: float = 5.0
    thr_min: float = 3.0
    thr_max: float = 30.0
    budget_fa: float = 1.0
    budget_eta: float = 0.01
    gain_max: float = 4.0
    cusum_k: float = 0.5
    cusum_h: float = 12.0
    cusum_clip: float = 4.0
    close_after: int = 3

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            _check(np.isfinite(v), f"DetectorConfig.{f.name} must be finite, got {v!r}")
        _check(self.season_s >= 0, f"season_s must be >= 0 (0 disables the season), got {self.season_s}")
        _check(
            self.n_phase >= 1 and int(self.n_phase) == self.n_phase,
            f"n_phase must be a positive integer, got {self.n_phase}",
        )
        if self.season_s > 0:
            _check(
                self.season_s * 1000 >= self.n_phase,
                f"season_s={self.season_s} is shorter than n_phase={self.n_phase} milliseconds",
            )
        for name in ("level_alpha", "season_alpha", "scale_alpha"):
            v = getattr(self, name)
            _check(0 < v <= 1, f"{name} must be in (0, 1], got {v}")
        for name in ("huber_c", "thr_init", "thr_min", "cusum_h", "cusum_clip", "gain_max"):
            _check(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        _check(
            self.floor_abs >= 0 and self.floor_rel >= 0 and self.floor_abs + self.floor_rel > 0,
            f"floor_abs and floor_rel must be >= 0 and not both 0, got {self.floor_abs}, {self.floor_rel}",
        )
        _check(0 < self.target_fa < 1, f"target_fa must be in (0, 1), got {self.target_fa}")
        _check(0 < self.budget_fa <= 1, f"budget_fa must be in (0, 1] (1 disables the budget), got {self.budget_fa}")
        _check(0 <= self.tune_eta < 1, f"tune_eta must be in [0, 1), got {self.tune_eta}")
        _check(0 <= self.budget_eta < 1, f"budget_eta must be in [0, 1), got {self.budget_eta}")
        _check(
            self.thr_min <= self.thr_init <= self.thr_max,
            f"need thr_min <= thr_init <= thr_max, got {self.thr_min}, {self.thr_init}, {self.thr_max}",
        )
        _check(self.gain_max >= 1, f"gain_max must be >= 1, got {self.gain_max}")
        _check(self.cusum_k >= 0, f"cusum_k must be >= 0, got {self.cusum_k}")
        _check(
            self.warmup >= 1 and int(self.warmup) == self.warmup, f"warmup must be an integer >= 1, got {self.warmup}"
        )
        _check(
            self.close_after >= 1 and int(self.close_after) == self.close_after,
            f"close_after must be an integer >= 1, got {self.close_after}",
        )


@dataclass
class BatchScores:
    """Per-event outputs of the last :meth:`AnomalyDetector.update` (event order)."""

    z: np.ndarray  # robust z-score before the update (NaN for invalid values)
    baseline: np.ndarray  # baseline before the update
    threshold: np.ndarray  # effective threshold (self-tuned x calendar x budget gain)
    flags: np.ndarray  # int8 bit set: 1 alarm, 2 change confirmed, 4 warm, 8 invalid value


def _as_1d(name: str, a, dtype) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.dtype(dtype).kind in "iu" and arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


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
    Each point is scored against the state before it, then folded in (see ``kernels.detect``).
    The threshold of each slot tracks the ``1 - target_fa`` quantile of its |z| by stochastic
    approximation (Robbins & Monro 1951), so the realised false-alarm rate on anomaly-free data
    converges to ``target_fa`` whatever the distribution, while ``thr_min``/``thr_max`` bound it.

    Examples
    --------
    >>> det = AnomalyDetector(2, DetectorConfig(season_s=0, warmup=10))
    >>> t = np.arange(40, dtype=np.int64) * 60_000
    >>> x = np.where(np.arange(40) == 30, 50.0, 10.0 + np.sin(np.arange(40)))
    >>> rows = det.update(t, np.zeros(40, dtype=np.int64), x)
    >>> int(rows["start_ms"][0]) == 30 * 60_000, str(rows["classification"][0])
    (True, 'fault')
    """

    def __init__(self, n_slots: int, config: DetectorConfig | None = None, slot_element_id=None, slot_metric=None):
        _check(int(n_slots) == n_slots and n_slots >= 0, f"n_slots must be a non-negative integer, got {n_slots!r}")
        self.n_slots = int(n_slots)
        self.config = config if config is not None else DetectorConfig()
        _check(
            isinstance(self.config, DetectorConfig),
            f"config must be a DetectorConfig, got {type(self.config).__name__}",
        )
        c = self.config
        self.season_ms = int(round(c.season_s * 1000.0))
        self.n_phase = int(c.n_phase) if self.season_ms > 0 else 1
        self.state = np.zeros((self.n_slots, _k.N_FIELDS))
        _k.detect_init(self.state, float(c.thr_init))
        self.nobs = np.zeros(self.n_slots, dtype=np.int32)
        self.cold = np.zeros((self.n_slots, _k.N_COLD))
        self.open_dir = np.zeros(self.n_slots, dtype=np.int8)
        self.run = np.zeros(self.n_slots, dtype=np.int16)
        self.seas = np.zeros((self.n_phase, self.n_slots))
        self.seas_n = np.zeros((self.n_phase, self.n_slots), dtype=np.uint8)
        self.glob = np.zeros(_k.N_GLOBAL)
        self.glob[_k.G_GAIN] = 1.0
        self.slot_element_id = (
            np.full(self.n_slots, -1, dtype=np.int64)
            if slot_element_id is None
            else _as_1d("slot_element_id", slot_element_id, np.int64)
        )
        self.slot_metric = (
            np.full(self.n_slots, "", dtype="U24") if slot_metric is None else np.asarray(slot_metric, dtype="U24")
        )
        _check(
            len(self.slot_element_id) == self.n_slots and len(self.slot_metric) == self.n_slots,
            f"slot_element_id and slot_metric need {self.n_slots} entries, got "
            f"{len(self.slot_element_id)} and {len(self.slot_metric)}",
        )
        self.slot_floor = np.full(self.n_slots, float(c.floor_abs))
        self.slot_confirm = np.ones(self.n_slots)
        self.n_invalid = 0
        self.last: BatchScores | None = None

    def set_floor(self, slots, floor_abs):
        """Set the absolute sigma floor of some slots (e.g. 1.0 for counters, where one count
        more than a run of zeros must not look like an infinite z-score)."""
        slots = _as_1d("slots", slots, np.int64)
        _check(bool(np.all(np.asarray(floor_abs) >= 0)), f"floor_abs must be >= 0, got {floor_abs}")
        self.slot_floor[slots] = floor_abs

    def set_confirm(self, slots, n_points: int):
        """Require ``n_points`` consecutive alarm points before an episode of these slots opens
        (sparse counters whose isolated blips are normal)."""
        slots = _as_1d("slots", slots, np.int64)
        _check(
            int(n_points) == n_points and 1 <= n_points <= 1000,
            f"n_points must be an integer in 1..1000, got {n_points}",
        )
        self.slot_confirm[slots] = float(n_points)

    # ---- scoring ---------------------------------------------------------------------------
    def update(self, ts_ms, slot, value, thr_mult=None) -> np.ndarray:
        """Score a batch causally, update the state, return the episode rows it produced.

        Parameters
        ----------
        ts_ms : int64 array (n,)
            Event times (ms UTC); processed in the given order, normally sorted by time.
        slot : int64 array (n,)
            Dense slot per event, ``0 <= slot < n_slots``.
        value : float array (n,)
            Values; NaN/inf are not scored and counted in ``n_invalid`` (flag 8 in ``last``).
        thr_mult : float array (n,), optional
            Per-event threshold multiplier >= 1 (calendar events), default 1.

        Returns
        -------
        ANOMALY_DTYPE array
            Episodes opened (``end_ms = -1``), closed, and confirmed changes (classification
            ``"change"``), in event order. Opened/closed rows are classified ``"fault"`` here;
            :class:`NetworkAnomalyDetector` refines that with the topology.

        Raises
        ------
        ValueError
            If the arrays differ in length, are not 1-D, or a slot is out of range.
        """
        ts_ms = _as_1d("ts_ms", ts_ms, np.int64)
        slot = _as_1d("slot", slot, np.int64)
        value = _as_1d("value", value, np.float64)
        n = len(ts_ms)
        _check(
            len(slot) == n and len(value) == n,
            f"ts_ms, slot and value must have one length, got {n}, {len(slot)}, {len(value)}",
        )
        if n and (slot.min() < 0 or slot.max() >= self.n_slots):
            bad = int(np.flatnonzero((slot < 0) | (slot >= self.n_slots))[0])
            raise ValueError(
                f"slot[{bad}] = {slot[bad]} is outside 0..{self.n_slots - 1}; "
                f"create the detector with more slots or call grow()"
            )
        if thr_mult is None:
            thr_mult = _NO_MULT
        else:
            thr_mult = _as_1d("thr_mult", thr_mult, np.float64)
            _check(len(thr_mult) == n, f"thr_mult has {len(thr_mult)} entries for {n} events")
            _check(bool(np.all(thr_mult > 0)), "thr_mult must be > 0 everywhere (1 = unchanged)")
        c = self.config
        z, base, thr, flags = self._score_buffers(n)
        ep = self._episode_buffers(n)
        n_bad = self.glob[_k.G_INVALID]
        m = _k.detect_batch(
            ts_ms,
            slot,
            value,
            thr_mult,
            self.season_ms,
            self.n_phase if self.season_ms > 0 else 0,
            c.level_alpha,
            c.season_alpha,
            c.scale_alpha,
            c.huber_c,
            self.slot_floor,
            c.floor_rel,
            float(c.warmup),
            *_k.threshold_steps(c.target_fa, c.tune_eta),
            c.thr_min,
            c.thr_max,
            c.budget_fa,
            c.budget_eta,
            c.gain_max,
            c.cusum_k,
            c.cusum_h,
            c.cusum_clip,
            float(c.close_after),
            self.slot_confirm,
            self.state,
            self.nobs,
            self.cold,
            self.open_dir,
            self.run,
            self.seas,
            self.seas_n,
            self.glob,
            z,
            base,
            thr,
            flags,
            *ep,
        )
        ep_idx, ep_kind = ep[0], ep[1]
        self.n_invalid += int(self.glob[_k.G_INVALID] - n_bad)
        self.last = BatchScores(z, base, thr, flags)
        rows = np.zeros(m, dtype=ANOMALY_DTYPE)
        if m:
            _k.fill_episode_rows(rows, ts_ms, slot, self.slot_element_id, *ep)
            rows["metric"] = self.slot_metric[slot[ep_idx[:m]]]
            rows["classification"] = "fault"
            rows["classification"][ep_kind[:m] == _k.KIND_CHANGE] = "change"
            rows["scope_level"] = "element"
        return rows

    def _score_buffers(self, n: int) -> tuple:
        """Per-event output arrays of length ``n`` for the next batch (become ``self.last``).

        They are views of buffers the detector keeps and reuses when nothing outside holds a
        view of them any more (``sys.getrefcount``: only this object and the call's argument), so
        a caller who keeps ``last.z`` of an earlier batch gets fresh buffers and never sees them
        overwritten. Reuse spares a fresh allocation per batch, whose pages the kernel would
        otherwise fault in and the allocator unmap again (about a tenth of the scoring time on
        60,000-event batches).
        """
        self.last = None  # drop our own views before counting the others
        pool = getattr(self, "_out", None)
        if pool is None or len(pool[0]) < n or _refcounts(pool) != self._out_free:
            cap = max(n, 1024)
            pool = (np.empty(cap), np.empty(cap), np.empty(cap), np.empty(cap, dtype=np.int8))
            self._out = pool
            # what the count reads when nothing else holds a view, measured through the same
            # function (interpreters differ in how many references a call or a loop adds)
            self._out_free = _refcounts(pool)
        return tuple(b[:n] for b in pool)

    def _episode_buffers(self, n: int) -> tuple:
        """Scratch arrays for the kernel's episode rows (at most one row per event), reused across
        batches: rows are copied out before the next call, so only their capacity matters."""
        buf = getattr(self, "_ep", None)
        if buf is None or len(buf[0]) < n:
            cap = max(n, 1024)
            buf = tuple(np.empty(cap, dtype=dt) for dt in _EP_DTYPES)
            self._ep = buf
        return buf

    # ---- state -----------------------------------------------------------------------------
    @property
    def threshold(self) -> np.ndarray:
        """Self-tuned threshold of each slot (before calendar and budget gain)."""
        return self.state[:, _k.F_THR]

    @property
    def gain(self) -> float:
        """Network-wide budget gain currently applied to every threshold (>= 1)."""
        return float(self.glob[_k.G_GAIN])

    @property
    def open_direction(self) -> np.ndarray:
        """Direction (+1/-1) of each slot's open episode, 0 where none is open."""
        return self.open_dir.copy()

    @property
    def n_obs(self) -> np.ndarray:
        """Observations folded into each slot."""
        return self.nobs.astype(np.float64)

    def baseline_at(self, ts_ms: int) -> np.ndarray:
        """Baseline of every slot at time ``ts_ms`` (level plus the seasonal bucket, if learnt)."""
        level = self.state[:, _k.F_LEVEL].copy()
        if self.season_ms > 0:
            ph = (int(ts_ms) // (self.season_ms // self.n_phase)) % self.n_phase
            level += np.where(self.seas_n[ph] > 0, self.seas[ph], 0.0)
        return level

    def grow(self, n_slots: int):
        """Add empty slots (new elements) without losing the existing state."""
        _check(n_slots >= self.n_slots, f"grow() cannot shrink from {self.n_slots} to {n_slots} slots")
        k = n_slots - self.n_slots
        st = np.zeros((k, _k.N_FIELDS))
        _k.detect_init(st, float(self.config.thr_init))
        self.state = np.concatenate([self.state, st])
        self.cold = np.concatenate([self.cold, np.zeros((k, _k.N_COLD))])
        self.nobs = np.concatenate([self.nobs, np.zeros(k, dtype=np.int32)])
        self.open_dir = np.concatenate([self.open_dir, np.zeros(k, dtype=np.int8)])
        self.run = np.concatenate([self.run, np.zeros(k, dtype=np.int16)])
        self.seas = np.concatenate([self.seas, np.zeros((self.n_phase, k))], axis=1)
        self.seas_n = np.concatenate([self.seas_n, np.zeros((self.n_phase, k), dtype=np.uint8)], axis=1)
        self.slot_element_id = np.concatenate([self.slot_element_id, np.full(k, -1, dtype=np.int64)])
        self.slot_metric = np.concatenate([self.slot_metric, np.full(k, "", dtype="U24")])
        self.slot_floor = np.concatenate([self.slot_floor, np.full(k, float(self.config.floor_abs))])
        self.slot_confirm = np.concatenate([self.slot_confirm, np.ones(k)])
        self.n_slots = n_slots

    def to_state(self) -> dict:
        """Checkpoint: numpy arrays and plain scalars only."""
        return {
            "kind": "AnomalyDetector",
            "config": asdict(self.config),
            "state": self.state.copy(),
            "cold": self.cold.copy(),
            "nobs": self.nobs.copy(),
            "open_dir": self.open_dir.copy(),
            "run": self.run.copy(),
            "seas": self.seas.copy(),
            "seas_n": self.seas_n.copy(),
            "glob": self.glob.copy(),
            "slot_element_id": self.slot_element_id.copy(),
            "slot_metric": self.slot_metric.copy(),
            "slot_floor": self.slot_floor.copy(),
            "slot_confirm": self.slot_confirm.copy(),
            "n_invalid": self.n_invalid,
        }

    @classmethod
    def from_state(cls, d: dict) -> AnomalyDetector:
        """Restore from :meth:`to_state` output."""
        _check(
            d.get("kind") == "AnomalyDetector", f"state is not an AnomalyDetector checkpoint (kind={d.get('kind')!r})"
        )
        det = cls(d["state"].shape[0], DetectorConfig(**d["config"]), d["slot_element_id"], d["slot_metric"])
        det.state = np.array(d["state"], dtype=np.float64)
        det.seas = np.array(d["seas"], dtype=np.float64)
        det.seas_n = np.array(d["seas_n"], dtype=np.uint8)
        det.cold = np.array(d["cold"], dtype=np.float64)
        det.nobs = np.array(d["nobs"], dtype=np.int32)
        det.open_dir = np.array(d["open_dir"], dtype=np.int8)
        det.run = np.array(d["run"], dtype=np.int16)
        det.glob = np.array(d["glob"], dtype=np.float64)
        det.slot_floor = np.array(d["slot_floor"], dtype=np.float64)
        det.slot_confirm = np.array(d["slot_confirm"], dtype=np.float64)
        det.n_invalid = int(d["n_invalid"])
        return det


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
        order = np.argsort(ts_ms, kind="stable")
        _k.arrivals_update(ts_ms[order], elem[order], self.gap_alpha, self.last_ts, self.gap_ms, self.n_reports)

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
        due = self.expected_by()
        silent = (due >= 0) & (int(now_ms) > due)
        newly = np.flatnonzero(silent & (self.silent_since < 0))
        resumed = np.flatnonzero(~silent & (self.silent_since >= 0))
        self.silent_since[newly] = self.last_ts[newly]
        self.silent_since[resumed] = -1
        return newly.astype(np.int64), resumed.astype(np.int64)

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
        return m


@dataclass
class CalendarEvent:
    """A known event (holiday, match, maintenance) that widens thresholds for a scope and time.

    Parameters
    ----------
    scope_level : str
        Topology level of the scope ("region", "site", "element").
    scope_id : int
        External id of the scope node at that level.
    start_ms, end_ms : int
        Time span (inclusive start, exclusive end), ms UTC.
    widen : float
        Threshold multiplier inside the scope and span (> 1 widens).
    name : str
        Label for reports.
    """

    scope_level: str
    scope_id: int
    start_ms: int
    end_ms: int
    widen: float = 2.0
    name: str = ""

    def __post_init__(self):
        _check(
            self.end_ms > self.start_ms,
            f"calendar event {self.name!r}: end_ms {self.end_ms} must be after start_ms {self.start_ms}",
        )
        _check(self.widen > 0, f"calendar event {self.name!r}: widen must be > 0, got {self.widen}")


@dataclass
class ClassifyConfig:
    """Topology-aware classification parameters.

    Parameters
    ----------
    crowd_min_elements, crowd_fraction : int, float
        A deviation is a crowd event when at least this many elements of its site (and this share
        of the site's elements reporting the metric) deviate in the same direction at once.
    surge_min_elements, surge_fraction : int, float
        The same over a region: a demand surge.
    gap_min_elements, gap_fraction : int, float
        Silent elements of one region at once that make a collection gap instead of failures.
    shared_z : float
        An element counts as deviating with the others when it has an open episode in that
        direction or its latest point is at least ``shared_z`` sigmas off in that direction
        (below its own alarm threshold: the crowd's ramp reaches elements at different times).
    """

    crowd_min_elements: int = 2
    crowd_fraction: float = 0.3
    surge_min_elements: int = 5
    surge_fraction: float = 0.15
    gap_min_elements: int = 5
    gap_fraction: float = 0.5
    shared_z: float = 2.0

    def __post_init__(self):
        for name in ("crowd_min_elements", "surge_min_elements", "gap_min_elements"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(self.shared_z > 0, f"shared_z must be > 0, got {self.shared_z}")
        for name in ("crowd_fraction", "surge_fraction", "gap_fraction"):
            _check(0 < getattr(self, name) <= 1, f"{name} must be in (0, 1], got {getattr(self, name)}")


def default_parents(topology: Topology) -> np.ndarray:
    """Parent element of each element: a site's cells hang off the site's switch/router/gateway.

    Returns an int64 array of dense element indices, -1 where an element has no parent element
    (no ``equipment_class`` attribute, or no aggregation equipment at the site).
    """
    n = topology.n_elements
    parent = np.full(n, -1, dtype=np.int64)
    cls = topology.attributes.get("equipment_class")
    if cls is None or n == 0 or "site" not in topology.levels:
        return parent
    site = topology.element_to("site")
    is_parent = np.isin(cls, [EQUIPMENT_CLASS_CODE[c] for c in _PARENT_CLASSES])
    is_child = np.isin(cls, [EQUIPMENT_CLASS_CODE[c] for c in _CHILD_CLASSES])
    hub = np.full(topology.n_nodes("site"), -1, dtype=np.int64)
    idx = np.flatnonzero(is_parent)
    hub[site[idx[::-1]]] = idx[::-1]  # first parent-class element of each site
    parent[is_child] = hub[site[is_child]]
    return parent


class NetworkAnomalyDetector:
    """Anomaly detection over a whole network: detector + silence + topology classification.

    Parameters
    ----------
    topology : Topology
        Network hierarchy (levels must include "site" and "region" for crowd/surge/gap).
    metrics : sequence of str
        Metric names; a slot is ``element_index * len(metrics) + metric_id``.
    config : DetectorConfig, optional
    classify : ClassifyConfig, optional
    calendar : list of CalendarEvent, optional
    parent_element : int64 array (n_elements,), optional
        Dense parent element of each element (-1 none); default :func:`default_parents`.
    silence : dict, optional
        Keyword arguments of :class:`SilenceMonitor`.
    metric_floor : dict metric -> float, optional
        Absolute sigma floor per metric (default :data:`DEFAULT_METRIC_FLOOR`; others use
        ``config.floor_abs``).
    metric_transform : dict metric -> float, optional
        Metrics scored as ``log(max(x, 0) + c)`` (default :data:`DEFAULT_METRIC_TRANSFORM`).
    metric_confirm : dict metric -> int, optional
        Consecutive alarm points that open an episode (default :data:`DEFAULT_METRIC_CONFIRM`).
    silence_metrics : sequence of str, optional
        Metrics whose reports count as the element being alive (default all). Give the
        collector-delivered metrics so that a collection gap is seen even while other sources flow.

    Examples
    --------
    >>> from telcoanalytics.topology.model import Topology
    >>> topo = Topology.from_columns([10, 11], {"region": [1, 1], "site": [5, 6]})
    >>> net = NetworkAnomalyDetector(topo, metrics=("cpu_util_pct",),
    ...                              config=DetectorConfig(season_s=0, warmup=5))
    >>> t = np.repeat(np.arange(30, dtype=np.int64) * 300_000, 2)
    >>> e = np.tile([0, 1], 30); m = np.zeros(60, dtype=np.int64)
    >>> x = np.where((e == 1) & (t == 25 * 300_000), 99.0, 20.0 + (t // 300_000) % 3)
    >>> rows = net.update(t, e, m, x)
    >>> rows[["element_id", "classification", "end_ms"]].tolist()[0][:2]
    (11, 'fault')
    """

    def __init__(
        self,
        topology: Topology,
        metrics=METRICS,
        config: DetectorConfig | None = None,
        classify: ClassifyConfig | None = None,
        calendar=None,
        parent_element=None,
        silence: dict | None = None,
        metric_floor: dict | None = None,
        metric_transform: dict | None = None,
        metric_confirm: dict | None = None,
        silence_metrics=None,
    ):
        _check(isinstance(topology, Topology), f"topology must be a Topology, got {type(topology).__name__}")
        self.topology = topology
        self.metrics = tuple(metrics)
        _check(len(self.metrics) >= 1, "metrics must name at least one metric")
        self.n_metrics = len(self.metrics)
        n_el = topology.n_elements
        slot_el = np.repeat(topology.ids[topology.element_level], self.n_metrics)
        slot_metric = np.tile(np.array(self.metrics, dtype="U24"), n_el)
        self.detector = AnomalyDetector(n_el * self.n_metrics, config, slot_el, slot_metric)

        def pick(given, default):  # defaults apply to the metrics present; given tables are checked
            return {k: v for k, v in default.items() if k in self.metrics} if given is None else dict(given)

        floors = pick(metric_floor, DEFAULT_METRIC_FLOOR)
        confirm = pick(metric_confirm, DEFAULT_METRIC_CONFIRM)
        transform = pick(metric_transform, DEFAULT_METRIC_TRANSFORM)
        for table, name in ((floors, "metric_floor"), (confirm, "metric_confirm"), (transform, "metric_transform")):
            for k in table:
                _check(k in self.metrics, f"{name} names {k!r}, which is not one of the metrics {self.metrics}")
        elem_slots = np.arange(n_el) * self.n_metrics
        for k, fl in floors.items():
            self.detector.set_floor(elem_slots + self.metrics.index(k), fl)
        for k, npts in confirm.items():
            self.detector.set_confirm(elem_slots + self.metrics.index(k), npts)
        self.log_offset = np.full(self.n_metrics, np.nan)  # NaN: scored as is
        for k, c in transform.items():
            _check(c > 0, f"metric_transform[{k!r}] must be > 0 (log offset), got {c}")
            self.log_offset[self.metrics.index(k)] = c
        if silence_metrics is None:
            self.silence_metric = np.ones(self.n_metrics, dtype=bool)
        else:
            for k in silence_metrics:
                _check(
                    k in self.metrics, f"silence_metrics names {k!r}, which is not one of the metrics {self.metrics}"
                )
            self.silence_metric = np.isin(np.array(self.metrics), list(silence_metrics))
        self.classify_config = classify if classify is not None else ClassifyConfig()
        self.silence = SilenceMonitor(n_el, **(silence or {}))
        self.calendar = list(calendar or [])
        for ev in self.calendar:
            _check(isinstance(ev, CalendarEvent), f"calendar entries must be CalendarEvent, got {type(ev).__name__}")
            topology._check_level(ev.scope_level)
        if parent_element is None:
            self.parent_element = default_parents(topology)
        else:
            self.parent_element = _as_1d("parent_element", parent_element, np.int64)
            _check(
                len(self.parent_element) == n_el,
                f"parent_element has {len(self.parent_element)} entries for {n_el} elements",
            )
            _check(
                bool(np.all((self.parent_element >= -1) & (self.parent_element < n_el))),
                f"parent_element must hold dense element indices in -1..{n_el - 1}",
            )
        # classification of each slot's open episode (code into CLASSIFICATIONS, -1 none)
        self.slot_class = np.full(self.detector.n_slots, -1, dtype=np.int8)
        self.n_unknown = 0

    # ---- helpers ---------------------------------------------------------------------------
    def _level_index(self, level: str) -> np.ndarray:
        if level in self.topology.levels:
            return self.topology.element_to(level)
        return np.zeros(self.topology.n_elements, dtype=np.int64)

    def _level_ids(self, level: str) -> np.ndarray:
        if level in self.topology.levels:
            return self.topology.ids[level]
        return np.full(1, -1, dtype=np.int64)

    def threshold_multiplier(self, ts_ms, elem) -> np.ndarray:
        """Calendar multiplier for each event (product over the events covering it)."""
        mult = np.ones(len(ts_ms))
        for ev in self.calendar:
            node = self._level_index(ev.scope_level)[elem]
            ids = self.topology.ids[ev.scope_level]
            hit = (ids[node] == ev.scope_id) & (ts_ms >= ev.start_ms) & (ts_ms < ev.end_ms)
            mult[hit] *= ev.widen
        return mult

    # ---- streaming -------------------------------------------------------------------------
    def update(self, ts_ms, elem, metric_id, value) -> np.ndarray:
        """Score one batch of metric values, classify what fires, return ANOMALY_DTYPE rows.

        Parameters
        ----------
        ts_ms : int64 array (n,)
        elem : int64 array (n,)
            Dense element indices (``topology.index_of(element_id)``).
        metric_id : int array (n,)
            Index into ``metrics``.
        value : float array (n,)

        Returns
        -------
        ANOMALY_DTYPE array of opened, closed and changed episodes, classified.

        Raises
        ------
        ValueError
            On length mismatch, element or metric out of range.
        """
        ts_ms = _as_1d("ts_ms", ts_ms, np.int64)
        elem = _as_1d("elem", elem, np.int64)
        metric_id = _as_1d("metric_id", metric_id, np.int64)
        n = len(ts_ms)
        _check(
            len(elem) == n and len(metric_id) == n,
            f"ts_ms, elem and metric_id must have one length, got {n}, {len(elem)}, {len(metric_id)}",
        )
        n_el = self.topology.n_elements
        if n and (elem.min() < 0 or elem.max() >= n_el):
            bad = int(np.flatnonzero((elem < 0) | (elem >= n_el))[0])
            raise ValueError(
                f"elem[{bad}] = {elem[bad]} is not a dense element index (0..{n_el - 1}); "
                "map ids with topology.index_of() and quarantine the -1s"
            )
        if n and (metric_id.min() < 0 or metric_id.max() >= self.n_metrics):
            bad = int(np.flatnonzero((metric_id < 0) | (metric_id >= self.n_metrics))[0])
            raise ValueError(
                f"metric_id[{bad}] = {metric_id[bad]} is outside 0..{self.n_metrics - 1} (metrics {self.metrics})"
            )
        alive = self.silence_metric[metric_id]
        self.silence.observe(ts_ms[alive], elem[alive])
        mult = self.threshold_multiplier(ts_ms, elem) if self.calendar else None
        value = np.asarray(value, dtype=np.float64)
        off = self.log_offset[metric_id]
        logm = ~np.isnan(off)
        if np.any(logm):
            value = value.copy()
            value[logm] = np.log(np.maximum(value[logm], 0.0) + off[logm])
        slot = elem * self.n_metrics + metric_id
        rows = self.detector.update(ts_ms, slot, value, mult)
        if len(rows):
            off_r = self.log_offset[rows["slot"] % self.n_metrics]
            lr = ~np.isnan(off_r)
            rows["value"][lr] = np.exp(rows["value"][lr]) - off_r[lr]
            rows["baseline"][lr] = np.exp(rows["baseline"][lr]) - off_r[lr]
        return self._classify(rows, slot)

    def update_equip(self, equip: np.ndarray) -> np.ndarray:
        """:meth:`update` from an ``EQUIP_DTYPE`` array with external element ids.

        Rows whose element id is unknown or whose metric is out of range are not scored; they are
        counted in ``n_unknown`` and returned by :attr:`last_rejected`.
        """
        _check(
            equip.dtype.names is not None and set(EQUIP_DTYPE.names) <= set(equip.dtype.names),
            f"equip must have the fields {EQUIP_DTYPE.names}, got {equip.dtype.names}",
        )
        elem = self.topology.index_of(equip["element_id"])
        mid = equip["metric_id"].astype(np.int64)
        ok = (elem >= 0) & (mid >= 0) & (mid < self.n_metrics)
        self.last_rejected = equip[~ok]
        self.n_unknown += int(np.count_nonzero(~ok))
        return self.update(equip["ts_ms"][ok], elem[ok], mid[ok], equip["value"][ok])

    def _classify(self, rows: np.ndarray, batch_slot: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return rows
        cc = self.classify_config
        det = self.detector
        n_el = self.topology.n_elements
        nm = self.n_metrics
        # deviating now: an open episode, or a warm point of this batch beyond shared_z sigmas
        dev_dir = det.open_direction.astype(np.int64)
        last = det.last
        near = ((last.flags & _k.FLAG_WARM) != 0) & (np.abs(np.nan_to_num(last.z)) >= cc.shared_z)
        dev_dir[batch_slot[near]] = np.where(
            dev_dir[batch_slot[near]] != 0, dev_dir[batch_slot[near]], np.sign(last.z[near]).astype(np.int64)
        )
        open_dir = dev_dir.reshape(n_el, nm)
        active = (det.n_obs > 0).reshape(n_el, nm)
        elem = rows["slot"] // nm
        met = rows["slot"] % nm
        d = rows["direction"].astype(np.int64)
        is_ep = rows["classification"] != "change"
        out_cls = np.where(is_ep, "fault", "change").astype("U16")
        scope_level = np.full(len(rows), "element", dtype="U8")
        scope_id = rows["element_id"].copy()
        closing = rows["end_ms"] >= 0
        # episodes closing keep the class they opened with
        prev = self.slot_class[rows["slot"]]
        # site first, then region: a region-wide surge is the wider explanation and wins
        for level, min_n, frac, name in (
            ("site", cc.crowd_min_elements, cc.crowd_fraction, "crowd"),
            ("region", cc.surge_min_elements, cc.surge_fraction, "surge"),
        ):
            node = self._level_index(level)
            n_nodes = len(self._level_ids(level))
            # per (node, metric) sums as one bincount over flat (node * nm + metric) keys
            gidx = (node[:, None] * nm + np.arange(nm)[None, :]).ravel()
            tot = np.bincount(gidx, weights=active.ravel().astype(np.float64), minlength=n_nodes * nm).reshape(
                n_nodes, nm
            )
            for sign in (1, -1):
                # same-direction open deviations per (node, metric)
                cnt = np.bincount(
                    gidx, weights=(open_dir == sign).ravel().astype(np.float64), minlength=n_nodes * nm
                ).reshape(n_nodes, nm)
                nd = node[elem]
                c = cnt[nd, met]
                share = c / np.maximum(tot[nd, met], 1.0)
                hit = is_ep & (d == sign) & (c >= min_n) & (share >= frac)
                out_cls[hit] = name
                scope_level[hit] = level
                scope_id[hit] = self._level_ids(level)[nd[hit]]
        # a parent's failure (open fault or silence) inhibits its children
        par = self.parent_element[elem]
        has_par = par >= 0
        par_down = np.zeros(len(rows), dtype=bool)
        if np.any(has_par):
            pslots = par[has_par][:, None] * nm + np.arange(nm)[None, :]
            pcls = self.slot_class[pslots]
            par_fault = np.any(pcls == CLASSIFICATIONS.index("fault"), axis=1)
            par_down[has_par] = par_fault | self.silence.silent[par[has_par]]
        out_cls[is_ep & par_down & (out_cls == "fault")] = "inhibited"
        # closing rows report the class given at opening
        known = closing & is_ep & (prev >= 0)
        if np.any(known):
            out_cls[known] = np.array(CLASSIFICATIONS)[prev[known]]
        code = np.array([CLASSIFICATIONS.index(c) for c in out_cls], dtype=np.int8)
        opening = is_ep & ~closing
        self.slot_class[rows["slot"][opening]] = code[opening]
        self.slot_class[rows["slot"][closing & is_ep]] = -1
        rows["classification"] = out_cls
        rows["scope_level"] = scope_level
        rows["scope_id"] = scope_id
        return rows

    def check_silence(self, now_ms: int) -> np.ndarray:
        """Silence records at time ``now_ms`` (the pipeline's watermark).

        Elements whose next report is overdue become ``"silence"`` rows (suspected failure, open);
        when at least ``gap_min_elements`` and ``gap_fraction`` of a region's tracked elements are
        silent together they are ``"collection_gap"`` rows (scope region) instead, and elements whose
        parent element is silent are ``"inhibited"``. Elements that report again produce closing
        rows (``end_ms`` = their last report before the silence ends, i.e. the resume time).
        A flagged element is re-issued (same ``start_ms``, new ``t_ms``) when its explanation
        changes: its region becomes a collection gap, or it stays silent after the gap ended.
        """
        newly, resumed = self.silence.check(now_ms)
        mon = self.silence
        cc = self.classify_config
        region = self._level_index("region")
        rids = self._level_ids("region")
        tracked = mon.n_reports >= mon.min_reports
        n_reg = len(rids)
        silent_cnt = np.bincount(region[mon.silent], minlength=n_reg)
        tracked_cnt = np.bincount(region[tracked], minlength=n_reg)
        gap_region = (silent_cnt >= cc.gap_min_elements) & (silent_cnt >= cc.gap_fraction * np.maximum(tracked_cnt, 1))
        eids = self.topology.ids[self.topology.element_level]
        # re-issue flagged elements whose explanation changed: a region that now turns out to be
        # a collection gap, or an element still silent after its region's gap ended (a failure
        # hidden by the gap)
        cur = self._silence_class()
        reissue = np.flatnonzero(
            mon.silent & ((gap_region[region] & (cur == "silence")) | (~gap_region[region] & (cur == "collection_gap")))
        )
        flagged = np.union1d(newly, reissue).astype(np.int64)
        rows = np.zeros(len(flagged) + len(resumed), dtype=ANOMALY_DTYPE)
        k = len(flagged)
        cls = np.where(gap_region[region[flagged]], "collection_gap", "silence").astype("U16")
        par = self.parent_element[flagged]
        inhib = (cls == "silence") & (par >= 0)
        inhib[inhib] = mon.silent[par[inhib]]
        cls[inhib] = "inhibited"
        rows["slot"][:k] = flagged * self.n_metrics
        rows["element_id"][:k] = eids[flagged]
        rows["start_ms"][:k] = mon.silent_since[flagged]
        rows["end_ms"][:k] = -1
        rows["peak_score"][:k] = (int(now_ms) - mon.last_ts[flagged]) / np.maximum(mon.gap_ms[flagged], 1.0)
        rows["classification"][:k] = cls
        rows["baseline"][:k] = mon.gap_ms[flagged]
        rows["threshold"][:k] = mon.gap_factor * mon.gap_ms[flagged] + mon.slack_ms
        rows["value"][:k] = int(now_ms) - mon.last_ts[flagged]
        gap = cls == "collection_gap"
        rows["scope_level"][:k] = np.where(gap, "region", "element")
        rows["scope_id"][:k] = np.where(gap, rids[region[flagged]], eids[flagged])
        self._silence_cls[flagged] = cls
        rr = rows[k:]
        rr["slot"] = resumed * self.n_metrics
        rr["element_id"] = eids[resumed]
        rr["start_ms"] = self._silence_start[resumed]
        rr["end_ms"] = mon.last_ts[resumed]
        rr["classification"] = self._silence_cls[resumed]
        rr["baseline"] = mon.gap_ms[resumed]
        rr["threshold"] = mon.gap_factor * mon.gap_ms[resumed] + mon.slack_ms
        rr["value"] = mon.last_ts[resumed] - self._silence_start[resumed]
        rr["peak_score"] = rr["value"] / np.maximum(mon.gap_ms[resumed], 1.0)
        rr["scope_level"] = "element"
        rr["scope_id"] = eids[resumed]
        rows["direction"] = -1
        rows["metric"] = ""
        rows["t_ms"] = int(now_ms)
        self._silence_start[flagged] = mon.silent_since[flagged]
        self._silence_cls[resumed] = ""
        return rows

    def set_topology(self, topology: Topology, parent_element=None):
        """Follow a new topology version (from ``Topology.add_elements`` / ``retire_elements`` /
        ``rehome_elements`` or ``reconcile``: existing elements keep their dense indices).

        Added elements get fresh slots (cold baselines, the per-metric floors and confirmation
        counts of the other elements); every existing slot keeps its learned state; re-homed
        elements are classified by their new site and region from now on.

        Raises
        ------
        ValueError
            If the new topology has fewer elements (dense indices must be stable).
        """
        _check(isinstance(topology, Topology), f"topology must be a Topology, got {type(topology).__name__}")
        n_old, n_new = self.topology.n_elements, topology.n_elements
        _check(
            n_new >= n_old,
            f"the new topology has {n_new} elements, fewer than {n_old}; dense element "
            "indices must stay stable (retire elements instead of removing them)",
        )
        self._silence_class()
        if n_new > n_old:
            det, nm = self.detector, self.n_metrics
            old_slots = det.n_slots
            det.grow(n_new * nm)
            new = np.arange(old_slots, n_new * nm)
            det.slot_element_id[new] = np.repeat(topology.ids[topology.element_level][n_old:], nm)
            det.slot_metric[new] = np.tile(np.array(self.metrics, dtype="U24"), n_new - n_old)
            det.slot_floor[new] = det.slot_floor[new % nm]  # same per-metric settings as element 0
            det.slot_confirm[new] = det.slot_confirm[new % nm]
            self.silence.grow(n_new)
            self.slot_class = np.concatenate([self.slot_class, np.full(len(new), -1, dtype=np.int8)])
            self._silence_cls = np.concatenate([self._silence_cls, np.full(n_new - n_old, "", dtype="U16")])
            self._silence_start = np.concatenate([self._silence_start, np.full(n_new - n_old, -1, dtype=np.int64)])
        self.topology = topology
        self.parent_element = (
            default_parents(topology) if parent_element is None else _as_1d("parent_element", parent_element, np.int64)
        )

    def _silence_class(self) -> np.ndarray:
        if not hasattr(self, "_silence_cls") or len(self._silence_cls) != self.topology.n_elements:
            self._silence_cls = np.full(self.topology.n_elements, "", dtype="U16")
            self._silence_start = np.full(self.topology.n_elements, -1, dtype=np.int64)
        return self._silence_cls

    # ---- state -----------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Checkpoint (the topology, calendar and configs are supplied again on restore)."""
        self._silence_class()
        return {
            "kind": "NetworkAnomalyDetector",
            "detector": self.detector.to_state(),
            "silence": self.silence.to_state(),
            "slot_class": self.slot_class.copy(),
            "silence_cls": self._silence_cls.copy(),
            "silence_start": self._silence_start.copy(),
            "n_unknown": self.n_unknown,
            "metrics": np.array(self.metrics),
            "silence_metric": self.silence_metric.copy(),
            "log_offset": self.log_offset.copy(),
        }

    @classmethod
    def from_state(
        cls, d: dict, topology: Topology, classify: ClassifyConfig | None = None, calendar=None, parent_element=None
    ) -> NetworkAnomalyDetector:
        """Restore from :meth:`to_state` output with the same topology."""
        _check(
            d.get("kind") == "NetworkAnomalyDetector",
            f"state is not a NetworkAnomalyDetector checkpoint (kind={d.get('kind')!r})",
        )
        det = AnomalyDetector.from_state(d["detector"])
        net = cls(topology, tuple(str(m) for m in d["metrics"]), det.config, classify, calendar, parent_element)
        _check(
            net.detector.n_slots == det.n_slots,
            f"checkpoint has {det.n_slots} slots but the topology gives {net.detector.n_slots}",
        )
        net.detector = det
        net.silence = SilenceMonitor.from_state(d["silence"])
        net.slot_class = np.array(d["slot_class"], dtype=np.int8)
        net._silence_cls = np.array(d["silence_cls"], dtype="U16")
        net._silence_start = np.array(d["silence_start"], dtype=np.int64)
        net.n_unknown = int(d["n_unknown"])
        net.silence_metric = np.array(d["silence_metric"], dtype=bool)
        net.log_offset = np.array(d["log_offset"], dtype=np.float64)
        return net
