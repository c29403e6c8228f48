"""tune_malloc: freed batch-sized arrays are reused from the heap instead of refaulted from the system."""

import os
import platform
import subprocess
import sys

import pytest

from telcoanalytics._malloc import tune_malloc

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# ten 1 MiB arrays made and dropped 20 times, after one 1 MiB block has raised glibc's mmap
# threshold: with glibc's defaults the heap top is trimmed after each round and refaulted
_ROUNDS = """
import resource, sys
import numpy as np
from telcoanalytics.pipeline.memory import tune_malloc
applied = tune_malloc() if sys.argv[1] == "1" else None
a = np.ones(1 << 17); del a
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    arrs = [np.ones(1 << 17) for _ in range(10)]
    del arrs
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(tuned: bool, env=None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | (env or {})
    out = subprocess.run(
        [sys.executable, "-c", _ROUNDS, "1" if tuned else "0"], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_tuned_heap_is_reused_without_page_faults():
    applied, tuned = _faults(True)
    _, default = _faults(False)
    assert applied == "True"
    pages = 20 * 10 * (1 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert default > pages // 2  # glibc's defaults refault most rounds
    assert tuned < pages // 10  # tuned: only the first round's pages


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_user_malloc_environment_wins():
    applied, faults = _faults(True, env={"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert applied == "False"
    assert faults > 20 * 10 * (1 << 20) // os.sysconf("SC_PAGE_SIZE") // 2


def test_environment_variable_skips(monkeypatch):
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    assert tune_malloc() is False


class _NotGlibc:
    def mallopt(self, param, value):  # pragma: no cover - must not be called
        raise AssertionError("mallopt called on a non-glibc library")


class _FakeGlibc:
    def __init__(self, ok):
        self.calls, self.ok = [], ok
        self.mallopt = self._mallopt

    def gnu_get_libc_version(self):  # pragma: no cover - only looked up
        return b"2.99"

    def _mallopt(self, param, value):
        self.calls.append((param, value))
        return 1 if self.ok else 0


def test_non_glibc_is_left_alone(monkeypatch):
    for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    assert tune_malloc(libc=_NotGlibc()) is False


def test_refused_setting_reports_false(monkeypatch):
    for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    lib = _FakeGlibc(ok=False)
    assert tune_malloc(libc=lib) is False
    assert len(lib.calls) == 1  # stops at the first refusal
    lib = _FakeGlibc(ok=True)
    assert tune_malloc(libc=lib) is True
    # M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD (glibc's malloc.h) with values fitting a C int
    assert {p for p, _ in lib.calls} == {-1, -2, -3}
    assert all(0 < v <= 2**31 - 1 for _, v in lib.calls)


def test_public_name_and_command_line_applies_it_before_the_pipeline_imports():
    import telcoanalytics
    from telcoanalytics.pipeline import memory

    assert memory.tune_malloc is tune_malloc and telcoanalytics.tune_malloc is tune_malloc
    # the command line module itself does not load the pipeline (main() tunes malloc first)
    code = "import sys, telcoanalytics.cli; print('telcoanalytics.pipeline.components' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == (
        "False"
    )


def test_this_process_c_library(monkeypatch):
    for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    assert tune_malloc() is GLIBC
