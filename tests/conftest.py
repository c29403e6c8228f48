"""Shared fixtures: seeded randomness, the shared data folder, hypothesis settings."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TELCO_SHARED", REPO.parent / "shared"))
NAB_DIR = SHARED / "data" / "nab"
CISCO_DIR = SHARED / "data" / "cisco"
NO_JIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")

# The first call of a kernel compiles it, so no per-example deadline; example counts are kept
# moderate so the whole suite (run twice, once without JIT) stays within CI's budget. The test
# command draws the same examples on every machine (derandomize), so CI runs what was run before
# a change lands; HYPOTHESIS_EXPLORE=1 draws new random examples (to hunt for new failures).
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    derandomize=os.environ.get("HYPOTHESIS_EXPLORE", "0") in ("", "0"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(42)


@pytest.fixture(scope="session")
def nab_dir():
    if not (NAB_DIR / "windows.json").exists():
        pytest.skip(f"NAB data not found at {NAB_DIR} (set TELCO_SHARED to the shared/ folder)")
    return NAB_DIR


@pytest.fixture(scope="session")
def cisco_dir():
    if not (CISCO_DIR / "README.md").exists():
        pytest.skip(f"router telemetry not found at {CISCO_DIR} (set TELCO_SHARED to the shared/ folder)")
    return CISCO_DIR
