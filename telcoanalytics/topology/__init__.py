"""Topology: the network hierarchy as data (element ids -> dense indices, parent arrays per level),
the one id-to-index lookup, partition and roll-up by any level, versioned changes (add, retire,
re-home) and the stores it is loaded from and saved to (CSV, JSON, SQLite).

Modules: :mod:`~telcoanalytics.topology.model` (:class:`Topology`: levels, ids, parents, the one
id-to-index lookup, state), :mod:`~telcoanalytics.topology.routing` (partition, scatter, roll-up),
:mod:`~telcoanalytics.topology.changes` (versioned changes, :class:`TopologyChange`,
:func:`remap_rows`), :mod:`~telcoanalytics.topology.reconcile` (reconcile with a loaded
file, compact), :mod:`~telcoanalytics.topology.store` (CSV, JSON) and
:mod:`~telcoanalytics.topology.sqlite` (the SQLite store).
"""

from telcoanalytics.topology.changes import TopologyChange, remap_rows
from telcoanalytics.topology.model import Topology
from telcoanalytics.topology.routing import ROLLUP_HOWS, scratch_dtype
from telcoanalytics.topology.sqlite import SCHEMA_VERSION, SQLITE_SCHEMA, list_versions, load_sqlite, save_sqlite
from telcoanalytics.topology.store import (
    CODED_ATTRIBUTES,
    DEFAULT_LEVELS,
    read_csv,
    read_json,
    topology_from_json,
    topology_from_rows,
    topology_to_json,
    write_csv,
    write_json,
)

__all__ = [
    "ROLLUP_HOWS",
    "TopologyChange",
    "remap_rows",
    "scratch_dtype",
    "Topology",
    "SCHEMA_VERSION",
    "DEFAULT_LEVELS",
    "CODED_ATTRIBUTES",
    "SQLITE_SCHEMA",
    "topology_from_rows",
    "read_csv",
    "write_csv",
    "read_json",
    "topology_from_json",
    "write_json",
    "topology_to_json",
    "save_sqlite",
    "list_versions",
    "load_sqlite",
]
