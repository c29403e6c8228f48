"""KPIs: per-minute counter stores extracted from events, KPIs as ratios of sums over windows,
sketch-based percentiles and the E-model MOS.

Modules: :mod:`~telcoanalytics.kpi.definitions` (counters, statuses, :class:`KpiDef`, the built-in
registry), :mod:`~telcoanalytics.kpi.store` (:class:`CounterStore`: rings of minute counters per
element) with its window reads (:mod:`~telcoanalytics.kpi.reads`) and running window aggregates
(:mod:`~telcoanalytics.kpi.running`), :mod:`~telcoanalytics.kpi.calculator` (:class:`KpiCalculator`)
with its late-data re-evaluation spans (:mod:`~telcoanalytics.kpi.span`).
"""

from telcoanalytics.kpi.calculator import KpiCalculator, KpiResult
from telcoanalytics.kpi.definitions import (
    ACTIVITY_COUNTER,
    BUILTIN_KPIS,
    COUNTERS,
    EMODEL_G711_PLC,
    HOUR_MS,
    KINDS,
    MINUTE_MS,
    REJECT_NAMES,
    STATUS_GAP,
    STATUS_INSUFFICIENT,
    STATUS_NAMES,
    STATUS_NO_SCOPE,
    STATUS_OK,
    Counter,
    KpiDef,
    cause_class_table,
    emodel,
    kpi_registry,
    topology_from_state,
    topology_to_state,
)
from telcoanalytics.kpi.store import AddResult, CounterStore

__all__ = [
    "MINUTE_MS",
    "HOUR_MS",
    "Counter",
    "COUNTERS",
    "ACTIVITY_COUNTER",
    "STATUS_OK",
    "STATUS_INSUFFICIENT",
    "STATUS_GAP",
    "STATUS_NO_SCOPE",
    "STATUS_NAMES",
    "REJECT_NAMES",
    "KINDS",
    "cause_class_table",
    "KpiDef",
    "BUILTIN_KPIS",
    "EMODEL_G711_PLC",
    "emodel",
    "kpi_registry",
    "topology_to_state",
    "topology_from_state",
    "AddResult",
    "CounterStore",
    "KpiResult",
    "KpiCalculator",
]
