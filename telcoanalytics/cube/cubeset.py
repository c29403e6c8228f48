"""Many cubes from one stream (:class:`CubeSet`: codes and fields computed once per batch, one pass
over the events per group of cubes that can share it) and the replay's exploration cube.
"""

from __future__ import annotations

import threading

import numpy as np

from kernels.cube import cube_pack_keys
from telcoanalytics.cube.build import UpdateReport
from telcoanalytics.cube.cube import Cube, _compose_maps, _is_topology_dim, _new_lock
from telcoanalytics.cube.dims import (
    BatchArrays,
    BatchContext,
    Dimension,
    TopologySlots,
    prepare_batch,
)
from telcoanalytics.cube.spec import CubeSpec, covers
from telcoanalytics.cube.table import CellTable
from telcoanalytics.topology.model import Topology

_SHARED_MAX_KEYS = 1 << 18


# ---- many cubes from one stream ----------------------------------------------------------------
class CubeSet:
    """Many cubes updated from the same stream; codes and fields are computed once per batch.

    All cubes of a set share one lock: a query on any cube sees either none or all of a batch,
    and the budget of every cube is checked before any cube changes.

    Parameters
    ----------
    specs : dict name -> CubeSpec
    topology : Topology or None
    dimensions : dict name -> Dimension, optional
        Custom dimensions shared by the cubes.

    Raises
    ------
    ValueError
        If the cubes read different sources or bad specs.
    """

    def __init__(
        self,
        specs: dict[str, CubeSpec] | None = None,
        topology: Topology | None = None,
        *,
        dimensions: dict[str, Dimension] | None = None,
        source: str = "cdr",
    ):
        self.topology = topology
        self.source = source
        self._lock = _new_lock()
        self._wlock = threading.Lock()
        self.dimensions: dict[str, Dimension] = dict(dimensions or {})
        self._slots = TopologySlots.initial(topology) if topology is not None else None
        self._shared_tables: dict = {}
        self.cubes: dict[str, Cube] = {}
        for nm, spec in (specs or {}).items():
            self.add(nm, spec)

    def add(self, name: str, spec: CubeSpec) -> Cube:
        if name in self.cubes:
            raise ValueError(f"a cube named {name!r} already exists in the set")
        if spec.source != self.source:
            raise ValueError(
                f"cube {name!r} reads source {spec.source!r} but the set reads "
                f"{self.source!r}; use one CubeSet per source"
            )
        cube = Cube(spec, self.topology, dimensions=self.dimensions, name=name, _lock=self._lock, _slots=self._slots)
        for dn, dim in cube.all_dims.items():
            self.dimensions.setdefault(dn, dim)
        with self._lock:
            self.cubes[name] = cube
        return cube

    def __getitem__(self, name: str) -> Cube:
        try:
            return self.cubes[name]
        except KeyError:
            raise KeyError(f"no cube {name!r}; cubes are {list(self.cubes)}") from None

    def __len__(self):
        return len(self.cubes)

    def __iter__(self):
        return iter(self.cubes)

    def update(self, records: np.ndarray, *, element_idx: np.ndarray | None = None) -> dict[str, UpdateReport]:
        """Apply one batch to every cube (all or nothing).

        Raises
        ------
        CubeBudgetError
            If any cube would exceed its budget (no cube changes).
        """
        ctx = BatchContext(records, self.topology, self.source, element_idx)
        dims, vals, hashes = {}, {}, {}
        for c in self.cubes.values():
            dims.update(c.dims)
            vals.update(c.value_fields)
            hashes.update(c.hash_fields)
        return self.update_arrays(prepare_batch(ctx, dims, vals, hashes))

    def update_arrays(self, b: BatchArrays) -> dict[str, UpdateReport]:
        """Apply one batch of prepared arrays (``telcoanalytics.cube.dims.prepare_batch``) to every cube.

        ``b`` must hold the codes of every dimension and every field the cubes use.

        Raises
        ------
        CubeBudgetError
            If any cube would exceed its budget (no cube changes).
        """
        with self._wlock:
            shared = self._shared_deltas(b)
            reps = {nm: c._build_delta(b, shared.get(nm)) for nm, c in self.cubes.items()}
            with self._lock:
                for c in self.cubes.values():
                    c._check_budget()
                for nm, c in self.cubes.items():
                    c._commit(b, reps[nm])
        return reps

    def _shared_deltas(self, b: BatchArrays) -> dict:
        """Accumulate the batch once for groups of cubes that can share it.

        Cubes on the delta build with the same measure layout are grouped (largest base first)
        under the first group base that covers theirs; a group base is a cube's base key space
        of at most ``_SHARED_MAX_KEYS`` keys (dense). Each group with two or more cubes gets one
        pass over the events, then every member rolls its base delta up from the group's cells.
        A group whose batch has a row with an invalid code is not shared (each cube rejects by
        its own dimensions).

        Returns
        -------
        dict cube name -> (CellTable, KeySpace, dims)
        """
        groups: list = []
        cands = [(nm, c) for nm, c in self.cubes.items() if not c._direct_fits(b.n)]
        cands.sort(key=lambda t: -t[1].base_keys.size)
        for nm, c in cands:
            sig = c._measure_signature()
            g = next((g for g in groups if g[0] == sig and covers(g[1].dims, c.base_keys.dims, self.dimensions)), None)
            if g is None:
                if c.base_keys.size > _SHARED_MAX_KEYS:
                    continue
                g = (sig, c.base_keys, c, [])
                groups.append(g)
            g[3].append(nm)
        out = {}
        for sig, ks, c0, names in groups:
            if len(names) < 2:
                continue
            rows = np.array([b.dim_row[n] for n in ks.dims], dtype=np.int64)
            keys = np.empty(b.n, dtype=np.int64)
            cube_pack_keys(b.codes, rows, ks.strides, keys)
            if b.n and keys.min() < 0:
                continue
            tkey = (sig, ks.dims, ks.size)
            t = self._shared_tables.get(tkey)
            if t is None:
                t = self._shared_tables[tkey] = CellTable(ks.size, True, *c0._tshape)
            t.clear()
            t.reserve(min(b.n, ks.size))
            _, vrows, hrows, qrows = c0._rows(b)
            t.accumulate(keys, b, vrows, c0.mom, hrows, qrows, c0._q_min, c0._q_ilg)
            for nm in names:
                out[nm] = (t, ks, self.dimensions)
        return out

    def snapshot(self):
        """Context manager: queries on any cubes of the set inside it see the same batches."""
        return self._lock

    def set_topology(self, topology: Topology, changes: list | None = None) -> CubeSet:
        """Follow a new topology version with every cube (see :meth:`Cube.set_topology`).

        The versioned codes are computed once and shared; no query sees some cubes changed and
        others not. Batches after the call must be coded with ``topology`` (``update`` does it).

        Raises
        ------
        ValueError
            If the set has no topology, the levels differ, or without ``changes`` the new
            topology renumbers nodes.
        """
        if self.topology is None or self._slots is None:
            raise ValueError("the cube set was built without a topology; nothing to change")
        slots = self._slots.advance(topology, _compose_maps(self.topology, topology, changes))
        with self._wlock, self._lock:
            self.dimensions = {n: d for n, d in self.dimensions.items() if not _is_topology_dim(d, topology)}
            for c in self.cubes.values():
                c._retopologize(topology, slots, self.dimensions)
                for dn, dim in c.all_dims.items():
                    self.dimensions.setdefault(dn, dim)
            self.topology = topology
            self._slots = slots
            self._shared_tables = {}
        return self

    def topology_changed(self, topology: Topology, changes: list | None = None) -> None:
        """Pipeline hook (``Pipeline.change_topology(target, changes)`` calls it)."""
        self.set_topology(topology, changes)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.cubes.values())

    def merge(self, other: CubeSet) -> CubeSet:
        """Merge another set with the same cubes (cube by cube)."""
        if list(other.cubes) != list(self.cubes):
            raise ValueError(f"cube sets differ: {list(self.cubes)} vs {list(other.cubes)}")
        for nm, c in self.cubes.items():
            c.merge(other.cubes[nm])
        return self

    def to_state(self) -> dict:
        d = {"kind": "CubeSet", "source": self.source, "names": np.array(list(self.cubes))}
        for nm, c in self.cubes.items():
            for k, v in c.to_state().items():
                d[f"{nm}/{k}"] = v
        return d

    @classmethod
    def from_state(
        cls,
        d: dict,
        *,
        topology: Topology | None = None,
        dimensions: dict[str, Dimension] | None = None,
        values: dict | None = None,
    ) -> CubeSet:
        cs = cls(None, topology, dimensions=dimensions, source=str(d["source"]))
        for nm in (str(x) for x in d["names"]):
            pre = f"{nm}/"
            sub = {k[len(pre) :]: v for k, v in d.items() if k.startswith(pre)}
            cube = Cube.from_state(sub, topology=topology, dimensions=cs.dimensions, values=values)
            cube._lock = cs._lock
            if cs.topology is None:
                cs.topology = cube.topology
            if cube._slots is not None:
                cs._slots = cube._slots
            for dn, dim in cube.all_dims.items():
                cs.dimensions.setdefault(dn, dim)
            cs.cubes[nm] = cube
        return cs


# ---- exploration for the replay ----------------------------------------------------------------
def explore_spec(cell_budget: int = 2_000_000, **overrides) -> CubeSpec:
    """The cube :func:`explore_summary` reads: calls, answered and dropped by region / site /
    hour of day / equipment class / service, with duration statistics (``overrides`` go to
    :class:`CubeSpec`)."""
    args = dict(
        dimensions=["region", "site", "equipment_class", "service", "hour_of_day"],
        measures=["count", "sum:answered", "sum:dropped", "mean:duration_ms"],
        cuboids=[("region", "service"), ("site", "equipment_class", "hour_of_day")],
        cell_budget=cell_budget,
    )
    args.update(overrides)
    return CubeSpec(**args)


def explore_summary(
    cubes, topology: Topology | None = None, cube: str = "explore", k: int = 3, min_answered: int = 30
) -> list[str]:
    """Lines describing the worst regions by drop rate and a drill-down into the worst site.

    Parameters
    ----------
    cubes : CubeSet or Cube
        A set holding a cube named ``cube`` built from :func:`explore_spec`, or that cube.
    topology : Topology, optional
        Unused beyond naming; labels already carry the external ids.
    k : int
        How many regions / hours to list.
    min_answered : int
        Sites and drill-down cells with fewer answered calls are not ranked (their rates are
        noise); if no site qualifies, every site is ranked.

    Returns
    -------
    list of str

    Notes
    -----
    Drop rate = dropped / answered calls, where dropped = answered and released with a cause
    outside ``CAUSE_NORMAL + CAUSE_USER``.
    """
    c = cubes[cube] if isinstance(cubes, CubeSet) else cubes
    lines = []
    reg = c.query(("region",), measures=["count", "sum:answered", "sum:dropped"])
    if len(reg) == 0:
        return ["cube: no calls yet"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = reg["sum_dropped"] / reg["sum_answered"]
    rate = np.where(np.isnan(rate), -1.0, rate)
    order = np.argsort(-rate, kind="stable")[:k]
    lines.append(f"cube: worst {len(order)} regions by drop rate (dropped / answered calls)")
    for i in order:
        lines.append(
            f"  region {reg['region'][i]}: {max(rate[i], 0.0):.2%} of "
            f"{int(reg['sum_answered'][i])} answered ({int(reg['count'][i])} calls)"
        )
    worst_region = reg["region"][order[0]]
    sites = c.query(("site",), where={"region": worst_region}, measures=["sum:answered", "sum:dropped"])
    with np.errstate(invalid="ignore", divide="ignore"):
        srate = np.where(sites["sum_answered"] > 0, sites["sum_dropped"] / sites["sum_answered"], -1.0)
    if np.any(sites["sum_answered"] >= min_answered):
        srate = np.where(sites["sum_answered"] >= min_answered, srate, -1.0)
    ws = int(np.argmax(srate))
    site = sites["site"][ws]
    lines.append(
        f"cube: worst site {site} of region {worst_region}: drop rate "
        f"{max(srate[ws], 0.0):.2%}; by hour of day and equipment class:"
    )
    drill = c.query(
        ("hour_of_day", "equipment_class"), where={"site": site}, measures=["count", "sum:answered", "sum:dropped"]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        drate = np.where(drill["sum_answered"] > 0, drill["sum_dropped"] / drill["sum_answered"], -1.0)
    # most dropped calls first (then the higher rate): where the site loses its calls
    for i in np.lexsort((-drate, -drill["sum_dropped"]))[:k]:
        lines.append(
            f"  {int(drill['hour_of_day'][i]):02d}h {drill['equipment_class'][i]}: "
            f"{max(drate[i], 0.0):.2%} dropped of {int(drill['sum_answered'][i])} answered"
        )
    return lines
