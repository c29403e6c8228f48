"""CubeSet: cubes with the same measure layout share one pass over the events per batch."""

import numpy as np

from telcoanalytics.cube import Cube, CubeSet, CubeSpec
from tests.reference.cube import make_cdr, make_topology

from .test_cube_direct import assert_same

FAST = ["count", "sum:duration_ms", "min:duration_ms", "max:duration_ms"]


def specs():
    return {
        "rsh": CubeSpec(dimensions=["region", "service", "hour_of_day"], measures=FAST),
        "rs": CubeSpec(dimensions=["region", "service"], measures=FAST),
        "h": CubeSpec(dimensions=["hour_of_day"], measures=FAST, cuboids=[("hour_of_day",)]),
        "var": CubeSpec(dimensions=["service"], measures=["count", "var:duration_ms"]),
        "var2": CubeSpec(dimensions=["service", "hour_of_day"], measures=["count", "var:duration_ms"]),
        "site": CubeSpec(dimensions=["site"], measures=FAST),
        # a huge (hour bucket) base key space is never a shared group base
        "hour": CubeSpec(dimensions=["hour"], measures=FAST, direct_min_keys=1 << 62),
    }


def test_shared_pass_equals_separate_cubes(rng, monkeypatch):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, 900)
    cs = CubeSet(specs(), topo)
    alone = {nm: Cube(sp, topo) for nm, sp in specs().items()}
    calls = []
    orig = CubeSet._shared_deltas

    def spy(self, b):
        out = orig(self, b)
        calls.append(sorted(out))
        return out

    monkeypatch.setattr(CubeSet, "_shared_deltas", spy)
    for p in np.array_split(cdr, 3):
        cs.update(p)
        for c in alone.values():
            c.update(p)
    # region x service x hour carries region x service and hour; var and var2 share; site alone
    assert calls[0] == ["h", "rs", "rsh", "var", "var2"]
    for nm, c in alone.items():
        assert cs[nm].n_rows == c.n_rows == 900
        assert_same(cs[nm], c, [cb.dims for cb in c.cuboids])


def test_invalid_rows_are_rejected_per_cube_not_per_group(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, 400, unknown_frac=0.05)
    cs = CubeSet(
        {
            "rs": CubeSpec(dimensions=["region", "service"], measures=FAST),
            "s": CubeSpec(dimensions=["service"], measures=FAST),
        },
        topo,
    )
    reps = cs.update(cdr)
    # the service cube keeps rows of unknown elements; the region one rejects them
    assert reps["s"].n_rejected == 0 and reps["rs"].n_rejected > 0
    assert cs["s"].n_rows == 400 and cs["rs"].n_rows == 400 - reps["rs"].n_rejected
