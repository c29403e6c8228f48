"""Detector settings fixed for a whole NAB corpus (``NabCorpus(overrides=...)``, ``evaluate nab --set``),
so that a detector variant is judged by the same leave-one-folder-out as the defaults."""

import numpy as np
import pytest

import telcoanalytics.evaluate.evaluate as ev
from telcoanalytics.evaluate import nab as evn

FILE = "artificialWithAnomaly/art_daily_jumpsup.csv"  # daily season: the seasonal weight changes the detections


def test_parse_overrides_types_and_errors():
    got = evn.parse_overrides(["season_snr=TRUE", "recur_tol = 0.25", "warmup=30", "season=none", "season_snr=0"])
    assert got == {"season_snr": False, "recur_tol": 0.25, "warmup": 30, "season": "none"}
    assert isinstance(got["warmup"], int) and evn.parse_overrides(None) == {}
    with pytest.raises(ValueError, match="expected NAME=VALUE.*season_snr"):
        evn.parse_overrides(["no_such_field=1"])
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        evn.parse_overrides(["season_snr"])
    with pytest.raises(ValueError, match="season_snr: 'maybe' is not a boolean"):
        evn.parse_overrides(["season_snr=maybe"])
    with pytest.raises(ValueError, match="warmup: '2.5' is not a int"):
        evn.parse_overrides(["warmup=2.5"])
    with pytest.raises(ValueError, match="recur_tol: 'x' is not a float"):
        evn.parse_overrides(["recur_tol=x"])


def test_corpus_rejects_chosen_or_unknown_settings(tmp_path):
    for bad in ({"threshold": 3.0}, {"refire_s": 60.0}, {"gate_g": 3.0}, {"gate_halflife_s": 1.0}, {"nope": 1}):
        with pytest.raises(ValueError, match="chosen by nab_lofo"):
            evn.NabCorpus(tmp_path, tmp_path, bad)
    with pytest.raises(ValueError, match="detector setting"):  # before any file is read
        ev.main(["nab", "--data", str(tmp_path), "--set", "nope=1"])


@pytest.mark.slow
def test_corpus_overrides_reach_the_detector(nab_dir):
    from telcoanalytics.anomaly import DetectorConfig

    other = {"season_snr": not DetectorConfig().season_snr}  # the other seasonal weight than the default
    plain = evn.NabCorpus(nab_dir, ev.SHARED)
    flat = evn.NabCorpus(nab_dir, ev.SHARED, other)
    _, ts, vals = flat.data[FILE]
    flat.file_rows([FILE], 3.5)
    plain.file_rows([FILE], 3.5)
    ref = evn.detections(ts, vals, 3.5, **other)
    assert flat._cache[(FILE, 3.5)].tolist() == ref.tolist()
    assert not np.array_equal(flat._cache[(FILE, 3.5)], plain._cache[(FILE, 3.5)])
    r = flat.score([FILE], 3.5, 86400.0)["profiles"]["standard"]
    assert np.isfinite(r["score"])


def test_lofo_table_names_the_fixed_settings():
    fold = {"folder": "f", "files": 1, "threshold": {"standard": (3.5, 86400.0)}, "score": {"standard": 50.0}}
    fold["parts"] = {"standard": (1.0, -1.0, 3.0)}
    res = {"folds": [fold], "mean": {"standard": 50.0}, "pooled": {"standard": 50.0}}
    assert "fixed for every file" not in evn.lofo_table(res)
    assert "fixed for every file: season_snr=True)" in evn.lofo_table(dict(res, overrides={"season_snr": True}))
