"""Load and save topologies as CSV and JSON (flat rows or a nested tree).

File formats
------------
**CSV / flat JSON**: one row per element. Columns (or keys):

* ``element_id`` (also accepted: ``<element_level>_id`` or ``<element_level>``);
* one id column per upper level, root first: ``region_id``, ``site_id`` (also accepted: the
  bare level name, ``region``, ``site``);
* optional node names ``<level>_name`` (``region_name``, ``site_name``, ``element_name``);
* optional ``active`` (1/0, true/false): 0 marks a retired element;
* every other column is an element attribute (``equipment_class``, ``vendor``, ``technology``,
  ``lat``, ``lon``, anything else). Column types are inferred: integers, then floats (an empty
  cell is NaN), else text. ``equipment_class``, ``vendor`` and ``technology`` may be given as
  codes or as the names of ``records.EQUIPMENT_CLASSES`` / ``VENDORS`` / ``TECHNOLOGIES`` and are
  stored as int16 codes, like ``records.TOPOLOGY_DTYPE`` (empty means unknown, code -1).

Dense indices after a load: elements are numbered in row order (tree order for nested JSON);
upper-level nodes in increasing id order, then nodes without elements (nested JSON only). A
row-per-element file cannot hold a node without elements; SQLite keeps every node and every
dense index exactly.

The ``topology.csv`` of :mod:`telcoanalytics.synth.network` (the ``TOPOLOGY_DTYPE`` fields) is this
format with the default levels ``("region", "site")``.

Flat JSON is either a list of row objects or ``{"levels": [...], "elements": [rows]}``, where
``levels`` names every level including the element level.

**Nested JSON**::

    {"levels": ["region", "site", "element"],
     "nodes": [{"id": 1, "name": "North", "children": [
                  {"id": 10, "children": [
                      {"id": 100, "vendor": "vendor_a", "lat": 51.5, "lon": -0.1}]}]}]}

Each node has ``id``, optional ``name``, optional ``level`` (checked against its depth), and
``children`` (upper levels); an element's other keys are its attributes (or put them in an
``"attributes"`` object).

The SQLite topology database is in :mod:`telcoanalytics.topology.sqlite`.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from telcoanalytics.records import EQUIPMENT_CLASSES, TECHNOLOGIES, VENDORS
from telcoanalytics.topology.model import Topology

DEFAULT_LEVELS = ("region", "site", "element")
CODED_ATTRIBUTES = {"equipment_class": EQUIPMENT_CLASSES, "vendor": VENDORS, "technology": TECHNOLOGIES}


# ---- row-table -> Topology ---------------------------------------------------------------------
def _find_column(columns, candidates, what, source) -> str:
    for c in candidates:
        if c in columns:
            return c
    raise ValueError(
        f"{source} has no column {candidates[0]!r}"
        f"{' (or ' + ', '.join(repr(c) for c in candidates[1:]) + ')' if len(candidates) > 1 else ''}"
        f" for {what}; columns are {sorted(columns)}"
    )


def _parse_ids(values, col, row_label) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            if isinstance(v, bool) or v is None:
                raise ValueError
            if isinstance(v, float):
                if not v.is_integer():
                    raise ValueError
                v = int(v)
            out[i] = int(str(v).strip()) if isinstance(v, str) else int(v)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{row_label(i)}: {col} {v!r} is not an integer id") from None
    return out


def _is_int(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d+\s*", v) is not None


def _infer_column(values, col, row_label) -> np.ndarray:
    """Typed array of one attribute column: bool, int64, float64 (empty -> NaN) or str."""
    if col in CODED_ATTRIBUTES:
        return _coded_column(values, col, row_label)
    vals = ["" if v is None else v for v in values]
    if vals and all(isinstance(v, (bool, np.bool_)) for v in vals):
        return np.array(vals, dtype=bool)
    if all(_is_int(v) for v in vals):
        return np.array([int(v) for v in vals], dtype=np.int64)
    try:
        return _floats(vals)
    except (ValueError, TypeError):
        return np.array([str(v) for v in vals], dtype=str)


def _floats(strs) -> np.ndarray:
    out = np.empty(len(strs), dtype=np.float64)
    for i, v in enumerate(strs):
        if isinstance(v, bool):
            raise ValueError("bool in a numeric column")
        out[i] = np.nan if (isinstance(v, str) and v.strip() == "") else float(v)
    return out


def _coded_column(values, col, row_label) -> np.ndarray:
    table = CODED_ATTRIBUTES[col]
    code = {name: i for i, name in enumerate(table)}
    out = np.empty(len(values), dtype=np.int16)
    for i, v in enumerate(values):
        s = v.strip() if isinstance(v, str) else v
        if s is None or s == "":
            out[i] = -1
            continue
        if isinstance(s, str) and s in code:
            out[i] = code[s]
            continue
        try:
            c = int(s)
        except (TypeError, ValueError):
            c = -2
        if not (0 <= c < len(table)) and c != -1:
            raise ValueError(
                f"{row_label(i)}: {col} {v!r} is neither a known name {table} nor a code "
                f"0..{len(table) - 1} (-1 for unknown)"
            )
        out[i] = c
    return out


def _parse_active(values, row_label) -> np.ndarray:
    out = np.empty(len(values), dtype=bool)
    for i, v in enumerate(values):
        s = str(v).strip().lower()
        if s in ("1", "true", "yes"):
            out[i] = True
        elif s in ("0", "false", "no"):
            out[i] = False
        else:
            raise ValueError(f"{row_label(i)}: active {v!r} is not 1/0 or true/false")
    return out


def topology_from_rows(
    columns: dict[str, list], levels=DEFAULT_LEVELS, source: str = "topology", row_label=None
) -> Topology:
    """Build a topology from column lists (one entry per element row).

    Parameters
    ----------
    columns : dict column -> list
        Row-table columns in the CSV / flat JSON layout of this module.
    levels : sequence of str
        All level names, root first, the last being the element level.
    source : str
        What the rows came from, for error messages (e.g. the file name).
    row_label : callable int -> str, optional
        How errors name row ``i`` (default ``"row i"``).

    Returns
    -------
    Topology

    Raises
    ------
    ValueError
        Missing id column, non-integer id, duplicate element id, a node with two parents or two
        names, an unknown code (each naming the row), or too few levels.
    """
    levels = tuple(levels)
    if len(levels) < 1:
        raise ValueError("levels must name at least the element level")
    row_label = row_label or (lambda i: f"{source} row {i}")
    el = levels[-1]
    used = set()
    ecol = _find_column(
        columns,
        ["element_id", f"{el}_id", el] if el != "element" else ["element_id", "element"],
        f"the element ids (level {el!r})",
        source,
    )
    used.add(ecol)
    element_id = _parse_ids(columns[ecol], ecol, row_label)
    path, names = {}, {}
    for lv in levels[:-1]:
        c = _find_column(columns, [f"{lv}_id", lv], f"level {lv!r}", source)
        used.add(c)
        path[lv] = _parse_ids(columns[c], c, row_label)
    for lv in levels:
        c = f"{lv}_name"
        if c in columns:
            used.add(c)
            names[lv] = ["" if v is None else str(v) for v in columns[c]]
    active = None
    if "active" in columns:
        used.add("active")
        active = _parse_active(columns["active"], row_label)
    attrs = {c: _infer_column(v, c, row_label) for c, v in columns.items() if c not in used}
    topo = Topology.from_columns(element_id, path, attrs, element_level=el, names=names, row_label=row_label)
    if active is not None:
        topo = Topology(topo.levels, topo.ids, topo.parent, topo.attributes, topo.version, topo.names, active)
    return topo


def _topology_columns(topology: Topology) -> dict[str, np.ndarray]:
    """Row-table columns (external ids) of a topology, the inverse of ``topology_from_rows``."""
    el = topology.element_level
    cols: dict[str, np.ndarray] = {"element_id" if el == "element" else f"{el}_id": topology.ids[el]}
    for lv in topology.levels[:-1]:
        cols[f"{lv}_id"] = topology.ids[lv][topology.element_to(lv)]
    for lv in topology.levels:
        if lv in topology.names:
            nm = topology.names[lv]
            cols[f"{lv}_name"] = nm if lv == el else nm[topology.element_to(lv)]
    if not topology.active.all():
        cols["active"] = topology.active.astype(np.int64)
    for a, v in topology.attributes.items():
        cols[a] = v
    return cols


def _check_levels_arg(levels):
    levels = tuple(levels)
    if not levels or not all(isinstance(x, str) and x for x in levels):
        raise ValueError(f"levels must be a non-empty sequence of level names, got {levels!r}")
    return levels


# ---- CSV ---------------------------------------------------------------------------------------
def read_csv(path, levels=DEFAULT_LEVELS) -> Topology:
    """Read a topology CSV (one row per element, header line first).

    Parameters
    ----------
    path : str or Path
        CSV file.
    levels : sequence of str
        All level names, root first, ending with the element level.

    Returns
    -------
    Topology

    Raises
    ------
    ValueError
        Empty file, ragged rows, or any error of :func:`topology_from_rows`, naming the line.

    Examples
    --------
    >>> topo = read_csv("topology.csv")                       # doctest: +SKIP
    >>> topo = read_csv("net.csv", levels=("country", "region", "site", "cell"))  # doctest: +SKIP
    """
    levels = _check_levels_arg(levels)
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty; expected a header line with element_id and level columns")
        header = [h.strip() for h in header]
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path} line {line_no}: {len(row)} fields for {len(header)} columns")
            rows.append((line_no, row))
    lines = [ln for ln, _ in rows]
    columns = {h: [r[j] for _, r in rows] for j, h in enumerate(header)}
    return topology_from_rows(columns, levels, str(path), lambda i: f"{path} line {lines[i]}")


def write_csv(topology: Topology, path) -> None:
    """Write a topology as CSV in the layout :func:`read_csv` reads (retired: ``active`` = 0).

    Parameters
    ----------
    topology : Topology
    path : str or Path
    """
    cols = _topology_columns(topology)
    names = list(cols)
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        lists = [
            [repr(v) if v == v else "" for v in cols[c].tolist()] if cols[c].dtype.kind == "f" else cols[c].tolist()
            for c in names
        ]
        w.writerows(zip(*lists))


# ---- JSON --------------------------------------------------------------------------------------
def read_json(path, levels=None) -> Topology:
    """Read a topology from JSON, flat (rows) or nested (tree), see the module docstring.

    Parameters
    ----------
    path : str or Path
        JSON file.
    levels : sequence of str, optional
        Level names; taken from the document's ``"levels"`` key, else ``DEFAULT_LEVELS``.

    Returns
    -------
    Topology

    Raises
    ------
    ValueError
        Malformed JSON, an unexpected document shape, a node at an unknown level, or any row
        error (naming ``elements[i]`` or the node path).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    return topology_from_json(doc, levels, source=str(path))


def topology_from_json(doc, levels=None, source: str = "json") -> Topology:
    """Build a topology from a parsed JSON document (flat or nested), see :func:`read_json`.

    Parameters
    ----------
    doc : list or dict
        A list of element rows, ``{"levels", "elements"}`` or ``{"levels", "nodes"}``.
    levels : sequence of str, optional
        Level names; must agree with ``doc["levels"]`` when both are given.
    source : str
        Name used in error messages.

    Returns
    -------
    Topology

    Raises
    ------
    ValueError
        As :func:`read_json`, and when ``levels`` disagrees with the document.
    """
    if isinstance(doc, dict):
        doc_levels = doc.get("levels")
        if levels is None and doc_levels is not None:
            levels = doc_levels
        elif levels is not None and doc_levels is not None and tuple(doc_levels) != tuple(levels):
            raise ValueError(
                f"{source}: levels {tuple(doc_levels)} in the document disagree with levels={tuple(levels)}"
            )
    levels = _check_levels_arg(levels if levels is not None else DEFAULT_LEVELS)
    if isinstance(doc, dict) and "nodes" in doc:
        return _from_nested(doc["nodes"], levels, source)
    rows = doc.get("elements") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(
            f"{source}: expected a list of element objects, {{'elements': [...]}} or a nested "
            "{'nodes': [...]} document"
        )
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    columns = {k: [r.get(k) for r in rows] for k in keys}
    return topology_from_rows(columns, levels, source, lambda i: f"{source} elements[{i}]")


def _from_nested(nodes, levels, source) -> Topology:
    el = levels[-1]
    rows: list[dict] = []
    labels: list[str] = []

    def walk(node, depth, ancestors, where):
        if not isinstance(node, dict) or "id" not in node:
            raise ValueError(f"{source} {where}: each node must be an object with an 'id'")
        lv = levels[depth]  # depth < len(levels): an element with children is rejected below
        if "level" in node and node["level"] != lv:
            raise ValueError(
                f"{source} {where}: node {node['id']!r} says level {node['level']!r} but sits at "
                f"depth {depth}, which is level {lv!r} (levels are {levels})"
            )
        if lv == el:
            if node.get("children"):
                raise ValueError(
                    f"{source} {where}: element {node['id']!r} has children; unknown level below "
                    f"{el!r} (levels are {levels})"
                )
            row = {f"{a}_id": i for a, i in ancestors}
            row.update({f"{a}_name": nm for a, nm in ancestors_names(ancestors, where)})
            row["element_id"] = node["id"]
            if "name" in node:
                row[f"{el}_name"] = node["name"]
            attrs = node.get("attributes", {})
            row.update(attrs)
            row.update({k: v for k, v in node.items() if k not in ("id", "name", "level", "attributes", "children")})
            rows.append(row)
            labels.append(where)
            return
        if (lv, node["id"]) in first_seen:
            raise ValueError(
                f"{source} {where}: {lv} {node['id']!r} appears more than once (first at "
                f"{first_seen[(lv, node['id'])]}); node ids must be unique per level"
            )
        first_seen[(lv, node["id"])] = where
        names_seen[(lv, node["id"])] = node.get("name")
        kids = node.get("children", [])
        if not isinstance(kids, list):
            raise ValueError(f"{source} {where}: children of {lv} {node['id']!r} must be a list")
        for j, ch in enumerate(kids):
            walk(ch, depth + 1, ancestors + [(lv, node["id"])], f"{where}.children[{j}]")

    def ancestors_names(ancestors, where):
        return [(a, names_seen[(a, i)]) for a, i in ancestors if names_seen.get((a, i)) is not None]

    names_seen: dict = {}
    first_seen: dict = {}
    if not isinstance(nodes, list):
        raise ValueError(f"{source}: 'nodes' must be a list of {levels[0]} objects")
    for j, nd in enumerate(nodes):
        walk(nd, 0, [], f"nodes[{j}]")
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    default = {k: ("" if k.endswith("_name") else 1 if k == "active" else None) for k in keys}
    columns = {k: [r.get(k, default[k]) for r in rows] for k in keys}
    topo = topology_from_rows(columns, levels, source, lambda i: f"{source} {labels[i]}")
    # upper-level nodes without elements still belong to the topology; names_seen is in
    # pre-order, so a node's parent is always added before the node itself
    for (lv, nid), nm in names_seen.items():
        if topo.index_of([nid], lv)[0] < 0:
            topo = _add_empty_node(topo, lv, nid, nm, nodes, levels)
    return topo


def _add_empty_node(topo: Topology, lv, nid, nm, nodes, levels) -> Topology:
    parent_id = _find_parent(nodes, levels, lv, nid) if levels.index(lv) > 0 else None
    version, log = topo.version, topo.change_log
    topo, _ = topo.add_node(lv, nid, parent_id, name=nm)
    topo.version, topo.change_log = version, log  # loading is not a change
    return topo


def _find_parent(nodes, levels, lv, nid):
    stack = [(n, 0, None) for n in nodes]
    while stack:
        node, depth, par = stack.pop()
        if levels[depth] == lv and node["id"] == nid:
            return par
        if depth + 1 < len(levels):
            stack.extend((c, depth + 1, node["id"]) for c in node.get("children", []))
    raise AssertionError("unreachable: node was seen while walking")  # pragma: no cover


def write_json(topology: Topology, path, nested: bool = False) -> None:
    """Write a topology as JSON (flat rows by default, or the nested tree form).

    Parameters
    ----------
    topology : Topology
    path : str or Path
    nested : bool
        Write ``{"levels", "nodes"}`` (tree) instead of ``{"levels", "elements"}`` (rows).
        The nested form cannot express retired elements; it writes an ``active`` key for them.
    """
    Path(path).write_text(json.dumps(topology_to_json(topology, nested)))


def topology_to_json(topology: Topology, nested: bool = False) -> dict:
    """The JSON document :func:`write_json` writes, as Python objects.

    Parameters
    ----------
    topology : Topology
    nested : bool
        Tree form (``"nodes"``) instead of rows (``"elements"``).

    Returns
    -------
    dict
        JSON-serialisable; NaN attribute values become ``null``.
    """
    cols = _topology_columns(topology)
    lists = {c: [None if isinstance(v, float) and v != v else v for v in a.tolist()] for c, a in cols.items()}
    n = topology.n_elements
    if not nested:
        return {"levels": list(topology.levels), "elements": [{c: lists[c][i] for c in lists} for i in range(n)]}
    levels = topology.levels
    el = topology.element_level
    children: dict = {}
    objs = {}
    for d, lv in enumerate(levels[:-1]):
        for i in range(topology.n_nodes(lv)):
            o = {"id": int(topology.ids[lv][i])}
            if lv in topology.names:
                o["name"] = str(topology.names[lv][i])
            o["children"] = []
            objs[(lv, i)] = o
            if d > 0:
                children.setdefault((levels[d - 1], int(topology.parent[lv][i])), []).append(o)
    for i in range(n):
        o = {"id": int(topology.ids[el][i])}
        if el in topology.names:
            o["name"] = str(topology.names[el][i])
        if "active" in lists:
            o["active"] = lists["active"][i]
        o.update({a: lists[a][i] for a in topology.attributes})
        if len(levels) > 1:
            children.setdefault((levels[-2], int(topology.parent[el][i])), []).append(o)
        else:
            objs[(el, i)] = o
    for key, o in objs.items():
        if key[0] != el:
            o["children"] = children.get(key, [])
    roots = [objs[(levels[0], i)] for i in range(topology.n_nodes(levels[0]))]
    return {"levels": list(levels), "nodes": roots}
