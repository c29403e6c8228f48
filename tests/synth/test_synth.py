"""Tests of the synthetic network generator: reproducibility, realism, labels, stream, files."""

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.records import (
    CAUSE_CONGESTION,
    CAUSE_FAILURE,
    CAUSE_USER,
    DTYPES,
    EQUIPMENT_CLASS_CODE,
    METRIC_CODE,
    METRICS,
    NO_TIME_MS,
    SERVICE_CODE,
    TIME_FIELD,
    TOPOLOGY_DTYPE,
)
from telcoanalytics.synth.load import DAY_MS, HOUR_MS
from telcoanalytics.synth.network import BASE_SOURCES as SOURCES  # the sources of every synthetic day
from telcoanalytics.synth.network import (
    CLASS_METRICS,
    CORRUPT_KINDS,
    LABEL_DTYPE,
    ORIGIN_CLEAN,
    ORIGIN_CORRUPTED,
    ORIGIN_DUPLICATE,
    SOURCE_CORRUPTIONS,
    SynthConfig,
    diurnal_profile,
    generate,
    read_labels,
)
from telcoanalytics.synth.sources import mix63
from telcoanalytics.synth.topology import build_topology

START = SynthConfig().start_ms  # Monday 00:00 UTC
SMALL = dict(
    n_elements=300,
    n_regions=4,
    days=0.25,
    start_ms=START + 10 * HOUR_MS,
    n_congestion=6,
    n_failure=6,
    n_degradation=4,
    n_crowd=2,
    n_collection_gap=2,
)


@pytest.fixture(scope="module")
def day():
    return generate(SynthConfig(seed=11, **SMALL))


@pytest.fixture(scope="module")
def tiny():
    # for the file round trips and property tests: ~10k events, every corruption kind present
    return generate(SynthConfig(n_elements=120, n_regions=2, days=0.1, seed=21, start_ms=START + 12 * HOUR_MS))


@pytest.fixture(scope="module")
def full_day():
    # one whole day, fewer scenarios so most cells are undisturbed
    return generate(
        SynthConfig(
            n_elements=400,
            n_regions=4,
            days=1.0,
            seed=5,
            n_congestion=2,
            n_failure=2,
            n_degradation=1,
            n_crowd=1,
            n_collection_gap=1,
        )
    )


def _digest(d) -> str:
    h = hashlib.sha256()
    h.update(d.topology_table.tobytes())
    for s in SOURCES:
        h.update(d[s].tobytes())
    h.update(d.labels.tobytes())
    for s, rows, arr, org in d.raw_batches(300_000, with_arrival=True):
        h.update(s.encode())
        h.update(rows.tobytes())
        h.update(arr.tobytes())
        h.update(org.tobytes())
    return h.hexdigest()


def _in(t, a, b):
    return (t >= a) & (t < b)


# ---- reproducibility -----------------------------------------------------------------------------
def test_same_seed_same_bytes_different_seed_differs(day):
    again = generate(SynthConfig(seed=11, **SMALL))
    assert _digest(again) == _digest(day)
    assert again.stats == day.stats
    other = generate(SynthConfig(seed=12, **SMALL))
    assert _digest(other) != _digest(day)
    for s in SOURCES:  # every source changes, not just one
        assert other[s].tobytes() != day[s].tobytes()


def test_overrides_and_scale():
    d = generate(SynthConfig(seed=11, **SMALL), seed=11, n_congestion=0)
    assert "congestion" not in set(d.labels["scenario"])
    big = generate(
        n_elements=200,
        n_regions=2,
        days=0.05,
        scale=2.0,
        n_congestion=0,
        n_failure=0,
        n_degradation=0,
        n_crowd=0,
        n_collection_gap=0,
    )
    assert big.topology.n_elements == 400
    assert len(big.labels) == 0 and big.labels.dtype == LABEL_DTYPE
    assert big.n_events == sum(len(big[s]) for s in SOURCES)


# ---- topology ------------------------------------------------------------------------------------
def test_topology_structure(day):
    t = day.topology_table
    assert t.dtype == TOPOLOGY_DTYPE and len(t) == 300
    assert len(np.unique(t["element_id"])) == len(t)
    topo = day.topology
    assert topo.levels == ("region", "site", "element") and topo.n_nodes("region") == 4
    cls = t["equipment_class"]
    for r in np.unique(t["region_id"]):
        m = t["region_id"] == r
        assert (cls[m] == EQUIPMENT_CLASS_CODE["packet_gateway"]).sum() == 1
        assert (cls[m] == EQUIPMENT_CLASS_CODE["core_router"]).sum() == 2
        assert (cls[m] == EQUIPMENT_CLASS_CODE["aggregation_switch"]).sum() >= 1
    cells = np.isin(cls, [EQUIPMENT_CLASS_CODE["macro_cell"], EQUIPMENT_CLASS_CODE["small_cell"]])
    assert cells.mean() > 0.9
    sites, per_site = np.unique(t["site_id"][cells], return_counts=True)
    assert per_site.max() <= 3 and 2.0 < per_site.mean() <= 3.0
    # cells of one site share coordinates; coordinates are plausible
    for s in sites[:20]:
        m = t["site_id"] == s
        assert np.ptp(t["lat"][m]) == 0 and np.ptp(t["lon"][m]) == 0
    assert np.all(np.abs(t["lat"]) < 90) and np.all(np.abs(t["lon"]) < 180)


def test_build_topology_exact_size_and_errors():
    for n, r in ((32, 4), (1000, 7), (10_001, 10)):
        topo = build_topology(n, r, 3, np.random.default_rng(0))
        assert topo.n == n and len(topo.region_ids) == r
        assert np.all(topo.uplink[topo.is_cell] >= 0)
    with pytest.raises(ValueError, match="too small"):
        build_topology(10, 4, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_regions"):
        build_topology(100, 0, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="cells_per_site"):
        build_topology(100, 2, 0, np.random.default_rng(0))


# ---- canonical arrays ----------------------------------------------------------------------------
def test_arrays_canonical_and_sorted(day):
    ids = set(day.topology_table["element_id"].tolist())
    for s in SOURCES:
        a = day[s]
        assert a.dtype == DTYPES[s] and len(a) > 0
        assert np.all(np.diff(a[TIME_FIELD[s]]) >= 0), s
        assert np.all(_in(a[TIME_FIELD[s]], day.start_ms, day.end_ms)), s
        el = a["src_element_id"] if s == "flow" else a["element_id"]
        assert set(np.unique(el).tolist()) <= ids
    with pytest.raises(KeyError, match="unknown source"):
        day["bogus"]


def test_cdr_fields(day):
    c = day.cdr
    assert len(np.unique(c["record_id"])) == len(c) and np.all(c["record_id"] >= 0)
    ans = c["answer_ms"] != NO_TIME_MS
    assert np.all(c["answer_ms"][~ans] == NO_TIME_MS)
    assert np.all(c["answer_ms"][ans] >= c["start_ms"][ans]) and np.all(c["end_ms"][ans] >= c["answer_ms"][ans])
    assert np.all(c["end_ms"] >= c["start_ms"])
    assert np.all((c["cause"] >= 1) & (c["cause"] <= 127))
    # answered calls end with normal clearing or are dropped by the network; unanswered never normal
    assert set(np.unique(c["cause"][ans]).tolist()) <= {16, 31, 38, 41, 102}
    assert not np.isin(c["cause"][~ans], [16, 31]).any()
    talk = ans & np.isin(c["service"], [SERVICE_CODE["voice"], SERVICE_CODE["video"]])
    assert 0.001 < np.isin(c["cause"][talk], [38, 41, 102]).mean() < 0.03
    assert np.all(np.isin(c["cause"][ans & ~talk], [16, 31, 38]))  # 38: cut when a cell died
    carries = np.isin(c["service"], [SERVICE_CODE["video"], SERVICE_CODE["data"]]) & ans
    assert np.all(c["bytes_down"][~carries] == 0) and np.all(c["bytes_down"][carries] >= 0)
    assert (c["bytes_down"][carries] > 0).mean() > 0.99 and np.all(c["bytes_up"] >= 0)
    # parties come from a subscriber population: fewer distinct IMSIs than calls, ids hashed
    assert 0 < len(np.unique(c["imsi_hash"])) < len(c)
    assert np.all(c["calling_id"] >= 0)


def test_mix63_is_injective_on_a_range():
    x = mix63(np.arange(200_000, dtype=np.uint64) + np.uint64(12345))
    assert len(np.unique(x)) == len(x) and x.min() >= 0


def test_equip_metrics_per_class_and_cadence(day):
    e = day.equip
    cls_of = dict(zip(day.topology_table["element_id"].tolist(), day.topology_table["equipment_class"].tolist()))
    elems, first = np.unique(e["element_id"], return_index=True)
    for el in elems[::7]:
        got = set(np.unique(e["metric_id"][e["element_id"] == el]).tolist())
        assert got == {METRIC_CODE[m] for m in CLASS_METRICS[cls_of[int(el)]]}
    temp = e["metric_id"] == METRIC_CODE["temperature_c"]
    assert np.all((e["ts_ms"][temp] - day.start_ms) % day.config.env_interval_ms == 0)
    assert np.all((e["ts_ms"] - day.start_ms) % day.config.pm_interval_ms == 0)
    for name, lo, hi in (
        ("prb_util_pct", 0, 100),
        ("cpu_util_pct", 0, 100),
        ("throughput_mbps", 0, np.inf),
        ("unavailable_s", 0, 300),
        ("error_count", 0, np.inf),
        ("temperature_c", -10, 90),
    ):
        v = e["value"][e["metric_id"] == METRIC_CODE[name]]
        assert len(v) and np.all((v >= lo) & (v <= hi)), name
    # one row per (ts, element, metric)
    key = (e["ts_ms"] - day.start_ms) * 10**9 + (e["element_id"] % 10**8) * 10 + e["metric_id"]
    assert len(np.unique(key)) == len(e)
    assert set(np.unique(e["metric_id"]).tolist()) <= set(range(len(METRICS)))


def test_qos_and_flows(day):
    q = day.qos
    cells = set(day.topology_table["element_id"][day.topology.attributes["equipment_class"] <= 1].tolist())
    is_cell = np.array([v in cells for v in q["element_id"].tolist()])
    assert np.all(np.isfinite(q["mos"][is_cell])) and np.all(np.isnan(q["mos"][~is_cell]))
    assert np.all((q["mos"][is_cell] >= 1) & (q["mos"][is_cell] <= 4.5))
    assert np.all(q["latency_ms"] > 0) and np.all(q["jitter_ms"] >= 0)
    assert np.all((q["loss_pct"] >= 0) & (q["loss_pct"] <= 100))
    f = day.flow
    assert np.all(f["bytes"] >= 0) and np.all(f["packets"] >= 0) and np.all(f["flows"] >= 0)
    t = day.topology
    src_cls = t.attributes["equipment_class"][t.index_of(f["src_element_id"])]
    dst_cls = t.attributes["equipment_class"][t.index_of(f["dst_element_id"])]
    assert np.all(t.index_of(f["dst_element_id"]) >= 0)
    # cells feed switches, switches feed core routers, core routers feed the packet gateway
    expect = {0: 3, 1: 3, 3: 2, 2: 4}
    assert all(expect[int(a)] == int(b) for a, b in set(zip(src_cls.tolist(), dst_cls.tolist())))


def test_latency_tracks_utilisation(full_day):
    d = full_day
    e, q = d.equip, d.qos
    u = e[(e["metric_id"] == METRIC_CODE["prb_util_pct"]) & (d.label_index("equip") < 0)]
    cells = np.unique(u["element_id"])
    p95 = np.array([np.percentile(u["value"][u["element_id"] == c], 95) for c in cells])
    el = cells[np.argmax(p95)]  # the busiest undisturbed cell: queueing shows
    uu = u[u["element_id"] == el]
    qq = q[(q["element_id"] == el) & (d.label_index("qos") < 0)]
    common, iu, iq = np.intersect1d(uu["ts_ms"], qq["ts_ms"], return_indices=True)
    r = np.corrcoef(uu["value"][iu], qq["latency_ms"][iq])[0, 1]
    assert r > 0.3, f"latency should rise with utilisation, corr={r:.2f}"


# ---- seasonality and proportions ---------------------------------------------------------------
def test_diurnal_profile_shape():
    mon = START
    h = np.arange(0, 24 * 7) * HOUR_MS + mon + HOUR_MS // 2
    p = diurnal_profile(h)
    wd = p[: 24 * 5].reshape(5, 24)
    we = p[24 * 5 :].reshape(2, 24)
    assert np.allclose(wd, wd[0])  # every weekday alike
    assert 0.97 < wd.max() <= 1.0 and wd[0].argmax() in (19, 20)
    assert wd[0, 4] < 0.12  # night trough
    assert 0.8 < we.max() <= 0.86 and we[0, 9] < wd[0, 9]  # no office peak on weekends
    assert np.allclose(diurnal_profile(h, utc_offset_h=2.0)[:-2], p[2:])


def test_business_and_residential_cells():
    with pytest.raises(ValueError, match="kind must be one of"):
        diurnal_profile(START, kind="office")
    h = START + np.arange(24 * 7) * HOUR_MS + HOUR_MS // 2
    bus, res = diurnal_profile(h, kind="business"), diurnal_profile(h, kind="residential")
    assert bus[:24].argmax() in range(10, 17) and res[:24].argmax() in range(19, 23)
    assert bus[120:].max() < 0.5 and res[120:].max() > 0.9  # weekends: offices quiet, homes busy
    # Friday + Saturday: business-heavy cells lose more traffic at the weekend than residential ones
    d = generate(
        n_elements=200,
        n_regions=2,
        days=2.0,
        start_ms=START + 4 * DAY_MS,
        seed=8,
        n_congestion=0,
        n_failure=0,
        n_degradation=0,
        n_crowd=0,
        n_collection_gap=0,
    )
    u = d.equip[d.equip["metric_id"] == METRIC_CODE["prb_util_pct"]]
    idx = d.topology.index_of(u["element_id"])
    sat = u["ts_ms"] >= d.start_ms + DAY_MS
    b = d.business_share[idx]
    ratio = lambda m: u["value"][m & sat].mean() / u["value"][m & ~sat].mean()  # noqa: E731
    assert ratio(b > 0.6) < 0.8 * ratio(b < 0.2)


def test_cdr_volume_follows_diurnal_load(full_day):
    c = full_day.cdr
    hour = (c["start_ms"] - full_day.start_ms) // HOUR_MS
    per_hour = np.bincount(hour, minlength=24)
    assert per_hour[18:21].mean() > 5 * per_hour[2:5].mean()
    assert per_hour.argmax() in range(9, 22)
    # equipment utilisation follows the same curve
    e = full_day.equip
    u = e[e["metric_id"] == METRIC_CODE["prb_util_pct"]]
    uh = np.bincount((u["ts_ms"] - full_day.start_ms) // HOUR_MS, weights=u["value"], minlength=24) / np.bincount(
        (u["ts_ms"] - full_day.start_ms) // HOUR_MS, minlength=24
    )
    assert uh[18:21].mean() > 3 * uh[2:5].mean()
    # volume matches the configured mean per cell and day (within 15%: scenarios add surges)
    n_cells = (full_day.topology.attributes["equipment_class"] <= 1).sum()
    assert abs(len(c) / (n_cells * full_day.config.cdr_per_cell_day) - 1.0) < 0.15


def test_cause_and_service_proportions(full_day):
    c = full_day.cdr
    voice = c[c["service"] == SERVICE_CODE["voice"]]
    share = lambda a, codes: np.isin(a["cause"], codes).mean()  # noqa: E731
    # tolerances: ~30k voice calls, binomial sd < 0.3 percentage points; scenario windows add a little
    assert 0.80 < share(voice, [16]) < 0.89
    assert 0.09 < share(voice, list(CAUSE_USER)) < 0.15
    assert 0.01 < share(voice, [31]) < 0.04
    assert share(voice, list(CAUSE_FAILURE)) < 0.02 and share(voice, [38, 41, 102]) > 0.001
    assert share(voice, list(CAUSE_CONGESTION)) < 0.03
    u, n = np.unique(c["cause"], return_counts=True)
    assert u[np.argmax(n)] == 16
    assert {16, 17, 18, 19, 31, 34, 38, 41, 102} <= set(u.tolist())
    svc = np.bincount(c["service"], minlength=4) / len(c)
    assert np.allclose(svc, [0.42, 0.06, 0.22, 0.30], atol=0.02)
    ans = c["answer_ms"] != NO_TIME_MS
    hold = (c["end_ms"] - c["answer_ms"])[ans & (c["service"] == SERVICE_CODE["voice"])] / 1000.0
    assert 70 < np.median(hold) < 110  # lognormal, median 90 s
    assert np.mean(hold) > np.median(hold)  # right-skewed


# ---- labels match what was injected ------------------------------------------------------------
def test_labels_cover_every_kind(day):
    lab = day.labels
    assert lab.dtype == LABEL_DTYPE
    kinds, n = np.unique(lab["scenario"], return_counts=True)
    assert dict(zip(kinds.tolist(), n.tolist())) == {
        "congestion": 6,
        "failure": 6,
        "degradation": 4,
        "crowd": 2,
        "collection_gap": 2,
    }
    assert np.all(lab["start_ms"] >= day.start_ms) and np.all(lab["end_ms"] <= day.end_ms)
    assert np.all(lab["end_ms"] > lab["start_ms"])
    assert np.all(np.diff(lab["start_ms"]) >= 0) and len(day.scenarios) == len(lab)
    for row, det in zip(lab, day.scenarios):
        assert det["scenario"] == row["scenario"] and det["start_ms"] == row["start_ms"]
        if row["scope_level"] == "element":
            assert row["element_id"] == row["scope_id"] and det["element_ids"] == [row["element_id"]]
        else:
            assert row["element_id"] == -1
    # the scenarios touch disjoint sets of elements
    all_el = np.concatenate([d["element_ids"] for d in day.scenarios if d["scenario"] != "collection_gap"])
    assert len(np.unique(all_el)) == len(all_el)


def test_label_index(day):
    for s in SOURCES:
        li = day.label_index(s)
        assert li.shape == (len(day[s]),) and li.min() >= -1 and li.max() < len(day.labels)
        el = day[s]["src_element_id"] if s == "flow" else day[s]["element_id"]
        t = day[s][TIME_FIELD[s]]
        for i in np.unique(li[li >= 0]):
            row = day.labels[i]
            assert np.all(_in(t[li == i], row["start_ms"], row["end_ms"]))
            assert np.all(np.isin(el[li == i], day.scenarios[i]["element_ids"]))
    cong = np.flatnonzero(day.labels["scenario"] == "congestion")
    li = day.label_index("cdr")
    assert np.isin(cong, li).all()  # every congestion has CDRs under its label
    c = day.cdr
    assert np.isin(c["cause"][np.isin(li, cong)], [34, 42]).mean() > np.isin(c["cause"][li < 0], [34, 42]).mean()
    with pytest.raises(KeyError):
        day.label_index("x")


def test_congestion_label(day):
    c, q, e = day.cdr, day.qos, day.equip
    util = e[e["metric_id"] == METRIC_CODE["prb_util_pct"]]
    for row, det in zip(day.labels, day.scenarios):
        if row["scenario"] != "congestion":
            continue
        el, ps, pe = row["element_id"], det["plateau_start_ms"], det["plateau_end_ms"]
        m = (c["element_id"] == el) & _in(c["start_ms"], ps, pe)
        blocked = np.isin(c["cause"][m], [34, 42]).mean()
        assert m.sum() >= 10 and blocked > 0.02, (row, m.sum(), blocked)
        u_el = util[util["element_id"] == el]
        assert u_el["value"][_in(u_el["ts_ms"], ps, pe)].mean() > 95
        before = u_el["value"][u_el["ts_ms"] < row["start_ms"]]
        assert before.mean() < u_el["value"][_in(u_el["ts_ms"], ps, pe)].mean() - 3
        q_el = q[q["element_id"] == el]
        lat_in = q_el["latency_ms"][_in(q_el["ts_ms"], ps, pe)].mean()
        assert lat_in > 2 * q_el["latency_ms"][q_el["ts_ms"] < row["start_ms"]].mean()
        assert q_el["loss_pct"][_in(q_el["ts_ms"], ps, pe)].mean() > 0.5
        # the ramp: utilisation at the ramp start is below the plateau
        assert u_el["value"][u_el["ts_ms"] == row["start_ms"]].max() < 95


def test_failure_labels(day):
    for row, det in zip(day.labels, day.scenarios):
        if row["scenario"] != "failure":
            continue
        el, a, b = row["element_id"], row["start_ms"], row["end_ms"]
        if det["mode"] == "silent":
            assert row["source"] == "all" and row["metric"] == ""
            for s in SOURCES:
                arr = day[s]
                col = arr["src_element_id"] if s == "flow" else arr["element_id"]
                t = arr[TIME_FIELD[s]]
                assert not np.any((col == el) & _in(t, a, b)), s
                assert np.any((col == el) & ~_in(t, a, b)), s  # alive outside the window
            # calls in progress when the cell died were cut within 5 s, with cause 38
            c = day.cdr
            spanning = (c["element_id"] == el) & (c["start_ms"] < a) & (c["end_ms"] > a)
            assert np.all(c["end_ms"][spanning] < a + 5_000) and np.all(c["cause"][spanning] == 38)
        else:
            assert det["mode"] == "errors" and row["metric"] == "error_count"
            e = day.equip
            m = (e["element_id"] == el) & (e["metric_id"] == METRIC_CODE["error_count"])
            inside = e["value"][m & _in(e["ts_ms"], a, b)].mean()
            outside = e["value"][m & ~_in(e["ts_ms"], a, b)].mean()
            assert inside > 5 * outside
            unav = e["value"][
                (e["element_id"] == el) & (e["metric_id"] == METRIC_CODE["unavailable_s"]) & _in(e["ts_ms"], a, b)
            ]
            if len(unav):
                assert np.any(unav > 0)


def test_silent_cell_traffic_moves_to_its_site_neighbours(day):
    _c, t = day.cdr, day.topology_table
    checked = 0
    for row, det in zip(day.labels, day.scenarios):
        if det["mode"] != "silent" or det["params"]["absorbed_by"] == 0:
            continue
        site = t["site_id"][t["element_id"] == row["element_id"]][0]
        sib = t["element_id"][(t["site_id"] == site) & (t["element_id"] != row["element_id"])]
        e = day.equip
        u = e[(e["metric_id"] == METRIC_CODE["prb_util_pct"]) & np.isin(e["element_id"], sib)]
        inw = _in(u["ts_ms"], row["start_ms"], row["end_ms"])
        pre = _in(u["ts_ms"], row["start_ms"] - HOUR_MS, row["start_ms"])
        # neighbours' utilisation in the window over the hour before, against the same ratio of
        # all other cells (which removes the diurnal trend)
        others = e[
            (e["metric_id"] == METRIC_CODE["prb_util_pct"])
            & ~np.isin(e["element_id"], sib)
            & (day.topology.attributes["equipment_class"][day.topology.index_of(e["element_id"])] <= 1)
            & (day.label_index("equip") < 0)
        ]  # undisturbed cells only
        o_in = _in(others["ts_ms"], row["start_ms"], row["end_ms"])
        o_pre = _in(others["ts_ms"], row["start_ms"] - HOUR_MS, row["start_ms"])
        lift = (u["value"][inw].mean() / u["value"][pre].mean()) / (
            others["value"][o_in].mean() / others["value"][o_pre].mean()
        )
        assert lift > 1.05, lift
        checked += 1
    assert checked >= 1


def test_failure_causes_rise_under_error_failure():
    # a busier network so the failing cell carries enough calls to measure the cause share
    d = generate(
        SynthConfig(
            n_elements=150,
            n_regions=2,
            days=0.25,
            seed=4,
            start_ms=START + 12 * HOUR_MS,
            cdr_per_cell_day=2000,
            n_congestion=0,
            n_failure=6,
            n_degradation=0,
            n_crowd=0,
            n_collection_gap=0,
        )
    )
    c = d.cdr
    checked = 0
    for row, det in zip(d.labels, d.scenarios):
        if det["mode"] == "errors" and det["params"]["fail_share"] > 0:
            m = (c["element_id"] == row["element_id"]) & _in(c["start_ms"], row["start_ms"], row["end_ms"])
            assert np.isin(c["cause"][m], CAUSE_FAILURE).mean() > 0.04
            checked += 1
    assert checked >= 1


def test_degradation_label(day):
    q = day.qos
    for row in day.labels[day.labels["scenario"] == "degradation"]:
        assert row["source"] == "qos" and row["metric"] == "latency_ms"
        qe = q[q["element_id"] == row["element_id"]]
        a, b = row["start_ms"], row["end_ms"]
        last = qe["latency_ms"][_in(qe["ts_ms"], b - (b - a) // 4, b)].mean()
        first = qe["latency_ms"][_in(qe["ts_ms"], a, a + (b - a) // 4)].mean()
        before = qe["latency_ms"][qe["ts_ms"] < a].mean()
        assert last > 2 * before and last > 1.5 * first  # a drift, not a step
        after = qe["latency_ms"][qe["ts_ms"] >= b]
        if len(after):
            assert after.mean() < last / 2  # repaired


def test_crowd_label(day):
    c = day.cdr
    for row, det in zip(day.labels, day.scenarios):
        if row["scenario"] != "crowd":
            continue
        assert row["scope_level"] == "site" and row["scope_id"] in day.topology_table["site_id"]
        els = np.array(det["element_ids"])
        t = day.topology_table
        crowd_sites = np.unique(t["site_id"][np.isin(t["element_id"], els)])
        assert 4 <= len(crowd_sites) <= 8 and row["scope_id"] in crowd_sites
        # the affected sites are the ones nearest the venue within its region (other scenarios aside)
        venue = t[t["site_id"] == row["scope_id"]][0]
        d_km = 111.2 * np.hypot(t["lat"] - venue["lat"], (t["lon"] - venue["lon"]) * np.cos(np.radians(venue["lat"])))
        cell = t["equipment_class"] <= 1
        assert d_km[np.isin(t["element_id"], els)].max() <= det["params"]["max_distance_km"] + 1e-9
        assert np.median(d_km[cell & (t["region_id"] == venue["region_id"])]) > det["params"]["max_distance_km"]
        mine = np.isin(c["element_id"], els)
        ps, pe = det["plateau_start_ms"], det["plateau_end_ms"]
        inw = _in(c["start_ms"], ps, pe)
        outw = ~_in(c["start_ms"], row["start_ms"], row["end_ms"])
        # attempts relative to the rest of the network: clearly higher during the event
        ratio_in = (mine & inw).sum() / max((~mine & inw).sum(), 1)
        ratio_out = (mine & outw).sum() / max((~mine & outw).sum(), 1)
        assert ratio_in > 1.3 * ratio_out, (ratio_in, ratio_out)
        # but it is not a fault: failure and congestion causes at their normal (base) rates
        sel = c[mine & inw]
        assert np.isin(sel["cause"], CAUSE_FAILURE).mean() < 0.02
        assert np.isin(sel["cause"], [34, 42]).mean() < 0.02
        u = day.equip[(day.equip["metric_id"] == METRIC_CODE["prb_util_pct"]) & np.isin(day.equip["element_id"], els)]
        # below the blocking knee (97%): the natural cap 0.93 plus measurement noise at most
        assert u["value"][_in(u["ts_ms"], ps, pe)].max() < 97


def test_collection_gap_label(day):
    t = day.topology_table
    for row in day.labels[day.labels["scenario"] == "collection_gap"]:
        assert row["scope_level"] == "region" and row["source"] == "equip" and row["element_id"] == -1
        els = t["element_id"][t["region_id"] == row["scope_id"]]
        a, b = row["start_ms"], row["end_ms"]
        e = day.equip
        assert not np.any(np.isin(e["element_id"], els) & _in(e["ts_ms"], a, b))
        assert np.any(np.isin(e["element_id"], els) & (e["ts_ms"] < a))
        # the network is fine: QoS and flows keep coming from every element of the region (no other
        # scenario runs in a gap region), flows from all but the packet gateway
        k = (b - a) // day.config.pm_interval_ms
        for s, expect in (("qos", k * len(els)), ("flow", k * (len(els) - 1))):
            arr = day[s]
            col = arr["src_element_id"] if s == "flow" else arr["element_id"]
            assert (np.isin(col, els) & _in(arr["ts_ms"], a, b)).sum() == expect, s


# ---- arrival stream ----------------------------------------------------------------------------
def test_raw_batches_conserve_counts(day):
    st = day.stats
    got = {s: 0 for s in SOURCES}
    origins = {s: [] for s in SOURCES}
    last_window = -1
    for s, rows, arr, org in day.raw_batches(60_000, with_arrival=True):
        assert rows.dtype == DTYPES[s] and len(rows) == len(arr) == len(org) > 0
        assert np.all(np.diff(arr) >= 0)
        w = arr[0] // 60_000
        assert np.all(arr // 60_000 == w) and w >= last_window
        last_window = w
        got[s] += len(rows)
        origins[s].append(org)
    for s in SOURCES:
        org = np.concatenate(origins[s])
        n_cor = sum(st["n_corrupted"][s].values())
        assert got[s] == st["n_arrived"][s] == st["n"][s] + st["n_duplicates"][s] + n_cor
        assert (org == ORIGIN_CLEAN).sum() == st["n"][s] == len(day[s])
        assert (org == ORIGIN_DUPLICATE).sum() == st["n_duplicates"][s]
        for kind, k in st["n_corrupted"][s].items():
            assert (org == ORIGIN_CORRUPTED + CORRUPT_KINDS.index(kind)).sum() == k
        assert set(st["n_corrupted"][s]) == set(SOURCE_CORRUPTIONS[s]) and min(st["n_corrupted"][s].values()) >= 1
        assert st["n_on_time"][s] + st["n_out_of_order"][s] + st["n_late"][s] == st["n"][s]
    assert st["n_duplicates"]["cdr"] == round(0.001 * st["n"]["cdr"]) and st["n_duplicates"]["equip"] == 0
    plain = sum(len(r) for _, r in day.raw_batches(60_000))
    assert plain == sum(st["n_arrived"].values())


@settings(max_examples=10)
@given(batch_ms=st.integers(min_value=1_000, max_value=3 * HOUR_MS))
def test_raw_batches_conservation_any_batch(tiny, batch_ms):
    got = {s: 0 for s in SOURCES}
    for s, rows in tiny.raw_batches(batch_ms):
        got[s] += len(rows)
    assert got == {s: tiny.stats["n_arrived"][s] for s in SOURCES}


def test_raw_stream_contents(day):
    for s in SOURCES:
        rows, arr, org = day.raw(s)
        assert len(rows) == day.stats["n_arrived"][s] and np.all(np.diff(arr) >= 0)
        clean = rows[org == ORIGIN_CLEAN]
        # the clean arrivals are exactly the ground truth (as a multiset)
        assert np.array_equal(
            np.sort(clean.view(f"V{DTYPES[s].itemsize}")), np.sort(day[s].view(f"V{DTYPES[s].itemsize}"))
        )
        tf = TIME_FIELD[s]
        el = rows["src_element_id"] if s == "flow" else rows["element_id"]
        for kind in SOURCE_CORRUPTIONS[s]:
            m = org == ORIGIN_CORRUPTED + CORRUPT_KINDS.index(kind)
            bad = rows[m]
            assert len(bad) >= 1
            fl = [f for f in bad.dtype.names if bad.dtype[f].kind == "f" and f != "mos"]
            finite = np.all(np.stack([np.isfinite(bad[f]) for f in fl]), axis=0) if fl else np.ones(len(bad), bool)
            in_time = _in(bad[tf], day.start_ms, day.end_ms)
            known = day.topology.index_of(el[m]) >= 0
            # exactly one problem per row: everything but the corrupted aspect stays valid
            if kind != "non_finite":
                assert np.all(finite), kind
            if kind != "time_out_of_range":
                assert np.all(in_time), kind
            if kind != "unknown_element":
                assert np.all(known), kind
            if kind == "non_finite":
                assert not np.any(finite)
            elif kind == "time_out_of_range":
                far = (bad[tf] < day.start_ms - 10 * 365 * DAY_MS) | (bad[tf] > day.end_ms + 100 * 365 * DAY_MS)
                assert np.all(far)
            elif kind == "end_before_start":
                assert np.all(bad["end_ms"] < bad["start_ms"]) and np.all(bad["answer_ms"] == NO_TIME_MS)
            elif kind == "answer_outside_call":
                assert np.all(bad["answer_ms"] > bad["end_ms"]) and np.all(bad["end_ms"] >= bad["start_ms"])
            elif kind == "unknown_element":
                assert not np.any(known)
            elif kind == "bad_cause":
                assert np.all((bad["cause"] < 1) | (bad["cause"] > 127))
            elif kind == "out_of_domain":
                if s == "cdr":
                    assert np.all(bad["service"] >= 4)
                elif s == "equip":
                    assert np.all(bad["metric_id"] >= len(METRICS))
                else:
                    assert np.all((bad["latency_ms"] < 0) | (bad["jitter_ms"] < 0) | (bad["loss_pct"] > 100))
            else:  # negative_counter
                if s == "equip":
                    assert np.all(bad["value"] < 0) and np.all(np.isin(bad["metric_id"], [3, 4]))
                else:
                    cols = ("bytes_up", "bytes_down") if s == "cdr" else ("bytes", "packets", "flows")
                    assert np.all(np.any(np.stack([bad[c] < 0 for c in cols]), axis=0))
            if kind != "negative_counter" and s in ("cdr", "flow"):
                cols = ("bytes_up", "bytes_down") if s == "cdr" else ("bytes", "packets", "flows")
                assert np.all(np.stack([bad[c] >= 0 for c in cols]))
    rows, arr, org = day.raw("cdr")
    dup = rows[org == ORIGIN_DUPLICATE]
    assert np.all(np.isin(dup["record_id"], day.cdr["record_id"]))
    # the duplicate arrives after its original
    first_arrival = {int(r): int(a) for r, a, o in zip(rows["record_id"], arr, org) if o == ORIGIN_CLEAN}
    assert all(a > first_arrival[int(r)] for r, a in zip(dup["record_id"], arr[org == ORIGIN_DUPLICATE]))
    corrupt_ids = rows["record_id"][org >= ORIGIN_CORRUPTED]
    assert not np.any(np.isin(corrupt_ids, day.cdr["record_id"]))


def test_arrival_delays(full_day):
    st = full_day.stats
    for s in SOURCES:
        n = st["n"][s]
        # tolerances: binomial counts, 4 sd; equip delays are drawn per PM file (5 rows) so wider
        k = 5.0 if s == "equip" else 1.0
        for key, p in (("n_out_of_order", 0.03), ("n_late", 0.0052)):
            sd = np.sqrt(n * p * k)
            assert abs(st[key][s] - n * p) < 4 * sd + 5, (s, key)
    rows, arr, org = full_day.raw("qos")
    clean = org == ORIGIN_CLEAN
    delay = arr[clean] - (rows["ts_ms"][clean] + full_day.config.pm_interval_ms)
    assert delay.min() >= 0 and np.mean(delay < 5_000) > 0.95
    assert (delay > 60_000).sum() == st["n_late"]["qos"]
    assert (delay >= 3_600_000).sum() == st["n_very_late"]["qos"]
    # out of order: some rows arrive before rows with an earlier event time
    assert np.any(np.diff(rows["ts_ms"][clean]) < 0)


def test_cdr_arrival_options(day):
    rows, arr, org = day.raw("cdr")
    ok = org == ORIGIN_CLEAN
    assert np.all(arr[ok] >= rows["start_ms"][ok]) and np.mean(arr[ok] - rows["start_ms"][ok] < 5_000) > 0.95
    d = generate(SynthConfig(seed=2, cdr_arrival="end", **{**SMALL, "days": 0.05}))
    rows, arr, org = d.raw("cdr")
    ok = org == ORIGIN_CLEAN
    assert np.all(arr[ok] >= rows["end_ms"][ok]) and np.mean(arr[ok] - rows["end_ms"][ok] < 5_000) > 0.9


# ---- files -------------------------------------------------------------------------------------
def test_write_parquet_round_trip(tiny, tmp_path):
    day = tiny
    pq = pytest.importorskip("pyarrow.parquet")
    man = day.write(tmp_path / "pq", fmt="parquet")
    for s in SOURCES:
        tab = pq.read_table(tmp_path / "pq" / f"{s}.parquet")
        rows, _, _ = day.raw(s)
        assert tab.num_rows == man["files"][s]["rows"] == len(rows)
        back = np.empty(tab.num_rows, dtype=DTYPES[s])
        for f in DTYPES[s].names:
            back[f] = tab.column(f).to_numpy()
        assert back.tobytes() == rows.tobytes()
    assert np.array_equal(read_labels(tmp_path / "pq" / "labels.json"), day.labels)
    doc = json.loads((tmp_path / "pq" / "labels.json").read_text())
    assert (
        doc["stats"] == {k: {s: v[s] for s in SOURCES} for k, v in day.stats.items()}
        and doc["config"]["seed"] == 21
        and doc["scenarios"] == day.scenarios
    )
    topo = np.genfromtxt(tmp_path / "pq" / "topology.csv", delimiter=",", names=True)
    assert np.array_equal(topo["element_id"].astype(np.int64), day.topology_table["element_id"])
    assert np.allclose(topo["lat"], day.topology_table["lat"], rtol=0, atol=0)  # repr round-trips exactly
    # clean ground truth instead of the raw stream
    day.write(tmp_path / "clean", fmt="parquet", raw=False)
    tab = pq.read_table(tmp_path / "clean" / "cdr.parquet")
    assert np.array_equal(tab.column("record_id").to_numpy(), day.cdr["record_id"])


def test_write_csv_round_trip_with_unparseable_cells(tiny, tmp_path):
    day = tiny
    man = day.write(tmp_path, fmt="csv")
    for s in SOURCES:
        rows, _, _ = day.raw(s)
        lines = (tmp_path / f"{s}.csv").read_text().splitlines()
        assert lines[0].split(",") == list(DTYPES[s].names)
        parsed, bad = [], 0
        for line in lines[1:]:
            cells = line.split(",")
            try:
                parsed.append(
                    tuple(float(v) if DTYPES[s][f].kind == "f" else int(v) for v, f in zip(cells, DTYPES[s].names))
                )
            except ValueError:
                bad += 1
        assert bad == man["files"][s]["unparseable"] == day.config.csv_unparseable
        assert man["files"][s]["rows"] == len(lines) - 1 == len(rows) + bad
        back = np.array(parsed, dtype=DTYPES[s])
        assert back.tobytes() == rows.tobytes()  # shortest repr round-trips floats exactly
    bad_cdr = [
        ln
        for ln in (tmp_path / "cdr.csv").read_text().splitlines()[1:]
        if not all(c.lstrip("-").isdigit() for c in ln.split(","))
    ]
    assert len(bad_cdr) == 3
    assert not any(
        int(ln.split(",")[0]) in set(day.cdr["record_id"].tolist()) for ln in bad_cdr if ln.split(",")[0].isdigit()
    )


def test_write_and_read_errors(day, tmp_path):
    with pytest.raises(ValueError, match="fmt must be"):
        day.write(tmp_path, fmt="xlsx")
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"nope": 1}))
    with pytest.raises(ValueError, match="labels"):
        read_labels(p)
    with pytest.raises(ValueError, match="batch_ms"):
        next(day.raw_batches(0))
    with pytest.raises(ValueError, match="batch_ms"):
        next(day.raw_batches(1.5))


# ---- configuration errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, field",
    [
        ({"n_elements": 0}, "n_elements"),
        ({"n_regions": 2.5}, "n_regions"),
        ({"n_regions": 0}, "n_regions"),
        ({"n_failure": 1.5}, "n_failure"),
        ({"csv_unparseable": -1}, "csv_unparseable"),
        ({"days": 0}, "days"),
        ({"days": float("inf")}, "days"),
        ({"scale": -1}, "scale"),
        ({"start_ms": 5}, "start_ms"),
        ({"env_interval_ms": 400_000}, "env_interval_ms"),
        ({"p_late": 1.0}, "p_late"),
        ({"p_out_of_order": 0.6, "p_late": 0.5}, "p_out_of_order"),
        ({"cdr_arrival": "later"}, "cdr_arrival"),
        ({"n_crowd": -1}, "n_crowd"),
        ({"max_late_ms": 1000}, "max_late_ms"),
        ({"cdr_per_cell_day": -1}, "cdr_per_cell_day"),
    ],
)
def test_config_errors(kw, field):
    with pytest.raises(ValueError, match=f"SynthConfig.{field} must be"):
        SynthConfig(**kw)


def test_automatic_regions_and_scenario_counts():
    cfg = SynthConfig()
    assert cfg.regions == 10 and cfg.scenario_counts(3000) == {
        "congestion": 6,
        "failure": 6,
        "degradation": 4,
        "crowd": 2,
        "collection_gap": 2,
    }
    assert SynthConfig(n_elements=60).regions == 1 and SynthConfig(scale=30).regions == 12
    assert SynthConfig(n_crowd=5).scenario_counts(12)["crowd"] == 5  # explicit is exact
    tiny = generate(n_elements=60, days=0.05, seed=1)  # small networks just work
    assert tiny.scenario_counts == {"congestion": 1, "failure": 1, "degradation": 1, "crowd": 0, "collection_gap": 0}
    assert len(tiny.labels) == 3


def test_empty_source_and_edges(tmp_path):
    from telcoanalytics.synth.load import ar1_lognoise
    from telcoanalytics.synth.stream import arrival_edges

    d = generate(n_elements=40, n_regions=1, days=0.02, cdr_per_cell_day=0, seed=2)
    assert (
        len(d.cdr) == 0
        and d.stats["n_arrived"]["cdr"] == 0
        and d.stats["n_corrupted"]["cdr"] == {k: 0 for k in SOURCE_CORRUPTIONS["cdr"]}
    )
    rows, arr, org = d.raw("cdr")
    assert len(rows) == len(arr) == len(org) == 0 and rows.dtype == DTYPES["cdr"]
    assert all(s != "cdr" for s, _ in d.raw_batches())
    man = d.write(tmp_path, fmt="csv")
    assert man["files"]["cdr"] == {"file": "cdr.csv", "rows": 0, "unparseable": 0}
    assert (tmp_path / "cdr.csv").read_text().strip() == ",".join(DTYPES["cdr"].names)
    assert len(d.label_index("cdr")) == 0
    assert arrival_edges({}, 1000).tolist() == [0]
    assert ar1_lognoise(0, 3, 0.5, 0.1, np.random.default_rng(0)).shape == (0, 3)


def test_too_many_scenarios_for_topology():
    with pytest.raises(ValueError, match="no free element left"):
        generate(n_elements=40, n_regions=2, days=0.1, n_congestion=60)


def test_tiny_and_multi_day_spans():
    d = generate(
        n_elements=40,
        n_regions=1,
        days=0.02,
        n_congestion=1,
        n_failure=1,
        n_degradation=1,
        n_crowd=0,
        n_collection_gap=1,
        seed=3,
    )
    assert np.all(d.labels["end_ms"] <= d.end_ms) and d.end_ms - d.start_ms == 6 * 300_000
    assert all(len(d[s]) > 0 for s in SOURCES)
    assert json.dumps(generate(n_elements=np.int64(40), n_regions=1, days=0.01).labels_document())  # numpy ints
    one = generate(n_elements=40, n_regions=1, days=0.003, seed=3, n_congestion=1, n_failure=1)  # one interval
    assert one.end_ms - one.start_ms == 300_000 and np.all(one.labels["end_ms"] <= one.end_ms)
    two = generate(
        n_elements=60,
        n_regions=2,
        days=2.0,
        start_ms=START + 5 * DAY_MS,
        seed=3,  # Sat + Sun
        n_congestion=0,
        n_failure=0,
        n_degradation=0,
        n_crowd=0,
        n_collection_gap=0,
    )
    h = (two.cdr["start_ms"] - two.start_ms) // HOUR_MS
    assert h.max() == 47 and np.bincount(h, minlength=48)[[9, 33]].sum() > 0


# ---- the answer key agrees with the real validator ----------------------------------------------
def _expected_reasons(d, s, unparseable=0):
    exp = {k: v for k, v in d.stats["n_corrupted"][s].items()}
    if d.stats["n_duplicates"][s]:
        exp["duplicate_id"] = d.stats["n_duplicates"][s]
    if unparseable:
        exp["unparseable"] = unparseable
    return exp


def test_ingest_quarantines_exactly_the_injected_rows(day, tiny, tmp_path):
    import telcoanalytics.ingest.ingestor as ingest

    for s in SOURCES:
        ing = ingest.Ingestor(s, topology=day.topology)
        got, n_ok = {}, 0
        for src, rows in day.raw_batches(600_000):
            if src == s:
                r = ing.ingest(rows)
                n_ok += r.n_accepted
                for k, v in r.by_reason.items():
                    got[k] = got.get(k, 0) + v
        assert got == _expected_reasons(day, s), s
        assert n_ok == day.stats["n"][s]
    for fmt in ("csv", "parquet"):
        man = tiny.write(tmp_path / fmt, fmt=fmt)
        for s in SOURCES:
            ing = ingest.Ingestor(s, topology=tiny.topology)
            got = {}
            for r in ing.ingest_file(tmp_path / fmt / f"{s}.{fmt}"):
                for k, v in r.by_reason.items():
                    got[k] = got.get(k, 0) + v
            assert got == _expected_reasons(tiny, s, man["files"][s]["unparseable"]), (fmt, s)
