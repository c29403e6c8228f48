"""Topologies in a SQLite database (the embedded default store): save, list versions, load.

SQLite topology database (the embedded default store)
-----------------------------------------------------
A real file database (stdlib ``sqlite3``). Every saved version is a full snapshot, so any
saved version can be loaded back; the change log records how each version came about::

    meta(key TEXT PRIMARY KEY, value TEXT)                      -- schema_version = 1
    topology_version(version INTEGER PRIMARY KEY, saved_at_ms INTEGER, n_elements INTEGER,
                     n_active INTEGER, note TEXT)
    levels(version INTEGER, depth INTEGER, name TEXT, has_names INTEGER,
           PRIMARY KEY (version, depth))                        -- depth 0 = root
    nodes(version INTEGER, level TEXT, dense_index INTEGER, node_id INTEGER,
          parent_id INTEGER NULL, name TEXT NULL,
          PRIMARY KEY (version, level, node_id))                -- levels above the elements
    elements(version INTEGER, dense_index INTEGER, element_id INTEGER, parent_id INTEGER NULL,
             active INTEGER, name TEXT NULL, <one column per attribute>,
             PRIMARY KEY (version, element_id))
    attributes(version INTEGER, name TEXT, position INTEGER, dtype TEXT,
               PRIMARY KEY (version, name))                     -- NumPy dtype of each attribute
    topology_change(version INTEGER PRIMARY KEY, kind TEXT, level TEXT, ids TEXT,
                    parent_ids TEXT, old_parent_ids TEXT)       -- JSON lists of external ids

``parent_id`` is the parent's *external* id (what operators query), ``dense_index`` keeps the
row order so state arrays line up after a reload. NaN attribute values are stored as NULL.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import numpy as np

from telcoanalytics.topology.model import Topology

SCHEMA_VERSION = 1
_RESERVED = {"version", "dense_index", "element_id", "parent_id", "active", "name"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topology_version (
    version INTEGER PRIMARY KEY, saved_at_ms INTEGER NOT NULL, n_elements INTEGER NOT NULL,
    n_active INTEGER NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS levels (
    version INTEGER NOT NULL, depth INTEGER NOT NULL, name TEXT NOT NULL,
    has_names INTEGER NOT NULL, PRIMARY KEY (version, depth));
CREATE TABLE IF NOT EXISTS nodes (
    version INTEGER NOT NULL, level TEXT NOT NULL, dense_index INTEGER NOT NULL,
    node_id INTEGER NOT NULL, parent_id INTEGER, name TEXT,
    PRIMARY KEY (version, level, node_id));
CREATE TABLE IF NOT EXISTS elements (
    version INTEGER NOT NULL, dense_index INTEGER NOT NULL, element_id INTEGER NOT NULL,
    parent_id INTEGER, active INTEGER NOT NULL, name TEXT,
    PRIMARY KEY (version, element_id));
CREATE TABLE IF NOT EXISTS attributes (
    version INTEGER NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL, dtype TEXT NOT NULL,
    PRIMARY KEY (version, name));
CREATE TABLE IF NOT EXISTS topology_change (
    version INTEGER PRIMARY KEY, kind TEXT NOT NULL, level TEXT NOT NULL, ids TEXT NOT NULL,
    parent_ids TEXT NOT NULL, old_parent_ids TEXT NOT NULL);
"""


# ---- SQLite ------------------------------------------------------------------------------------
def _connect(path, create: bool) -> sqlite3.Connection:
    path = Path(path)
    if not create and not path.exists():
        raise ValueError(f"topology database {path} does not exist; create it with save_sqlite(topology, path)")
    con = sqlite3.connect(str(path))
    if create:
        con.executescript(SQLITE_SCHEMA)
        con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        con.commit()
    else:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            con.close()
            raise ValueError(
                f"{path} is not a telcoanalytics topology database ({e}); create one with save_sqlite"
            ) from None
        if row is None or int(row[0]) != SCHEMA_VERSION:
            con.close()
            raise ValueError(f"{path} has topology schema version {row[0] if row else None}, expected {SCHEMA_VERSION}")
    return con


def _sql_values(a: np.ndarray) -> list:
    if a.dtype.kind == "f":
        return [None if v != v else v for v in a.tolist()]
    return a.tolist()


def save_sqlite(topology: Topology, path, note: str = "") -> int:
    """Store a topology version (full snapshot) and its change log in a SQLite database.

    Parameters
    ----------
    topology : Topology
        The version to store; an already stored version with the same number is replaced.
    path : str or Path
        Database file, created with the schema of this module if missing.
    note : str
        Free text kept in ``topology_version.note``.

    Returns
    -------
    int
        The stored version.

    Raises
    ------
    ValueError
        If an attribute name is not a plain identifier or collides with a reserved column
        (``version``, ``dense_index``, ``element_id``, ``parent_id``, ``active``, ``name``), or
        the file is not a topology database.

    Examples
    --------
    >>> save_sqlite(topo, "topology.db")                       # doctest: +SKIP
    >>> topo = load_sqlite("topology.db")                      # latest version  # doctest: +SKIP
    """
    for a in topology.attributes:
        if not _IDENT.match(a) or a.lower() in _RESERVED:
            raise ValueError(
                f"attribute name {a!r} cannot be a column of the elements table: use letters, "
                f"digits and _ and avoid {sorted(_RESERVED)}"
            )
    con = _connect(path, create=True)
    v = int(topology.version)
    el = topology.element_level
    try:
        with con:
            existing = {r[1] for r in con.execute("PRAGMA table_info(elements)")}
            for a in topology.attributes:
                if a not in existing:
                    con.execute(f'ALTER TABLE elements ADD COLUMN "{a}"')
            for t in ("topology_version", "levels", "nodes", "elements", "attributes"):
                con.execute(f"DELETE FROM {t} WHERE version = ?", (v,))
            con.execute(
                "INSERT INTO topology_version VALUES (?, ?, ?, ?, ?)",
                (v, int(time.time() * 1000), topology.n_elements, topology.n_active, note),
            )
            con.executemany(
                "INSERT INTO levels VALUES (?, ?, ?, ?)",
                [(v, d, lv, int(lv in topology.names)) for d, lv in enumerate(topology.levels)],
            )
            for d, lv in enumerate(topology.levels[:-1]):
                n = topology.n_nodes(lv)
                par = [None] * n if d == 0 else topology.ids[topology.levels[d - 1]][topology.parent[lv]].tolist()
                nm = topology.names[lv].tolist() if lv in topology.names else [None] * n
                con.executemany(
                    "INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?)",
                    zip([v] * n, [lv] * n, range(n), topology.ids[lv].tolist(), par, nm),
                )
            n = topology.n_elements
            par = (
                [None] * n
                if len(topology.levels) == 1
                else topology.ids[topology.levels[-2]][topology.parent[el]].tolist()
            )
            nm = topology.names[el].tolist() if el in topology.names else [None] * n
            attrs = list(topology.attributes)
            cols = ", ".join(
                ["version", "dense_index", "element_id", "parent_id", "active", "name"] + [f'"{a}"' for a in attrs]
            )
            marks = ", ".join("?" * (6 + len(attrs)))
            con.executemany(
                f"INSERT INTO elements ({cols}) VALUES ({marks})",
                zip(
                    [v] * n,
                    range(n),
                    topology.ids[el].tolist(),
                    par,
                    topology.active.astype(int).tolist(),
                    nm,
                    *[_sql_values(topology.attributes[a]) for a in attrs],
                ),
            )
            con.executemany(
                "INSERT INTO attributes VALUES (?, ?, ?, ?)",
                [(v, a, j, topology.attributes[a].dtype.str) for j, a in enumerate(attrs)],
            )
            con.executemany(
                "INSERT OR REPLACE INTO topology_change VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        int(r["version"]),
                        r["kind"],
                        r["level"],
                        json.dumps(r["ids"]),
                        json.dumps(r["parent_ids"]),
                        json.dumps(r["old_parent_ids"]),
                    )
                    for r in topology.change_log
                ],
            )
    finally:
        con.close()
    return v


def list_versions(path) -> list[dict]:
    """The versions stored in a topology database, oldest first.

    Parameters
    ----------
    path : str or Path
        Topology database.

    Returns
    -------
    list of dict
        ``version``, ``saved_at_ms``, ``n_elements``, ``n_active``, ``note`` per stored version.

    Raises
    ------
    ValueError
        If the file is missing or not a topology database.
    """
    con = _connect(path, create=False)
    try:
        rows = con.execute(
            "SELECT version, saved_at_ms, n_elements, n_active, note FROM topology_version ORDER BY version"
        ).fetchall()
    finally:
        con.close()
    return [dict(zip(("version", "saved_at_ms", "n_elements", "n_active", "note"), r)) for r in rows]


def load_sqlite(path, version: int | None = None) -> Topology:
    """Load a topology version from a SQLite topology database.

    Parameters
    ----------
    path : str or Path
        Database written by :func:`save_sqlite` (or by hand in the documented schema).
    version : int, optional
        Version to load (default: the latest stored).

    Returns
    -------
    Topology
        With its change log up to that version; dense indices as stored.

    Raises
    ------
    ValueError
        Missing file, not a topology database, no or unknown version (listing the stored ones),
        or inconsistent rows (unknown parent id, naming the table and id).
    """
    con = _connect(path, create=False)
    try:
        stored = [r[0] for r in con.execute("SELECT version FROM topology_version ORDER BY version")]
        if not stored:
            raise ValueError(f"{path} holds no topology version yet; store one with save_sqlite")
        if version is None:
            version = stored[-1]
        elif int(version) not in stored:
            raise ValueError(f"{path} has no topology version {version}; stored versions are {stored}")
        v = int(version)
        lv_rows = con.execute("SELECT name, has_names FROM levels WHERE version = ? ORDER BY depth", (v,)).fetchall()
        levels = tuple(r[0] for r in lv_rows)
        with_names = {r[0] for r in lv_rows if r[1]}
        ids, parent_ext, names = {}, {}, {}
        for lv in levels[:-1]:
            rows = con.execute(
                "SELECT node_id, parent_id, name FROM nodes WHERE version = ? AND level = ? ORDER BY dense_index",
                (v, lv),
            ).fetchall()
            ids[lv] = np.array([r[0] for r in rows], dtype=np.int64)
            parent_ext[lv] = [r[1] for r in rows]
            if lv in with_names:
                names[lv] = np.array([r[2] or "" for r in rows], dtype=str)
        attr_rows = con.execute(
            "SELECT name, dtype FROM attributes WHERE version = ? ORDER BY position", (v,)
        ).fetchall()
        attrs = [r[0] for r in attr_rows]
        cols = ", ".join(["element_id", "parent_id", "active", "name"] + [f'"{a}"' for a in attrs])
        rows = con.execute(f"SELECT {cols} FROM elements WHERE version = ? ORDER BY dense_index", (v,)).fetchall()
        el = levels[-1]
        ids[el] = np.array([r[0] for r in rows], dtype=np.int64)
        parent_ext[el] = [r[1] for r in rows]
        active = np.array([bool(r[2]) for r in rows], dtype=bool)
        if el in with_names:
            names[el] = np.array([r[3] or "" for r in rows], dtype=str)
        attributes = {}
        for j, (a, dt) in enumerate(attr_rows):
            dt = np.dtype(dt)
            col = [r[4 + j] for r in rows]
            if dt.kind == "f":
                attributes[a] = np.array([np.nan if x is None else x for x in col], dtype=dt)
            elif dt.kind in "US":
                attributes[a] = np.array(["" if x is None else str(x) for x in col], dtype=str)
            else:
                attributes[a] = np.array(col, dtype=dt)
        log = [
            {
                "version": r[0],
                "kind": r[1],
                "level": r[2],
                "ids": json.loads(r[3]),
                "parent_ids": json.loads(r[4]),
                "old_parent_ids": json.loads(r[5]),
            }
            for r in con.execute("SELECT * FROM topology_change WHERE version <= ? ORDER BY version", (v,))
        ]
    finally:
        con.close()
    parent = {}
    for d, lv in enumerate(levels[1:], start=1):
        up = levels[d - 1]
        pos = {x: i for i, x in enumerate(ids[up].tolist())}
        par = np.empty(len(ids[lv]), dtype=np.int64)
        for j, pe in enumerate(parent_ext[lv]):
            if pe not in pos:
                table = "elements" if lv == el else "nodes"
                raise ValueError(
                    f"{path} version {v}: {table} row for {lv} {ids[lv][j]} has parent_id {pe}, "
                    f"which is not a {up} of that version"
                )
            par[j] = pos[pe]
        parent[lv] = par
    return Topology(levels, ids, parent, attributes, v, names, active, log)
