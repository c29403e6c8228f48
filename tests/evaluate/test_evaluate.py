"""Tests of the evaluation module: NAB runner and scorer glue, score transforms, synthetic network."""

import csv
import json
import re

import numpy as np
import pytest

import telcoanalytics.evaluate.evaluate as ev
from kernels import detect as K
from kernels import nab as KN

FAST_FILES = ["artificialWithAnomaly/art_daily_jumpsup.csv", "realAdExchange/exchange-3_cpc_results.csv"]


def _naive_record(s, window, start):
    out = np.zeros(len(s))
    for i in range(len(s)):
        if i > start:
            prev = s[max(0, i - window) : i]
            out[i] = s[i] / ((prev.max() if len(prev) else 0.0) + 1e-12)
    return out


@pytest.mark.parametrize("window", [1, 7, 50])
def test_sliding_record_matches_naive(rng, window):
    s = np.abs(rng.standard_normal(400)) * rng.integers(0, 3, 400)
    out = np.empty(400)
    K.sliding_record(s, window, 3, out)
    # same division of the same numbers: exact up to the deque's max (identical floats)
    np.testing.assert_allclose(out, _naive_record(s, window, 3), rtol=1e-12, atol=0)


def test_window_mean_z_matches_naive(rng):
    z = rng.standard_normal(300) * 3
    z[5] = np.nan
    out = np.empty(300)
    K.window_mean_z(z, 6, 3.0, out)
    zc = np.clip(np.nan_to_num(z, nan=0.0), -3, 3)
    ref = np.array([zc[max(0, i - 5) : i + 1].sum() / np.sqrt(min(i + 1, 6)) for i in range(300)])
    # running sum vs fresh sums over 300 steps: rounding only
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9)


def _naive_novelty(x, start):
    out = np.zeros(len(x))
    for i in range(len(x)):
        prev = x[:i][np.isfinite(x[:i])]
        if i > start and len(prev) and np.isfinite(x[i]):
            mx, mn = prev.max(), prev.min()
            e = max(x[i] - mx, mn - x[i], 0.0)
            out[i] = e / (mx - mn + 1e-9 * (abs(mx) + 1e-9))
    return out


def test_range_novelty_matches_naive(rng):
    x = np.cumsum(rng.standard_normal(300))
    x[[7, 50]] = np.nan
    x[0] = np.inf  # non-finite first row: range starts later
    out = np.empty(300)
    KN.range_novelty(x, 3, out)
    # same subtraction and division of the same numbers: exact
    np.testing.assert_allclose(out, _naive_novelty(x, 3), rtol=1e-12, atol=0)
    flat = np.array([2.0, 2.0, 2.0, 3.0, 1.0, 2.5])
    o2 = np.empty(6)
    KN.range_novelty(flat, 0, o2)
    assert o2[1] == o2[2] == 0.0 and o2[3] > 1e6  # flat history: any new value is novel
    assert o2[4] == pytest.approx(1.0) and o2[5] == 0.0


def _naive_suppress(s, window):
    out = np.zeros(len(s))
    for i in range(len(s)):
        m = out[max(0, i - window) : i].max() if i else 0.0
        out[i] = s[i] if s[i] > m else 0.0
    return out


@pytest.mark.parametrize("window", [1, 5, 40])
def test_suppress_refire_matches_naive(rng, window):
    s = np.abs(rng.standard_normal(400)) * rng.integers(0, 2, 400)
    out = np.empty(400)
    KN.suppress_refire(s, window, out)
    # selection only, no arithmetic: identical
    np.testing.assert_array_equal(out, _naive_suppress(s, window))
    assert ((out == 0) | (out == s)).all()


def test_nab_score_suppression_toggle(rng):
    n = 600
    ts = np.arange(n, dtype=np.int64) * 300_000
    x = 5 + 0.2 * rng.standard_normal(n)
    x[[400, 420]] = 40, 30  # a second, weaker spike 20 rows later
    on = ev.nab_anomaly_score(ts, x)
    off = ev.nab_anomaly_score(ts, x, ev.NabConfig(suppress_window=0))
    assert on[400] == off[400] > 0.8
    assert on[420] == 0.0 < off[420]  # suppressed: it does not beat row 400
    assert ((on == 0) | (on == off)).all()


def test_nab_score_is_causal_and_bounded(rng):
    n = 1500
    ts = np.arange(n, dtype=np.int64) * 300_000
    x = 10 + np.sin(np.arange(n) / 20) + 0.3 * rng.standard_normal(n)
    x[1200] += 15
    a = ev.nab_anomaly_score(ts, x)
    assert a.min() >= 0 and a.max() <= 1
    assert a[1200] == a.max() and a[1200] > 0.8
    assert (a[:101] == 0).all()  # warm-up
    y = x.copy()
    y[1300:] = 1e9
    np.testing.assert_array_equal(ev.nab_anomaly_score(ts, y)[:1300], a[:1300])


def test_read_nab_csv(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("timestamp,value\n2014-01-01 00:00:00,1.5\n2014-01-01 00:05:00,2\n\n")
    stamps, ts, v = ev.read_nab_csv(p)
    assert stamps == ["2014-01-01 00:00:00", "2014-01-01 00:05:00"]
    assert ts[1] - ts[0] == 300_000 and v.tolist() == [1.5, 2.0]
    q = tmp_path / "b.csv"
    q.write_text("time,val\n")
    with pytest.raises(ValueError, match="expected columns timestamp,value"):
        ev.read_nab_csv(q)


def test_nab_two_files_end_to_end(nab_dir, tmp_path):
    names = ev.run_nab(nab_dir, tmp_path, files=FAST_FILES)
    assert names == FAST_FILES
    out = tmp_path / "realAdExchange" / "telco_exchange-3_cpc_results.csv"
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestamp", "value", "anomaly_score"] and len(rows) > 1000
    res = ev.score_nab(nab_dir, tmp_path, files=FAST_FILES)
    assert set(res["profiles"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    # these two files are easy: both labelled jumps/spikes are found early
    assert res["profiles"]["standard"]["score"] > 60
    assert "NAB score" in ev.nab_table(res)
    sub = json.loads((tmp_path / "windows_subset.json").read_text())
    assert sorted(sub) == sorted(FAST_FILES)


def test_nab_errors(nab_dir, tmp_path):
    with pytest.raises(ValueError, match="are not in"):
        ev.run_nab(nab_dir, tmp_path, files=["nope/x.csv"])
    with pytest.raises(FileNotFoundError, match="NAB scorer not found"):
        ev.load_nab_scorer(tmp_path / "missing.py")


HELDOUT_FILES = [
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "artificialWithAnomaly/art_daily_nojump.csv",
    "realAdExchange/exchange-2_cpc_results.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
]


def test_nab_corpus_in_memory_matches_result_files(nab_dir, tmp_path):
    ev.run_nab(nab_dir, tmp_path, files=FAST_FILES)
    via_files = ev.score_nab(nab_dir, tmp_path, files=FAST_FILES)
    corpus = ev.NabCorpus(nab_dir, files=FAST_FILES)
    mem = corpus.score(FAST_FILES, ev.NabConfig())
    # same scores rounded to the same 6 decimals, same scorer: identical results
    for p, v in via_files["profiles"].items():
        assert mem["profiles"][p]["score"] == v["score"]
        assert mem["profiles"][p]["threshold"] == v["threshold"]
    with pytest.raises(ValueError, match="are not in"):
        ev.NabCorpus(nab_dir, files=["nope/x.csv"])


def test_nab_config_with_routes_parameters():
    cfg = ev.nab_config_with(target_fa=0.1, suppress_window=7)
    assert cfg.detector.target_fa == 0.1 and cfg.suppress_window == 7
    assert ev.NabConfig().detector.target_fa == 0.05  # the default is not modified
    with pytest.raises(ValueError, match="unknown NAB parameter"):
        ev.nab_config_with(nope=1)


def test_nab_folds_stratified_by_folder():
    names = [f"a/{i}.csv" for i in range(5)] + [f"b/{i}.csv" for i in range(2)]
    folds = ev.nab_folds(names, 2)
    assert sorted(folds[0] + folds[1]) == sorted(names) and not set(folds[0]) & set(folds[1])
    for f in folds:
        assert {n.split("/")[0] for n in f} == {"a", "b"}
    assert len(ev._grid_configs({"x": (1, 2), "y": (3, 4, 5)})) == 6


def test_nab_heldout_small(nab_dir):
    """The out-of-sample path on four files (two per fold) and a two-value grid."""
    corpus = ev.NabCorpus(nab_dir, files=HELDOUT_FILES)
    res = ev.nab_heldout(corpus, grid={"suppress_window": (50, 100)})
    assert res["n_configs"] == 2 and len(res["folds"]) == 2
    for f in res["folds"]:
        assert len(f["test_files"]) == 2 and f["params"]["suppress_window"] in (50, 100)
        # the held-out fold scored at thresholds chosen elsewhere cannot beat the swept threshold
        assert f["test_score"]["standard"] <= f["test_score_swept"]["standard"] + 1e-9
    assert set(res["heldout"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert "held-out (pooled" in ev.heldout_table(res)
    sens = ev.nab_sensitivity(corpus, grid={"suppress_window": (50, 100)})
    assert sens["params"]["suppress_window"][100] == sens["default"]  # 100 is the default
    assert "sensitivity" in ev.sensitivity_table(sens)
    rep = ev.nab_heldout_repeats(corpus, seeds=(None, 3), grid={"suppress_window": (50, 100)})
    assert rep["runs"][0]["heldout"] == res["heldout"]  # seed None: the dealt split
    assert rep["standard"][1] <= rep["standard"][0] <= rep["standard"][2]
    assert sorted(sum(ev.nab_folds(HELDOUT_FILES, 2, seed=3), [])) == sorted(HELDOUT_FILES)


@pytest.mark.slow
def test_nab_full_corpus(nab_dir, tmp_path, capsys):
    assert ev.main(["nab", "--data", str(nab_dir), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    res = ev.score_nab(nab_dir, tmp_path)
    std = res["profiles"]["standard"]["score"]
    print(ev.nab_table(res))
    # measured 71.82 / 62.42 / 76.55 (standard / low FP / low FN); the tolerance covers only
    # platform rounding of the written 6-decimal scores, not detector changes
    assert std == pytest.approx(71.82, abs=0.05), text
    assert res["profiles"]["reward_low_FP_rate"]["score"] == pytest.approx(62.42, abs=0.05)
    assert res["profiles"]["reward_low_FN_rate"]["score"] == pytest.approx(76.55, abs=0.05)


@pytest.mark.slow
def test_nab_heldout_and_sensitivity(nab_dir, tmp_path, capsys):
    """Out-of-sample check of the in-sample 71.82: 2 folds, 81 configurations chosen on one half
    and scored on the other at the training half's thresholds."""
    assert (
        ev.main(["nab", "--data", str(nab_dir), "--out", str(tmp_path), "--heldout", "--splits", "1", "--sensitivity"])
        == 0
    )
    text = capsys.readouterr().out
    held = float(re.search(r"held-out \(pooled.*?standard ([0-9.]+)", text).group(1))
    folds = re.findall(r"standard: train ([0-9.]+) / held-out ([0-9.]+)", text)
    # measured: pooled held-out 63.82 standard / 56.15 low-FP / 68.55 low-FN (in-sample 71.82);
    # over 5 splits 63.8..70.0 (mean 66.2). The bound guards the out-of-sample figure against
    # regressions; it is not the target 70
    assert held > 60.0, text
    assert len(folds) == 2 and all(float(tr) > float(te) for tr, te in folds)  # the honest gap shows
    sens = {
        m.group(1): [float(v) for v in re.findall(r": +([0-9.]+)", m.group(2))]
        for m in re.finditer(r"^  (\w+) +(.*)$", text, flags=re.M)
    }
    default = float(re.search(r"threshold swept\): default ([0-9.]+)", text).group(1))
    assert len(sens) == len(ev.NAB_SENSITIVITY_GRID)
    # the defaults were tuned on this corpus: no single one-step change improves it
    for name, scores in sens.items():
        assert max(scores) <= default + 1e-9, (name, scores)
    with pytest.raises(SystemExit):
        ev.main(["nab", "--data", str(nab_dir), "--out", str(tmp_path), "--heldout", "--splits", "0"])


@pytest.fixture(scope="module")
def synth_day():
    from telcoanalytics.synth.network import SynthConfig, generate

    return generate(
        SynthConfig(
            n_elements=1000,
            days=2.0,
            seed=11,
            n_congestion=12,
            n_failure=12,
            n_degradation=6,
            n_crowd=4,
            n_collection_gap=4,
        )
    )


@pytest.mark.slow
def test_synthetic_network_targets(synth_day):
    res = ev.evaluate_synth(day=synth_day)
    print(ev.synth_table(res))
    per = res["per_scenario"]
    assert per["failure"]["recall"] >= 0.95 and per["congestion"]["recall"] >= 0.95
    assert per["failure"]["median_delay_min"] <= 5.0
    assert res["congestion_early_share"] >= 0.9
    assert res["crowd_as_fault_share"] <= 0.5
    assert res["false_alarms_per_1000_element_hours"] < 10


@pytest.mark.slow
def test_evaluate_main_synth(capsys):
    assert ev.main(["synth", "--elements", "300", "--days", "1.5", "--seed", "3"]) == 0
    assert "false alarms" in capsys.readouterr().out


def test_blocked_onset():
    from telcoanalytics.records import empty

    c = empty("cdr", 20)
    c["element_id"] = 5
    c["start_ms"] = np.repeat([0, 300_000], 10)
    c["cause"] = 16
    c["cause"][15] = 34  # 1 of 10 blocked in the second interval
    assert ev.blocked_onset(c, 5, 0, 600_000, 300_000) == 300_000
    assert ev.blocked_onset(c, 6, 0, 600_000, 300_000) == -1
    assert ev.blocked_onset(c, 5, 0, 300_000, 300_000) == -1


def test_evaluate_synth_small_network():
    """A tiny network through the whole replay and scoring path (fast, also without JIT)."""
    from telcoanalytics.synth.network import SynthConfig, generate

    day = generate(
        SynthConfig(
            n_elements=60,
            n_regions=2,
            days=0.3,
            seed=5,
            n_congestion=1,
            n_failure=2,
            n_degradation=1,
            n_crowd=1,
            n_collection_gap=1,
        )
    )
    res = ev.evaluate_synth(day=day, warm_days=0.0)
    per = res["per_scenario"]
    kinds, counts = np.unique(day.labels["scenario"], return_counts=True)
    assert {k: v["total"] for k, v in per.items()} == dict(zip(kinds.tolist(), counts.tolist()))
    assert sum(v["detected"] for v in per.values()) + len(res["missed"]) == len(day.labels)
    assert per["collection_gap"]["recall"] == 1.0 and per["failure"]["detected"] >= 1
    assert res["element_hours"] == pytest.approx(60 * (day.end_ms - day.start_ms) / 3_600_000)
    text = ev.synth_table(res)
    assert "per 1,000 element-hours" in text and "congestion flagged" in text
