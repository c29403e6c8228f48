"""SLA monitoring: rules and SLOs (from dicts, JSON or TOML), evaluation per minute tick with late
data re-evaluation, lifecycles and error budgets.
"""

from telcoanalytics.sla.sla import (  # noqa: F401
    COMPARATORS,
    LATENCY_P95_THRESHOLDS_MS,
    SEVERITIES,
    SRE_BURN_WINDOWS,
    STATUS_NAMES,
    SlaEvent,
    SlaMonitor,
    SlaRule,
    SloRule,
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
