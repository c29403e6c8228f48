"""Settings of the anomaly detector: :class:`DetectorConfig` (time-based, scaled to the series'
sampling interval), the metric registry (per-metric transform, floor, confirmation, bounds) and the
anomaly record.

Settings that describe time are given in seconds and turned into per-observation factors with the
series' interval ``interval_s``, so one configuration means the same on 10-s telemetry and on
hourly counters. :meth:`DetectorConfig.for_interval` gives the documented defaults:

==============  ===========  ==========  =========  ============  ==============
interval        warm-up      close after  level       scale         season
==============  ===========  ==========  =========  ============  ==============
10 s telemetry  20 points    3 points    1 h half    6 h half      hour of day/week
1 min           20 points    3 points    1 h         6 h           hour of day/week
5 min counters  20 points    3 points    1 h         6 h           hour of day/week
hourly          20 points    2 points    12 h        3 days        hour of day/week
==============  ===========  ==========  =========  ============  ==============

(half = half-life of the exponentially weighted estimate.)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields

import numpy as np

from kernels import detect as _k

NAME_LEN = 64
"""Longest metric name the anomaly record holds; longer names are refused, never cut."""

ANOMALY_DTYPE = np.dtype(
    [
        ("slot", "i8"),
        ("element_id", "i8"),  # external element id (-1 when the slot has no element)
        ("metric", f"U{NAME_LEN}"),
        ("start_ms", "i8"),
        ("end_ms", "i8"),  # -1 while the episode is open
        ("peak_score", "f8"),  # peak calibrated score (-log10 tail probability) of the episode so far
        ("direction", "i1"),  # +1 above baseline, -1 below
        ("classification", "U16"),  # fault|silence|crowd|surge|collection_gap|change|inhibited
        ("baseline", "f8"),  # baseline at the peak
        ("threshold", "f8"),  # effective score threshold at the peak
        ("value", "f8"),  # observed value at the peak
        ("scope_level", "U16"),  # "element" or the topology level of a crowd/surge/gap
        ("scope_id", "i8"),  # external id of the scope node
        ("t_ms", "i8"),  # event time of this transition (open/close/change/check)
    ]
)
"""One anomaly episode (open or closed). ``peak_score`` is on the calibrated scale: ``s`` means an
estimated probability ``10**-s`` per observation of a deviation at least this large."""

CLASSIFICATIONS = ("fault", "silence", "crowd", "surge", "collection_gap", "change", "inhibited")


def _check(cond: bool, msg: str):
    if not cond:
        raise ValueError(msg)


def _as_1d(name: str, a, dtype) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.dtype(dtype).kind in "iu" and arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "M" and name.startswith("ts"):
            raise ValueError(f"{name} is datetime64; pass it through to_ms() first")
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def to_ms(ts, name: str = "ts_ms") -> np.ndarray:
    """Event times as int64 ms UTC from int64 ms or ``datetime64`` (any unit; naive = UTC).

    >>> to_ms(np.array(["2024-01-01T00:00:01"], dtype="datetime64[s]")).tolist()
    [1704067201000]
    """
    arr = np.asarray(ts)
    if arr.dtype.kind == "M":
        nat = np.isnat(arr)
        if nat.any():
            raise ValueError(f"{name} holds NaT at index {int(np.flatnonzero(nat)[0])}; drop or fill those rows")
        return np.ascontiguousarray(arr.astype("datetime64[ms]").astype(np.int64))
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be int64 ms UTC or datetime64, got dtype {arr.dtype} "
            "(convert strings with np.array(..., dtype='datetime64[ms]'))"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def _alpha(interval_s: float, halflife_s: float) -> float:
    """Per-observation EW factor of a half-life given in seconds."""
    return 1.0 - 0.5 ** (interval_s / halflife_s)


@dataclass
class DetectorConfig:
    """Parameters of the detector; times are in seconds and scale with ``interval_s``.

    Parameters
    ----------
    interval_s : float
        Sampling interval of the series (1 s to 1 h); per-observation factors derive from it.
    season : str
        ``"auto"`` (hour of day, then hour of week, each earned by cycles of evidence and shrunk
        towards the coarser level), ``"day"`` (hour of day only) or ``"none"``.
    bucket_s : float
        Length of a seasonal bucket (default one hour).
    season_prior : float
        Cycles of evidence at which a bucket gets half its weight (shrinkage prior).
    season_alpha : float
        EW factor of a bucket per cycle once it has ``1 / season_alpha`` cycles.
    level_halflife_s, scale_halflife_s : float
        Half-lives of the level and of the robust scale.
    huber_c : float
        Residuals beyond ``huber_c`` sigmas are clipped before they update the baseline.
    floor_abs, floor_rel : float
        Sigma floor ``floor_abs + floor_rel * |baseline|`` (flat or integer series).
    warmup : int
        Observations per slot before it may alarm.
    tail_p : float
        Tail probability of the tracked quantile ``q`` of ``|z|`` (the score's anchor).
    tune_eta : float
        Step of ``log q`` per observation.
    q_max : float
        Upper bound of ``q``; its lower bound is the Gaussian ``(1 - tail_p)`` quantile of ``|z|``.
    threshold : float
        Alarm threshold ``S`` on the score (``-log10`` tail probability per observation).
    budget_fa, budget_eta, gain_max : float
        Network-wide alert budget (fraction of scored events; 1 disables it), step and bound of
        the common gain on every threshold.
    cusum_k, cusum_h, cusum_clip : float
        CUSUM allowance, decision limit and per-point clip, in sigmas.
    close_after : int
        Normal observations that close an episode.
    adapt_s : float
        An episode open this long is accepted as the new normal (0: never).
    recovery_s : float
        How long the level before such an adaptation is remembered: a return to it is a recovery.
    refire_s : float
        Within this time after an episode of a slot closed, a new one is reported only if its peak
        score beats the closed one's (0: report every episode). Default 4 h: the window every NAB
        leave-one-folder-out fold chose on its training folders (``evaluate nab``).
    season_snr : bool
        True: a seasonal bucket's weight is earned by the evidence of its offset ``o`` after ``e``
        cycles, ``e o^2 / (e o^2 + season_prior sigma^2)`` (a large steady offset counts after one
        cycle, a noise-sized one stays shrunk), buckets hold running means of the deviation from the
        level and the week bucket its difference from the day's. False: the weight is
        ``e / (e + season_prior)``. On by default: on the shared NAB files (leave one folder out,
        mean standard score) it gives 57.8 against 47.7 without it, and it keeps the synthetic
        targets. It was off while it failed the pipeline's order tests; both causes are fixed: a
        late row's CUSUM term (``learn_late_s``), and a collection gap whose resolution depended on
        when the silence checks ran (resume times and a region's gap end are now event times, see
        ``NetworkAnomalyDetector.check_silence``).
    recur_tol : float
        Learning from recurrence: an alarm point whose residual has the sign of, and lies within
        ``recur_tol`` (relative) of, the last anomalous residual at the same phase of the day on the
        previous day is season, not anomaly: it does not alarm and teaches the seasonal buckets
        (not the level or the scale). 0 disables it.
    learn_late_s : float
        An event at most this much older than its slot's latest event is learned (it adds no
        seasonal evidence and takes no part in episodes); an older one is scored only. Replaying
        the same rows merged by event time and in arrival order then learns the same points.
    gate_g : float
        Score gate: an episode is reported only from an alarm point whose capped score stands out
        from the slot's own recent scores, ``(min(score, gate_cap) - m) / max(s, 0.1) > gate_g``,
        with ``m`` and ``s`` the exponentially weighted mean and standard deviation of the slot's
        earlier capped scores (half-life ``gate_halflife_s``). An episode none of whose points
        stands out is tracked silently (it closes, and counts for the re-fire rule, like a
        suppressed re-fire). A quiet series pages at the threshold ``S``; one whose scores are
        often high (noisy, regime-switching) needs a deviation that is rare for it. 0 disables it.
        The gate never changes scores, baselines or what is learned: only which episodes page.
        Default 3 with a one-day half-life: the setting that ``python -m telcoanalytics.evaluate nab``
        chooses (with ``threshold`` and ``refire_s``) on the training folders of every fold, checked
        on the router telemetry and the synthetic network before it became the default.
    gate_halflife_s : float
        Half-life of the gate's mean and standard deviation (time; per observation it scales with
        ``interval_s`` like the other half-lives).
    gate_cap : float
        Scores are capped here before they enter the gate (one huge score neither dominates the
        spread nor blinds the gate for long).
    """

    interval_s: float = 300.0
    season: str = "auto"
    bucket_s: float = 900.0
    season_prior: float = 2.0
    season_alpha: float = 0.3
    level_halflife_s: float = 3600.0
    scale_halflife_s: float = 6 * 3600.0
    huber_c: float = 3.0
    floor_abs: float = 1e-6
    floor_rel: float = 1e-3
    warmup: int = 20
    tail_p: float = 0.01
    tune_eta: float = 0.02
    q_max: float = 1e3
    threshold: float = 3.0
    budget_fa: float = 1.0
    budget_eta: float = 0.01
    gain_max: float = 4.0
    cusum_k: float = 0.5
    cusum_h: float = 12.0
    cusum_clip: float = 4.0
    close_after: int = 3
    adapt_s: float = 12 * 3600.0
    recovery_s: float = 7 * 86400.0
    refire_s: float = 14400.0
    season_snr: bool = True
    recur_tol: float = 0.5
    learn_late_s: float = 900.0
    gate_g: float = 3.0
    gate_halflife_s: float = 86400.0
    gate_cap: float = 50.0

    def __post_init__(self):
        _check(self.season in ("auto", "day", "none"), f"season must be 'auto', 'day' or 'none', got {self.season!r}")
        for f in fields(self):
            if f.name != "season":
                v = getattr(self, f.name)
                _check(np.isfinite(v), f"DetectorConfig.{f.name} must be finite, got {v!r}")
        _check(0.001 <= self.interval_s <= 86400, f"interval_s must be in [0.001, 86400] s, got {self.interval_s}")
        _check(self.bucket_s > 0 and self.season_prior > 0, "bucket_s and season_prior must be > 0")
        _check(0 < self.season_alpha <= 1, f"season_alpha must be in (0, 1], got {self.season_alpha}")
        for name in (
            "level_halflife_s",
            "scale_halflife_s",
            "huber_c",
            "threshold",
            "cusum_h",
            "cusum_clip",
            "gate_halflife_s",
            "gate_cap",
        ):
            _check(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        _check(
            self.floor_abs >= 0 and self.floor_rel >= 0 and self.floor_abs + self.floor_rel > 0,
            f"floor_abs and floor_rel must be >= 0 and not both 0, got {self.floor_abs}, {self.floor_rel}",
        )
        _check(0 < self.tail_p < 0.5, f"tail_p must be in (0, 0.5), got {self.tail_p}")
        _check(0 < self.budget_fa <= 1, f"budget_fa must be in (0, 1] (1 disables the budget), got {self.budget_fa}")
        _check(0 <= self.tune_eta < 1, f"tune_eta must be in [0, 1), got {self.tune_eta}")
        _check(0 <= self.budget_eta < 1, f"budget_eta must be in [0, 1), got {self.budget_eta}")
        _check(self.gain_max >= 1, f"gain_max must be >= 1, got {self.gain_max}")
        _check(self.cusum_k >= 0, f"cusum_k must be >= 0, got {self.cusum_k}")
        _check(self.q_max > self.q_min, f"q_max must exceed the Gaussian quantile {self.q_min:.3f}, got {self.q_max}")
        _check(self.gate_g >= 0, f"gate_g must be >= 0 (0 disables the score gate), got {self.gate_g}")
        _check(self.recur_tol >= 0, f"recur_tol must be >= 0 (0 disables it), got {self.recur_tol}")
        _check(
            self.learn_late_s >= 0,
            f"learn_late_s must be >= 0 (0: late events are not learned), got {self.learn_late_s}",
        )
        for name in ("warmup", "close_after"):
            v = getattr(self, name)
            _check(v >= 1 and int(v) == v, f"{name} must be an integer >= 1, got {v}")
        _check(
            self.adapt_s >= 0 and self.recovery_s >= 0 and self.refire_s >= 0,
            "adapt_s, recovery_s and refire_s must be >= 0",
        )

    @classmethod
    def for_interval(cls, interval_s: float, **overrides) -> DetectorConfig:
        """Documented defaults for a sampling interval (see the module table); ``overrides`` win.

        >>> DetectorConfig.for_interval(10).interval_s, DetectorConfig.for_interval(3600).close_after
        (10.0, 2)
        """
        _check(1 <= interval_s <= 3600, f"interval_s must be between 1 s and 1 h, got {interval_s}")
        kw: dict = {"interval_s": float(interval_s)}
        if interval_s >= 1800:
            kw.update(level_halflife_s=12 * 3600.0, scale_halflife_s=3 * 86400.0, close_after=2, bucket_s=3600.0)
        kw.update(overrides)
        return cls(**kw)

    # ---- derived per-observation settings ---------------------------------------------------
    @property
    def q_min(self) -> float:
        """Gaussian ``(1 - tail_p)`` quantile of ``|z|``: the lightest tail the score assumes."""
        from scipy.special import ndtri

        return float(ndtri(1.0 - self.tail_p / 2.0))

    @property
    def level_alpha(self) -> float:
        return _alpha(self.interval_s, self.level_halflife_s)

    @property
    def scale_alpha(self) -> float:
        return _alpha(self.interval_s, self.scale_halflife_s)

    @property
    def gate_alpha(self) -> float:
        return _alpha(self.interval_s, self.gate_halflife_s)

    def params(self, sp: np.ndarray) -> _k.Params:
        """Kernel parameters with the per-slot settings ``sp`` (n_slots, ``N_SP``)."""
        bucket_ms = int(round(self.bucket_s * 1000)) if self.season != "none" else 0
        n_day = max(1, int(round(86400.0 / self.bucket_s))) if bucket_ms else 0
        n_week = 7 * n_day if (bucket_ms and self.season == "auto") else 0
        eta, p = self.tune_eta, self.tail_p
        return _k.Params(
            bucket_ms,
            n_day,
            n_week,
            float(self.season_prior),
            float(self.level_alpha),
            float(self.season_alpha),
            float(self.scale_alpha),
            float(self.huber_c),
            float(self.floor_rel),
            float(self.warmup),
            math.exp(-eta * (1.0 - p)),
            math.exp(eta * p),
            -math.log10(p) / float(self.q_max),
            -math.log10(p) / self.q_min,
            -math.log10(p),
            float(self.threshold),
            float(self.budget_fa),
            float(self.budget_eta),
            float(self.gain_max),
            float(self.cusum_k),
            float(self.cusum_h),
            float(self.cusum_clip),
            float(self.close_after),
            int(round(self.adapt_s * 1000)),
            int(round(self.recovery_s * 1000)),
            int(round(self.refire_s * 1000)),
            1.0 if self.season_snr else 0.0,
            float(self.recur_tol),
            int(round(self.learn_late_s * 1000)),
            float(self.gate_g),
            float(self.gate_alpha),
            float(self.gate_cap),
            sp,
        )


# ================================================================================================
# metric registry
# ================================================================================================
@dataclass(frozen=True)
class MetricSpec:
    """How one metric is scored.

    Parameters
    ----------
    name : str
        Full metric name (at most :data:`NAME_LEN` characters; never cut).
    log_offset : float or None
        Score ``log(max(x, 0) + log_offset)`` (skewed positive quantities whose noise grows
        with their level); rows report values in the metric's unit.
    floor : float or None
        Absolute sigma floor in the scored unit (None: ``DetectorConfig.floor_abs``).
    confirm : int
        Consecutive alarm points before an episode opens.
    nonneg : bool
        The metric cannot be negative: its baseline never goes below 0.
    threshold_scale : float
        Multiplier of the score threshold for this metric (1: as configured).
    """

    name: str
    log_offset: float | None = None
    floor: float | None = None
    confirm: int = 1
    nonneg: bool = False
    threshold_scale: float = 1.0

    def __post_init__(self):
        _check(
            isinstance(self.name, str) and self.name != "", f"metric name must be a non-empty str, got {self.name!r}"
        )
        _check(
            len(self.name) <= NAME_LEN,
            f"metric name {self.name!r} has {len(self.name)} characters; the anomaly record holds {NAME_LEN} "
            "(names are never cut: register a shorter alias)",
        )
        _check(self.log_offset is None or self.log_offset > 0, f"{self.name}: log_offset must be > 0")
        _check(self.floor is None or self.floor >= 0, f"{self.name}: floor must be >= 0")
        _check(int(self.confirm) == self.confirm and 1 <= self.confirm <= 1000, f"{self.name}: confirm in 1..1000")
        _check(self.threshold_scale > 0, f"{self.name}: threshold_scale must be > 0")


class MetricRegistry:
    """Per-metric settings by full name; a name without settings gets the defaults and a warning.

    >>> reg = MetricRegistry([MetricSpec("if_in_kbps", log_offset=1.0, nonneg=True)])
    >>> reg.get("if_in_kbps").nonneg
    True
    """

    def __init__(self, specs=()):
        self._specs: dict[str, MetricSpec] = {}
        for s in specs:
            self.register(s)

    def register(self, spec: MetricSpec) -> MetricRegistry:
        _check(isinstance(spec, MetricSpec), f"expected a MetricSpec, got {type(spec).__name__}")
        self._specs[spec.name] = spec
        return self

    def __contains__(self, name) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str, warn: bool = True) -> MetricSpec:
        """Settings of ``name``; unknown names get defaults (with a ``UserWarning`` if ``warn``)."""
        spec = self._specs.get(name)
        if spec is None:
            if warn:
                warnings.warn(
                    f"metric {name!r} has no settings in the metric registry; scoring it with the defaults "
                    "(register a MetricSpec for it to set its transform, floor, bounds and confirmation)",
                    UserWarning,
                    stacklevel=3,
                )
            spec = MetricSpec(name)
        return spec


DEFAULT_REGISTRY = MetricRegistry(
    [
        MetricSpec("cpu_util_pct", nonneg=True),
        MetricSpec("prb_util_pct", nonneg=True),
        MetricSpec("throughput_mbps", log_offset=1.0, floor=0.02, nonneg=True),
        MetricSpec("unavailable_s", floor=10.0, confirm=2, nonneg=True),
        MetricSpec("error_count", log_offset=1.0, floor=0.3, nonneg=True),
        MetricSpec("temperature_c"),
        MetricSpec("latency_ms", log_offset=1.0, floor=0.1, nonneg=True),
        MetricSpec("jitter_ms", log_offset=1.0, nonneg=True),
        MetricSpec("loss_pct", log_offset=0.05, floor=0.3, nonneg=True),
    ]
)
"""Settings of the project's own metrics (the synthetic network's PM counters and QoS)."""

DEFAULT_METRIC_TRANSFORM = {s: DEFAULT_REGISTRY.get(s).log_offset for s in DEFAULT_REGISTRY.names()}
DEFAULT_METRIC_TRANSFORM = {k: v for k, v in DEFAULT_METRIC_TRANSFORM.items() if v is not None}
DEFAULT_METRIC_FLOOR = {k: DEFAULT_REGISTRY.get(k).floor for k in DEFAULT_REGISTRY.names()}
DEFAULT_METRIC_FLOOR = {k: v for k, v in DEFAULT_METRIC_FLOOR.items() if v is not None}
DEFAULT_METRIC_CONFIRM = {k: DEFAULT_REGISTRY.get(k).confirm for k in DEFAULT_REGISTRY.names()}
DEFAULT_METRIC_CONFIRM = {k: v for k, v in DEFAULT_METRIC_CONFIRM.items() if v != 1}
