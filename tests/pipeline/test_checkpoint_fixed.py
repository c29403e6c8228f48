"""Fixed-size checkpoint entries (:data:`~telcoanalytics.pipeline.checkpoint.FIXED_SIZE_ENTRIES`):
stored at their full size but for the slots that never held a value, integers narrowed; the
round trip is exact, and the stored size does not change while the state fills."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from telcoanalytics.pipeline import checkpoint as ck

PROFILE = "comp.anomaly::net::detector::seas_w"  # (buckets, slots, fields), slot axis 1
COUNTS = "comp.analysis::series::counts_prb_util_pct"  # (elements, bins), slot axis 0


def round_trip(flat):
    small, ck.ENCODE_MIN_BYTES = ck.ENCODE_MIN_BYTES, 0
    try:
        enc, how = ck.encode_entries(dict(flat))
    finally:
        ck.ENCODE_MIN_BYTES = small
    return enc, ck.decode_entries(dict(enc), json.loads(json.dumps(how)))


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["f8", "i4", "i8"]).flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9),
            elements=st.one_of(
                st.just(0),
                st.floats(allow_nan=True) if dt == "f8" else st.integers(-(2**31), 2**31 - 1),
                st.just(-0.0) if dt == "f8" else st.integers(0, 3),
            ),
        )
    ),
    st.data(),
)
def test_fixed_entries_restore_every_bit(a, data):
    empty_slots = data.draw(st.lists(st.integers(0, 8), max_size=5))
    if a.ndim > 1:
        for s in empty_slots:
            if s < a.shape[1]:
                a[:, s] = 0
    enc, back = round_trip({PROFILE: a, COUNTS: a.copy()})
    for k in (PROFILE, COUNTS):
        assert back[k].dtype == a.dtype and back[k].shape == a.shape
        np.testing.assert_array_equal(back[k], a)
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(back[k]), np.signbit(a))
        assert k + "@nz" not in enc  # never stored as non-zero cells
    if a.ndim > 1 and a.dtype.kind == "f":
        held = ((a != 0) | np.signbit(a)).any(axis=tuple(i for i in range(a.ndim) if i != 1))
        assert enc[PROFILE].size == held.sum() * a.size // max(a.shape[1], 1)  # only the empty slots dropped


def test_a_filling_profile_keeps_its_stored_size():
    """A week profile whose active slots fill one bucket an hour: the stored entry has the same
    size after 6 hours and after a week; slots that never report are left out."""
    rng = np.random.default_rng(3)
    prof = np.zeros((168, 500, 2))
    active = rng.random(500) < 0.8
    counts = np.zeros((500, 2016), np.int32)
    sizes = []
    for hour in range(168):
        prof[hour, active, 0] = rng.normal(size=active.sum())
        prof[hour, active, 1] = (hour // 24 + 1) / 12
        counts[active, hour * 12 : (hour + 1) * 12] = rng.integers(0, 3, (active.sum(), 12))
        if hour in (5, 47, 167):
            enc, back = round_trip({PROFILE: prof, COUNTS: counts})
            np.testing.assert_array_equal(back[PROFILE], prof)
            np.testing.assert_array_equal(back[COUNTS], counts)
            sizes.append(sum(v.nbytes for v in enc.values()))
    assert sizes[0] == sizes[1] == sizes[2]
    assert sizes[0] < prof.nbytes * (active.mean() + 0.01) + counts.nbytes / 4 * (active.mean() + 0.01) + 200


@pytest.mark.parametrize("axis", [0, 1])
def test_consumed_input_is_emptied_and_results_equal(axis):
    a = np.zeros((6, 5, 2))
    a[2, 3, 1] = 7.5
    enc1, how1 = ck.encode_entries({"x::store.hour" if axis else "x::series::sums_a": a})
    src = {"x::store.hour" if axis else "x::series::sums_a": a}
    enc2, how2 = ck.encode_entries(src, consume=True)
    assert not src and how1 == how2 and enc1.keys() == enc2.keys()


@pytest.mark.parametrize("consume", [False, True])
def test_week_profile_keeps_the_day_profiles_slots_so_its_size_is_fixed_from_day_one(consume):
    day_prof = "comp.anomaly::net::detector::seas_d"
    rng = np.random.default_rng(4)
    d = np.zeros((24, 50, 2))
    d[:, [1, 3, 5, 40]] = rng.random((24, 4, 2))  # the day profile holds 4 slots from the first day
    w = np.zeros((168, 50, 2))
    w[7, 1] = 0.5  # the week profile has learned one of them so far
    sizes = []
    for filled in ([], [3], [3, 5, 40]):  # its slots fill over the next days
        w[9, filled] = 1.25
        flat = {PROFILE: w.copy(), day_prof: d.copy()}  # the week profile comes first: found anyway
        enc, how = ck.encode_entries(flat, consume=consume)
        assert not flat if consume else len(flat) == 2
        sizes.append(enc[PROFILE].nbytes)
        assert int(np.unpackbits(enc[PROFILE + "@slots"]).sum()) == 4
        back = ck.decode_entries(dict(enc), json.loads(json.dumps(how)))
        np.testing.assert_array_equal(back[PROFILE], w)
        np.testing.assert_array_equal(back[day_prof], d)
    assert sizes == [168 * 4 * 2 * 8] * 3  # stored at the day profile's slots from the start
    alone, _ = ck.encode_entries({PROFILE: w.copy()})  # without its companion: its own slots
    assert alone[PROFILE].nbytes == 168 * 4 * 2 * 8
    odd, _ = ck.encode_entries({PROFILE: w.copy(), day_prof: np.ones((24, 60, 2))})  # another slot count: ignored
    assert odd[PROFILE].nbytes == 168 * 4 * 2 * 8
