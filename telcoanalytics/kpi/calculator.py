"""KPI evaluation: window sums of counters turned into KPI values at any topology level.

A :class:`KpiCalculator` evaluates KPI definitions over a :class:`~telcoanalytics.kpi.store.CounterStore`,
always as ratios of sums (3GPP TS 32.401 aggregation), each with the sample count it rests on
and a status (ok / insufficient samples / collection gap / out of scope). Late-data
re-evaluation over spans of ticks lives in :mod:`telcoanalytics.kpi.span`.
"""

from __future__ import annotations

import numpy as np

from kernels import kpi as K
from kernels.emodel import kpi_emodel_mos
from telcoanalytics.kpi.definitions import (
    ACTIVITY_COUNTER,
    BUILTIN_KPIS,
    COUNTERS,
    EMODEL_G711_PLC,
    STATUS_NO_SCOPE,
    KpiDef,
    KpiResult,
)
from telcoanalytics.kpi.span import _SpanEvaluation
from telcoanalytics.kpi.store import CounterStore
from telcoanalytics.records import (
    SERVICE_CODE,
    SERVICES,
)


class KpiCalculator(_SpanEvaluation):
    """Evaluate KPI definitions over windows of a :class:`CounterStore` at any topology level.

    Window sums per (counter, service, window) are cached per store version, so many rules over
    the same counters and windows cost one pass over the ring.

    Parameters
    ----------
    store : CounterStore
    kpis : dict name -> KpiDef, optional
        Default: :data:`BUILTIN_KPIS`.
    gap_fraction : float
        A window is a collection gap when the scope's elements reported in fewer than
        ``gap_fraction`` of the minutes they would report in at their usual rate (measured over
        the rest of the ring).
    gap_sources : tuple of str
        Sources that report periodically, for which a silent window means a collection gap
        (equipment PM and QoS probes). Call records are excluded by default: no calls is not a
        gap but no traffic, which ``min_samples`` handles.

    Notes
    -----
    Ratios are ratios of sums over the window and over the elements of a node, never means of
    ratios (3GPP TS 32.401 aggregation).
    """

    def __init__(
        self, store: CounterStore, kpis: dict | None = None, gap_fraction: float = 0.5, gap_sources=("equip", "qos")
    ):
        self.store = store
        bad = [s for s in gap_sources if s not in ACTIVITY_COUNTER]
        if bad:
            raise ValueError(f"gap_sources {bad} unknown; choose from {sorted(ACTIVITY_COUNTER)}")
        self.gap_sources = tuple(gap_sources)
        self.kpis = dict(kpis) if kpis is not None else dict(BUILTIN_KPIS)
        if not 0.0 <= gap_fraction < 1.0:
            raise ValueError(f"gap_fraction must be in [0, 1), got {gap_fraction}")
        self.gap_fraction = float(gap_fraction)
        self._cache: dict = {}
        self._cache_version = -1
        self._all_rows = np.arange(store.topology.n_elements, dtype=np.int64)
        self._sizes: dict = {}
        self._plans: dict = {}  # fused ratio path: ring columns and positions per KPI / window
        self._act_spec: dict = {}  # source -> (ring group, columns) of its activity counter
        self._seg_cache: dict = {}  # (level, mask id) -> (topology, mask, seg, n_el)
        self._span: tuple | None = None  # (t_from, t_to) of a re-evaluation (see begin_series)
        self._span_cache: dict = {}
        self._span_keys: dict = {}
        self._span_rows: dict = {}

    def get(self, kpi) -> KpiDef:
        if isinstance(kpi, KpiDef):
            return kpi
        try:
            return self.kpis[kpi]
        except KeyError:
            raise ValueError(f"unknown KPI {kpi!r}; known: {', '.join(sorted(self.kpis))}") from None

    def _check_cache(self):
        if self._cache_version != self.store.version:
            self._cache.clear()
            self._cache_version = self.store.version

    def counter_sums(
        self, counters, service: str, end_minute: int, window_min: int, rows: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Window sum of each counter per element of ``rows`` (all elements when None).

        For all elements the sums come from running per-window aggregates of the store
        (:meth:`CounterStore.running`: one minute in and one out per tick); for a subset of
        rows (re-evaluation after late data) they are summed from the ring.
        """
        self._check_cache()
        st = self.store
        out: dict[str, np.ndarray] = {}
        todo: dict[str, list] = {"cdr": [], "elem": []}
        for c in dict.fromkeys(counters):
            key = (c, service if COUNTERS[c].group == "cdr" else "", end_minute, window_min)
            if rows is None and key in self._cache:
                out[c] = self._cache[key]
            else:
                todo[COUNTERS[c].group].append(c)
        if rows is None:
            for grp, names in todo.items():
                if not names:
                    continue
                svc = service if grp == "cdr" else ""
                cols = {c: st.columns(c, svc) for c in names}
                run = st.running(
                    ("win", grp, window_min),
                    grp,
                    "sum",
                    np.concatenate(list(cols.values())),
                    end_minute - window_min,
                    end_minute,
                )
                for c in names:
                    # the counter's columns (one per service) added left to right in one pass
                    v = np.empty(len(run.out))
                    K.kpi_sum_columns(run.out, np.array([run.colpos[int(x)] for x in cols[c]], np.int64), v)
                    out[c] = v
                    self._cache[(c, svc, end_minute, window_min)] = v
            return out
        r = rows
        if self._in_span(end_minute, rows):
            k = end_minute - self._span[0]
            for c, ser in self._span_counter_series(todo, service, window_min, rows).items():
                out[c] = np.ascontiguousarray(ser[k])
            return out
        slots = st.window_slots(end_minute, window_min)
        for grp, names in todo.items():
            if not names:
                continue
            cols, outc = [], []
            for j, c in enumerate(names):
                cc = st.columns(c, service if grp == "cdr" else "")
                cols.append(cc)
                outc.append(np.full(len(cc), j, np.int64))
            res = np.zeros((len(r), len(names)))
            K.kpi_window_sum(st.ring_of(grp), r, slots, np.concatenate(cols), np.concatenate(outc), res)
            for j, c in enumerate(names):
                out[c] = np.ascontiguousarray(res[:, j])
        return out

    def hist_sums(self, end_minute: int, window_min: int, rows=None, copy: bool = True) -> np.ndarray:
        """Latency histogram counts over the window per element of ``rows`` (all when None).

        With ``copy=False`` (all elements) the result is the store's running aggregate itself:
        read it before the store changes and never write to it.
        """
        st = self.store
        cols = np.arange(st.n_bins, dtype=np.int64)
        if rows is None:
            res = st.running(("win", "hist", window_min), "hist", "sum", cols, end_minute - window_min, end_minute).out
            return res.copy() if copy else res
        if self._in_span(end_minute, rows):
            return self._span_hist_series(window_min, rows)[end_minute - self._span[0]]
        res = np.zeros((len(rows), st.n_bins))
        K.kpi_window_sum(st.hist, rows, st.window_slots(end_minute, window_min), cols, cols, res)
        return res

    def _expected_factor(self, end_minute: int, window_min: int) -> float:
        """Scale from active minutes before the window to the minutes expected in it (0: too little history)."""
        n_h = len(self.store.history_slots(end_minute, window_min))
        return window_min / n_h if n_h >= window_min else 0.0

    def activity(self, source: str, end_minute: int, window_min: int, rows=None):
        """Active minutes in the window and expected active minutes, per element of ``rows``."""
        self._check_cache()
        key = ("act", source, end_minute, window_min)
        if rows is None and key in self._cache:
            return self._cache[key]
        st = self.store
        factor = self._expected_factor(end_minute, window_min)
        if rows is None:
            active, hist_active, factor = self.activity_parts(source, end_minute, window_min)
        elif self._in_span(end_minute, rows):
            a, h = self._span_activity_series(source, window_min, rows)
            active, hist_active = a[end_minute - self._span[0]], h[end_minute - self._span[0]]
        else:
            grp = COUNTERS[ACTIVITY_COUNTER[source]].group
            active = np.zeros(len(rows), np.int64)
            hist_active = np.zeros(len(rows), np.int64)
            K.kpi_window_activity(
                st.ring_of(grp),
                rows,
                st.columns(ACTIVITY_COUNTER[source]),
                st.window_slots(end_minute, window_min),
                st.history_slots(end_minute, window_min),
                active,
                hist_active,
            )
        expected = hist_active * factor if factor > 0 else np.zeros(len(active))
        res = (active.astype(np.float64), expected)
        if rows is None:
            self._cache[key] = res
        return res

    def _node_sizes(self, level, seg, n_nodes, cacheable) -> np.ndarray:
        """Elements per node (rows with ``seg >= 0``); cached per level for the unmasked case."""
        key = ("size", level)
        if cacheable and key in self._sizes:
            return self._sizes[key]
        out = np.bincount(seg[seg >= 0], minlength=n_nodes).astype(np.float64)
        if cacheable:
            self._sizes[key] = out
        return out

    def _rollup(self, vecs: list[np.ndarray], seg: np.ndarray, n_nodes: int) -> np.ndarray:
        x = np.ascontiguousarray(np.column_stack(vecs)) if vecs else np.zeros((len(seg), 0))
        out = np.zeros((n_nodes, x.shape[1]))
        K.kpi_segment_sum(x, seg, out)
        return out

    @staticmethod
    def _check_args(kd: KpiDef, window_min: int, service: str) -> str:
        """The effective service of ``kd`` under ``service``; ValueError for a bad window or service."""
        if window_min < 1:
            raise ValueError(f"window_min must be >= 1 minute, got {window_min}")
        svc = service or kd.service
        if svc and svc not in SERVICE_CODE:
            raise ValueError(f"service {svc!r} is not one of {SERVICES}")
        if svc and kd.group != "cdr":
            raise ValueError(f"KPI {kd.name!r} is not a call KPI; a service filter does not apply")
        return svc

    @staticmethod
    def _names(kd: KpiDef) -> list:
        """Counters a KPI reads (its samples counter last unless already among them)."""
        if kd.kind == "mos":
            names = ["latency_sum", "latency_n", "jitter_sum", "jitter_n", "loss_sum", "loss_n"]
        elif kd.kind == "quantile":
            names = []
        else:
            names = list(kd.numerator) + list(kd.denominator)
        return list(dict.fromkeys(names + [kd.samples_counter]))

    @staticmethod
    def _value(kd: KpiDef, A: dict, window_min: int, shape) -> np.ndarray:
        """Value of a ratio / per_time / mos KPI from its rolled-up counter sums ``A`` (elementwise)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if kd.kind == "ratio":
                num = sum(A[c] for c in kd.numerator)
                den = sum(A[c] for c in kd.denominator)
                return np.where(den != 0, kd.scale * num / np.where(den != 0, den, 1.0), np.nan)
            if kd.kind == "per_time":
                return kd.scale * sum(A[c] for c in kd.numerator) / (window_min * 60.0)
            lat = A["latency_sum"] / A["latency_n"]
            jit = A["jitter_sum"] / A["jitter_n"]
            loss = A["loss_sum"] / A["loss_n"]
            value = np.empty(lat.size)
            kpi_emodel_mos(
                np.ascontiguousarray(lat).ravel(),
                np.ascontiguousarray(jit).ravel(),
                np.ascontiguousarray(loss).ravel(),
                *EMODEL_G711_PLC,
                np.empty(lat.size),
                value,
            )
            return value.reshape(shape)

    def compute(
        self,
        kpi,
        level: str,
        end_minute: int,
        window_min: int,
        service: str = "",
        element_mask: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        min_samples: float | None = None,
    ) -> KpiResult:
        """Evaluate one KPI for every node of ``level`` over minutes ``[end - window, end)``.

        Parameters
        ----------
        kpi : str or KpiDef
        level : str
            Topology level name.
        end_minute, window_min : int
            Absolute minute where the window ends (exclusive) and its length in minutes.
        service : str
            Call service filter ("" = the KPI's own service, or all).
        element_mask : bool array over elements, optional
            Scope filter; elements outside it contribute nothing.
        rows : int array, optional
            Evaluate only nodes containing these elements (others get status no_scope);
            used to re-evaluate the nodes touched by late data.
        min_samples : float, optional
            Override the KPI's ``min_samples``.

        Returns
        -------
        KpiResult

        Raises
        ------
        ValueError
            Unknown KPI, level or service, or a non-positive window.
        """
        kd = self.get(kpi)
        topo = self.store.topology
        n_nodes = topo.n_nodes(level)
        svc = self._check_args(kd, window_min, service)
        if rows is None and kd.kind == "ratio":
            return self._ratio_all(kd, level, end_minute, window_min, svc, element_mask, min_samples)
        r = self._all_rows if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        # element level over all elements: the roll-up is the identity (0 + x == x), skip it;
        # elements outside a scope mask become "no scope" nodes with 0 samples, as a roll-up gives
        identity = rows is None and level == topo.element_level
        n_full, node_ids = n_nodes, None
        if rows is not None:
            # a subset (re-evaluation): work on the nodes it touches only, scatter back at the end
            seg, node_ids = self._span_nodes(level, r, element_mask, end_minute, rows)
            n_nodes = len(node_ids)
        else:
            seg = None if identity else topo.element_to(level)[r].copy()
            if element_mask is not None and seg is not None:
                seg[~element_mask[r]] = -1
        samples_c = kd.samples_counter
        names = self._names(kd)
        sums = self.counter_sums(names, svc, end_minute, window_min, rows)
        gap = kd.source in self.gap_sources
        if gap:
            active, expected = self.activity(kd.source, end_minute, window_min, rows)
        if identity:
            A = {n: sums[n] for n in names}
            if element_mask is not None:
                A = {n: np.where(element_mask, v, 0.0) for n, v in A.items()}
            n_el = np.ones(n_nodes) if element_mask is None else element_mask.astype(np.float64)
            n_act, n_exp = (active, expected) if gap else (np.zeros(n_nodes), np.zeros(n_nodes))
        else:
            vecs = [sums[n] for n in names] + ([active, expected] if gap else [])
            agg = self._rollup(vecs, seg, n_nodes)
            A = {n: agg[:, j] for j, n in enumerate(names)}
            n_act, n_exp = (agg[:, -2], agg[:, -1]) if gap else (np.zeros(n_nodes), np.zeros(n_nodes))
            n_el = self._node_sizes(level, seg, n_nodes, rows is None and element_mask is None)
        if kd.kind == "quantile":
            h = self.hist_sums(end_minute, window_min, rows, copy=False)
            value = np.full(n_nodes, np.nan)
            lo_ms, bpo = self.store.hist_lo_ms, float(self.store.hist_bins_per_octave)
            if identity:
                sel = self._all_rows if element_mask is None else np.flatnonzero(element_mask)
                K.kpi_hist_quantile_rows(h, np.ascontiguousarray(sel, dtype=np.int64), kd.q, lo_ms, bpo, value)
            else:
                hn = np.zeros((n_nodes, h.shape[1]))
                K.kpi_segment_sum(h, seg, hn)
                K.kpi_hist_quantile(hn, kd.q, lo_ms, bpo, value)
        else:
            value = self._value(kd, A, window_min, (n_nodes,))
        samples = A[samples_c]
        ms = kd.min_samples if min_samples is None else float(min_samples)
        status = np.empty(n_nodes, np.int8)
        out_value = np.empty(n_nodes)
        K.kpi_status(
            np.ascontiguousarray(value, dtype=np.float64),
            np.ascontiguousarray(samples, dtype=np.float64),
            float(ms),
            np.ascontiguousarray(n_act, dtype=np.float64),
            np.ascontiguousarray(n_exp, dtype=np.float64),
            self.gap_fraction,
            np.ascontiguousarray(n_el, dtype=np.float64),
            status,
            out_value,
        )
        value = out_value
        if node_ids is not None:
            full = KpiResult(np.full(n_full, np.nan), np.zeros(n_full), np.full(n_full, STATUS_NO_SCOPE, np.int8))
            full.value[node_ids], full.samples[node_ids], full.status[node_ids] = value, samples, status
            return full
        return KpiResult(value, samples, status)

    def _segments(self, level: str, element_mask):
        """Node of each element in scope (-1 outside) and elements per node, for a level and a scope
        mask; kept per (topology, level, mask) as masks live as long as their rules."""
        topo = self.store.topology
        key = (level, None if element_mask is None else id(element_mask))
        hit = self._seg_cache.get(key)
        if hit is not None and hit[0] is topo and hit[1] is element_mask:
            return hit[2], hit[3]
        if level == topo.element_level:
            seg = self._all_rows if element_mask is None else np.where(element_mask, self._all_rows, -1)
        else:
            seg = topo.element_to(level).copy()
            if element_mask is not None:
                seg[~element_mask] = -1
        n_el = self._node_sizes(level, seg, topo.n_nodes(level), element_mask is None)
        if len(self._seg_cache) > 64:
            self._seg_cache.clear()
        self._seg_cache[key] = (topo, element_mask, seg, n_el)  # the mask kept alive: its id stays unique
        return seg, n_el

    def ratio_inputs(self, kd: KpiDef, level: str, end_minute: int, window_min: int, svc: str, element_mask):
        """Inputs of :func:`kernels.kpi.kpi_ratio_nodes` for a ratio KPI over all elements at
        ``end_minute``: the plan (columns and counters), the running window sums, segments, elements
        per node, and the activity parts ``(active, hist_active, factor)`` (``None`` when the
        source has no collection gaps): active minutes per element in the window and before it
        (running aggregates: read before the store changes, never write), and the factor turning
        the latter into expected minutes (as :meth:`activity`)."""
        st = self.store
        key = ("ratio_plan", kd.name, svc, window_min)
        plan = self._plans.get(key)
        if plan is None:
            grp = kd.group
            names = self._names(kd)
            cols = [st.columns(c, svc if grp == "cdr" else "") for c in names]
            ptr = np.zeros(len(names) + 1, np.int64)
            np.cumsum([len(c) for c in cols], out=ptr[1:])
            pos = {c: j for j, c in enumerate(names)}
            plan = self._plans[key] = (
                np.concatenate(cols),
                ptr,
                np.array([pos[c] for c in kd.numerator], np.int64),
                np.array([pos[c] for c in kd.denominator], np.int64),
                pos[kd.samples_counter],
                None,
                None,
                grp,
                kd.source if kd.source in self.gap_sources else None,
            )
        ring_cols, ptr, num_k, den_k, samp_k, run_ref, js, grp, gap_source = plan
        run = st.running(("win", grp, window_min), grp, "sum", ring_cols, end_minute - window_min, end_minute)
        if run_ref is not run:  # positions of the columns in this aggregate (fixed while it lives)
            js = np.array([run.colpos[int(c)] for c in ring_cols], np.int64)
            self._plans[key] = plan[:5] + (run, js) + plan[7:]
        seg, n_el = self._segments(level, element_mask)
        act = None if gap_source is None else self.activity_parts(gap_source, end_minute, window_min)
        return (ptr, js, num_k, den_k, samp_k), run.out, seg, n_el, act

    def activity_parts(self, source: str, end_minute: int, window_min: int):
        """Active minutes per element (all elements) in the window ``[end - window, end)`` and in the
        ring before it (running aggregates: read before the store changes, never write), and the
        factor turning the latter into expected active minutes (0 with too little history)."""
        st = self.store
        spec = self._act_spec.get(source)
        if spec is None:
            spec = self._act_spec[source] = (
                COUNTERS[ACTIVITY_COUNTER[source]].group,
                st.columns(ACTIVITY_COUNTER[source]),
            )
        grp, act_cols = spec
        active = st.running(("act", source, window_min), grp, "act", act_cols, end_minute - window_min, end_minute)
        hist_active = st.running(
            ("acthist", source, window_min),
            grp,
            "act",
            act_cols,
            max(end_minute - st.minute_ring, 0),
            end_minute - window_min,
        )
        return active.out, hist_active.out, self._expected_factor(end_minute, window_min)

    def _ratio_all(
        self, kd: KpiDef, level: str, end_minute: int, window_min: int, svc: str, element_mask, min_samples
    ) -> KpiResult:
        """:meth:`compute` of a ratio KPI over all elements in one kernel call
        (:func:`kernels.kpi.kpi_ratio_nodes`: per-service columns of the running window sums
        added, rolled up, value and status), the same additions in the same order as the
        step-by-step path (:meth:`counter_sums`, :meth:`_rollup`, :meth:`_value`, ``kpi_status``),
        so bit-identical to it, without its per-counter arrays and calls."""
        n_nodes = self.store.topology.n_nodes(level)
        plan, x, seg, n_el, act = self.ratio_inputs(kd, level, end_minute, window_min, svc, element_mask)
        if act is not None:
            active, expected = self.activity(kd.source, end_minute, window_min, None)
            extra = np.ascontiguousarray(np.column_stack([active, expected]))
        else:
            extra = np.zeros((len(seg), 0))
        agg = np.zeros((n_nodes, len(plan[0]) - 1 + extra.shape[1]))
        value, samples, status = np.empty(n_nodes), np.empty(n_nodes), np.empty(n_nodes, np.int8)
        ms = kd.min_samples if min_samples is None else float(min_samples)
        K.kpi_ratio_nodes(
            (agg, value, samples, status),  # NodeResult (plain tuples: Numba's fast dispatch path)
            plan,  # RatioPlan
            (float(kd.scale), float(ms), self.gap_fraction),  # StatusParams
            x,
            extra,
            seg,
            n_el,
        )
        return KpiResult(value, samples, status)
