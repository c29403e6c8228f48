"""Alerts: one alert model for SLA and anomaly findings, deduplication, grouping, inhibition and
silences in the manner of Alertmanager, and the sinks that deliver notifications.
"""

from telcoanalytics.alerts.manager import (  # noqa: F401
    Alert,
    Matcher,
    Silence,
    InhibitRule,
    Notification,
    AlertManager,
    DEFAULT_INHIBIT_RULES,
    DEFAULT_ROLLUP_RULES,
    RollupRule,
    ANOMALY_SEVERITY,
    SEVERITIES,
    IDENTITY_EXCLUDED_LABELS,
    alerts_from_sla_events,
    alerts_from_anomalies,
    fingerprint_of,
    rfc3339_ms,
    postable_alert,
)

from telcoanalytics.alerts.sinks import (  # noqa: F401
    SinkError,
    PermanentSinkError,
    RetryPolicy,
    Spool,
    QueuedSink,
    WebhookSink,
    CallbackSink,
    JsonlSink,
)

__all__ = [
    'Alert',
    'Matcher',
    'Silence',
    'InhibitRule',
    'Notification',
    'AlertManager',
    'DEFAULT_INHIBIT_RULES',
    'DEFAULT_ROLLUP_RULES',
    'RollupRule',
    'ANOMALY_SEVERITY',
    'SEVERITIES',
    'IDENTITY_EXCLUDED_LABELS',
    'alerts_from_sla_events',
    'alerts_from_anomalies',
    'fingerprint_of',
    'rfc3339_ms',
    'postable_alert',
    'SinkError',
    'PermanentSinkError',
    'RetryPolicy',
    'Spool',
    'QueuedSink',
    'WebhookSink',
    'CallbackSink',
    'JsonlSink',
]
