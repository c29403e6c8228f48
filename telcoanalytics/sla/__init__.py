"""SLA monitoring: rules and SLOs (from dicts, JSON or TOML), evaluation per minute tick with late
data re-evaluation, lifecycles and error budgets.
"""

from telcoanalytics.sla.sla import *  # noqa: F401,F403  (the public names, listed once in sla.sla)
from telcoanalytics.sla.sla import __all__  # noqa: F401
