"""Argument checks shared by the topology modules: integer id arrays, attribute columns, fill values."""

from __future__ import annotations

import numpy as np


def _as_i8(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return np.ascontiguousarray(arr, dtype=np.int64)
        if arr.size or arr.dtype.kind not in "fO":
            raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _default_row_label(i: int) -> str:
    return f"row {i}"


def _fill_value(dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    return ""


def _clean_attribute(name: str, a, n: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"attribute {name!r} must be one-dimensional, got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"attribute {name!r} has {len(arr)} values for {n} elements; give one value per element")
    if arr.dtype.kind == "O":
        arr = arr.astype(str)
    return np.ascontiguousarray(arr)
