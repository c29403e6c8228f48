"""Router telemetry reader (IOS-XR YANG table exports) and the detector over it."""

import gzip

import numpy as np
import pytest

from telcoanalytics.anomaly.telemetry import (
    TELEMETRY_METRICS,
    read_router_tables,
    read_scenario,
    telemetry_detector,
)

BRIEF = "Cisco-IOS-XR-pfi-im-cmd-oper_interfaces_interface-briefs_interface-brief.csv.gz"
RATE = "Cisco-IOS-XR-infra-statsd-oper_infra-statistics_interfaces_interface_latest_data-rate.csv.gz"


def _write(path, lines):
    with gzip.open(path, "wt", newline="") as f:
        f.write("\n\n".join(lines) + "\n")


def test_reads_both_header_layouts_and_blank_lines(tmp_path):
    r = tmp_path / "leafX"
    r.mkdir()
    _write(
        r / BRIEF,
        [
            ",EncodingPath,Producer,actual-state,interface-name",
            "2020-01-01 00:00:00.100000+00:00,p,leafX,im-state-up,Hu0/0/0/1",
            "2020-01-01 00:00:10.100000+00:00,p,leafX,im-state-admin-down,Hu0/0/0/1",
        ],
    )
    _write(
        r / RATE,
        [
            ",Producer,Target,host,input-data-rate,interface-name,output-data-rate",
            "2020-01-01 00:00:00.500000+00:00,leafX,s,h,1000,Hu0/0/0/1,",
        ],
    )
    ts, el, me, va = read_router_tables(r)
    assert list(me) == ["if_up", "if_in_kbps", "if_up"]  # the empty output rate is "not reported"
    assert list(va) == [1.0, 1000.0, 0.0] and set(el) == {"leafX|Hu0/0/0/1"}
    assert ts[0] == np.datetime64("2020-01-01T00:00:00.100").astype("datetime64[ms]").astype(np.int64)
    ts2, *_ = read_scenario(tmp_path)
    np.testing.assert_array_equal(ts, ts2)
    net = telemetry_detector(el)
    assert net.topology.names["element"].tolist() == ["leafX|Hu0/0/0/1"] and net.metrics == TELEMETRY_METRICS
    rows = net.update(ts, net.element_index(el), net.metric_index(me), va)
    assert len(rows) == 0  # three points: still warming up


def test_reader_errors(tmp_path):
    r = tmp_path / "leafY"
    r.mkdir()
    _write(r / BRIEF, [",Producer,interface-name", "2020-01-01 00:00:00+00:00,leafY,Hu1"])
    with pytest.raises(ValueError, match="columns \\['actual-state'\\] missing"):
        read_router_tables(r)
    _write(r / BRIEF, [",Producer,actual-state,interface-name", "2020-01-01 00:00:00+00:00,leafY,Hu1"])
    with pytest.raises(ValueError, match="record 2: 3 fields"):
        read_router_tables(r)
    _write(r / BRIEF, ["Producer,actual-state", "x,y"])
    with pytest.raises(ValueError, match="empty name"):
        read_router_tables(r)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(read_router_tables(empty)[0]) == 0
    with pytest.raises(ValueError, match="not a folder"):
        read_scenario(tmp_path / "nope")
    with pytest.raises(ValueError, match="no router"):
        read_scenario(empty)


@pytest.mark.slow
def test_shutdown_found_on_real_telemetry(cisco_dir):
    folder = cisco_dir / "S-200202_2014_evtmix-1"
    ts, el, me, va = read_scenario(folder / ".." / "S-200202_2014_evtmix-1")
    assert set(me) <= set(TELEMETRY_METRICS) and len(ts) > 10_000
    net = telemetry_detector(el)
    rows = net.update(ts, net.element_index(el), net.metric_index(me), va)
    shut = 1580675176_000
    hit = rows[
        (rows["end_ms"] < 0)
        & (rows["start_ms"] >= shut)
        & (rows["start_ms"] <= shut + 300_000)
        & (np.char.find(net.topology.names["element"][rows["slot"] // net.n_metrics], "leaf4|HundredGigE0/0/0/13") == 0)
    ]
    assert len(hit) >= 1
