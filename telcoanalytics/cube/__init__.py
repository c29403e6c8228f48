"""Cubes: dimension and measure specifications, the lattice of cuboids, hashed and dense cell tables,
streaming accumulation from event batches, cube sets over one stream and OLAP views.

Modules: :mod:`~telcoanalytics.cube.spec` (:class:`CubeSpec`, measures, key spaces, the lattice),
:mod:`~telcoanalytics.cube.dims` (dimensions, value fields, batch preparation),
:mod:`~telcoanalytics.cube.table` (cell tables), :mod:`~telcoanalytics.cube.cube` (:class:`Cube`)
with its batch build (:mod:`~telcoanalytics.cube.build`) and queries
(:mod:`~telcoanalytics.cube.query`), :mod:`~telcoanalytics.cube.views` (:class:`CubeView`,
:class:`Pivot`) and :mod:`~telcoanalytics.cube.cubeset` (:class:`CubeSet`, the replay's exploration cube).
"""

from telcoanalytics.cube.build import CubeBudgetError, UpdateReport
from telcoanalytics.cube.cube import Cube, hll_relative_error
from telcoanalytics.cube.cubeset import CubeSet, explore_spec, explore_summary
from telcoanalytics.cube.dims import (
    ATTRIBUTE_NAMES,
    BIG_MOD,
    CAUSE_CLASSES,
    MS_DAY,
    MS_HOUR,
    MS_MINUTE,
    TIME_GRANULARITY_MS,
    BatchArrays,
    BatchContext,
    Derivation,
    Dimension,
    TopologySlots,
    ValueField,
    builtin_dimension,
    builtin_value,
    prepare_batch,
    splitmix64,
    time_derivations,
    time_granularity_ms,
)
from telcoanalytics.cube.spec import (
    MAX_ALL_DIMS,
    MAX_KEYSPACE,
    MEASURE_KINDS,
    CubeSpec,
    DerivePlan,
    KeySpace,
    Measure,
    covers,
    derivation_for,
    reduce_dims,
    resolve_cuboids,
    rollup,
)
from telcoanalytics.cube.table import (
    CELL_ARRAYS,
    P_ARRAYS,
    CellTable,
    PositionalCellTable,
)
from telcoanalytics.cube.views import CubeView, Pivot, to_pandas

__all__ = [
    "Cube",
    "CubeSet",
    "CubeSpec",
    "CubeView",
    "CubeBudgetError",
    "Measure",
    "Pivot",
    "UpdateReport",
    "explore_summary",
    "explore_spec",
    "to_pandas",
    "hll_relative_error",
    "BIG_MOD",
    "MS_MINUTE",
    "MS_HOUR",
    "MS_DAY",
    "TIME_GRANULARITY_MS",
    "CAUSE_CLASSES",
    "Derivation",
    "BatchContext",
    "Dimension",
    "ValueField",
    "ATTRIBUTE_NAMES",
    "TopologySlots",
    "time_derivations",
    "builtin_dimension",
    "time_granularity_ms",
    "builtin_value",
    "splitmix64",
    "BatchArrays",
    "prepare_batch",
    "MEASURE_KINDS",
    "MAX_KEYSPACE",
    "MAX_ALL_DIMS",
    "rollup",
    "reduce_dims",
    "derivation_for",
    "covers",
    "KeySpace",
    "DerivePlan",
    "resolve_cuboids",
    "CELL_ARRAYS",
    "CellTable",
    "P_ARRAYS",
    "PositionalCellTable",
]
