"""SLA monitoring (compatibility module): rules and events live in :mod:`telcoanalytics.sla.rules`,
the monitor in :mod:`telcoanalytics.sla.monitor` (with :mod:`~telcoanalytics.sla.late` and
:mod:`~telcoanalytics.sla.topology_change`); this module re-exports their names.
"""

from telcoanalytics.kpi import STATUS_NAMES  # noqa: F401
from telcoanalytics.sla.lifecycle import _burn_codes, _burn_of, _burn_of_counts, _cmp, _Eval, _LifeState  # noqa: F401
from telcoanalytics.sla.monitor import SlaMonitor  # noqa: F401
from telcoanalytics.sla.rules import (  # noqa: F401
    COMPARATORS,
    EVENT_STATES,
    LATENCY_P95_THRESHOLDS_MS,
    SEVERITIES,
    SRE_BURN_WINDOWS,
    SlaEvent,
    SlaRule,
    SloRule,
    _flatten_scope,
    default_rules,
    load_rules,
    parse_duration_s,
)

__all__ = [
    "SlaEvent",
    "SlaRule",
    "SloRule",
    "SlaMonitor",
    "load_rules",
    "default_rules",
    "parse_duration_s",
    "LATENCY_P95_THRESHOLDS_MS",
    "SRE_BURN_WINDOWS",
    "SEVERITIES",
    "COMPARATORS",
    "STATUS_NAMES",
]
