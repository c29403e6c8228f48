"""Topology: the network hierarchy as data (element ids -> dense indices, parent arrays per level),
the one id-to-index lookup, partition and roll-up by any level, versioned changes (add, retire,
re-home) and the stores it is loaded from and saved to (CSV, JSON, SQLite).
"""

from telcoanalytics.topology.model import (  # noqa: F401
    ROLLUP_HOWS,
    TopologyChange,
    remap_rows,
    scratch_dtype,
    Topology,
)

from telcoanalytics.topology.store import (  # noqa: F401
    SCHEMA_VERSION,
    DEFAULT_LEVELS,
    CODED_ATTRIBUTES,
    SQLITE_SCHEMA,
    topology_from_rows,
    read_csv,
    write_csv,
    read_json,
    topology_from_json,
    write_json,
    topology_to_json,
    save_sqlite,
    list_versions,
    load_sqlite,
)

__all__ = [
    'ROLLUP_HOWS',
    'TopologyChange',
    'remap_rows',
    'scratch_dtype',
    'Topology',
    'SCHEMA_VERSION',
    'DEFAULT_LEVELS',
    'CODED_ATTRIBUTES',
    'SQLITE_SCHEMA',
    'topology_from_rows',
    'read_csv',
    'write_csv',
    'read_json',
    'topology_from_json',
    'write_json',
    'topology_to_json',
    'save_sqlite',
    'list_versions',
    'load_sqlite',
]
