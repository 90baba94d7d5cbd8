"""Frame tables: LeRobot's feature conventions and parquet I/O (atomic, durable writes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.dataset.atomic import replace_durably, staging
from pipelines.dataset.errors import DatasetError, one_line

# Columns every LeRobot frame has.
STANDARD_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")

# Columns beyond LeRobot's standard ones that Flywheel reads, writes and validates.
# dtype/shape follow LeRobot's feature convention (shape [1] for scalars).
_SCALARS = {
    # Stage-advantage pipeline (seed 004).
    "float32": (
        "progress",
        "stage_progress_gt",
        "progress_gt",
        "absolute_advantage",
        "relative_advantage",
        "absolute_value",
        "action_propensity",  # action-selection logging (seed 000)
        "next.reward",  # RECAP (seed 003) and HIL-SERL (seed 001)
    ),
    "string": ("selector_mode", "approval_status", "data_type"),
    "bool": ("next.done", "complementary_info.is_intervention"),
}
KNOWN_FEATURES: dict[str, dict] = {
    name: {"dtype": dtype, "shape": [1], "names": None}
    for dtype, names in _SCALARS.items()
    for name in names
}

# Closed vocabularies of the string columns above.
ALLOWED_VALUES: dict[str, frozenset[str]] = {
    "data_type": frozenset({"demo", "auto", "intervention"}),
    "approval_status": frozenset({"approved", "rejected", "none"}),
    "selector_mode": frozenset({"random", "epsilon_greedy", "learned"}),
}


# --------------------------------------------------------------------------- parquet I/O


def _discrete_columns(schema: pa.Schema) -> list[str]:
    """Columns of indices, flags and strings: worth dictionary encoding and min/max stats.

    Float data (states, actions, progress) gets neither: pyarrow would try a dictionary,
    overflow it and fall back (slow, no smaller), and its statistics serve no query.
    """
    return [
        f.name
        for f in schema
        if pa.types.is_integer(f.type) or pa.types.is_boolean(f.type) or pa.types.is_string(f.type)
    ]


def write_parquet_temp(path: str | os.PathLike, table: pa.Table) -> Path:
    """Write `table` to a fsynced temporary sibling of `path`; returns it (not yet in place).

    `replace_durably(tmp, path)` puts it in place; `write_parquet` does both.
    """
    discrete = _discrete_columns(table.schema)
    with staging(path, "wb") as (f, tmp):
        pq.write_table(
            table, f, compression="snappy", use_dictionary=discrete, write_statistics=discrete
        )
    return tmp


def write_parquet(path: str | os.PathLike, table: pa.Table) -> None:
    """Write a parquet file atomically and durably (fsynced temp file, rename, folder fsync)."""
    tmp = write_parquet_temp(path, table)
    try:
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_columns(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    optional: Sequence[str] = (),
) -> pa.Table:
    """Read some (or all) columns of one parquet file; a clear DatasetError if it cannot.

    `optional` columns are read when the file has them.
    """
    try:
        pf = pq.ParquetFile(path)
        if columns is not None:
            names = pf.schema_arrow.names
            absent = [c for c in columns if c not in names]
            if absent:
                raise DatasetError(f"{path}: missing column {absent[0]!r}")
            columns = [*columns, *(c for c in optional if c in names and c not in columns)]
        return pf.read(columns=columns, use_threads=False)
    except DatasetError:
        raise
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DatasetError(f"{path}: unreadable parquet file ({one_line(e)})") from e


def parquet_column_names(path: str | os.PathLike) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except Exception as e:
        raise DatasetError(f"{path}: unreadable parquet file ({one_line(e)})") from e


def column_to_numpy(table: pa.Table, name: str) -> np.ndarray:
    """A scalar column as a 1-D numpy array (accepts LeRobot's shape-[1] list columns too).

    Nulls become NaN for floats; the caller decides whether that is an error.
    """
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        col = col.flatten()
        if len(col) != table.num_rows:
            raise DatasetError(f"column {name!r} is not a scalar per frame")
    if pa.types.is_floating(col.type):
        return col.to_numpy(zero_copy_only=False)
    if col.null_count:
        raise DatasetError(f"column {name!r} has missing values")
    return col.to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- building tables


def feature_from_arrow(name: str, typ: pa.DataType) -> dict:
    """The LeRobot feature entry for a column of an Arrow table."""
    if name in KNOWN_FEATURES:
        return dict(KNOWN_FEATURES[name])
    shape = [1]
    if pa.types.is_fixed_size_list(typ):
        shape = [typ.list_size]
        typ = typ.value_type
        if pa.types.is_fixed_size_list(typ):  # n x d per frame (candidate_actions)
            shape.append(typ.list_size)
            typ = typ.value_type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        dtype = "string"
    elif pa.types.is_boolean(typ):
        dtype = "bool"
    else:
        dtype = typ.to_pandas_dtype().__name__
    return {"dtype": dtype, "shape": shape, "names": None}


def _arrow_type(feature: dict) -> pa.DataType:
    dtype = feature["dtype"]
    base = {"string": pa.string(), "bool": pa.bool_()}.get(dtype) or pa.from_numpy_dtype(
        np.dtype(dtype)
    )
    shape = list(feature.get("shape") or [1])
    if shape == [1]:
        return base
    if len(shape) == 2:  # a matrix per frame: nested fixed-size lists
        return pa.list_(pa.list_(base, shape[1]), shape[0])
    if len(shape) != 1:
        raise DatasetError(f"feature shape {shape} is not supported in parquet columns")
    return pa.list_(base, shape[0])


def frames_table(columns: dict[str, object], features: dict[str, dict] | None = None) -> pa.Table:
    """Build an episode table from numpy arrays / lists, typed by LeRobot feature specs.

    `features` gives dtype/shape per column (KNOWN_FEATURES and the standard columns are
    known already); 2-D float arrays become fixed-size list columns as LeRobot stores them.
    String columns with a closed vocabulary (data_type, approval_status, selector_mode) are
    checked against it.
    """
    features = features or {}
    arrays, names = [], []
    for name, values in columns.items():
        feat = features.get(name) or KNOWN_FEATURES.get(name)
        if name in ALLOWED_VALUES:
            bad = set(map(str, values)) - ALLOWED_VALUES[name]
            if bad:
                raise DatasetError(
                    f"column {name!r}: value {sorted(bad)[0]!r} is not one of "
                    f"{sorted(ALLOWED_VALUES[name])}"
                )
        arr = np.asarray(values)
        if feat is None:
            if arr.ndim == 2:
                feat = {"dtype": str(arr.dtype), "shape": [arr.shape[1]]}
            elif name in ("frame_index", "episode_index", "index", "task_index"):
                feat = {"dtype": "int64", "shape": [1]}
            elif name == "timestamp":
                feat = {"dtype": "float32", "shape": [1]}
            elif arr.dtype.kind in "US":
                feat = {"dtype": "string", "shape": [1]}
            else:
                feat = {"dtype": str(arr.dtype), "shape": [1]}
        typ = _arrow_type(feat)
        if pa.types.is_fixed_size_list(typ) and pa.types.is_fixed_size_list(typ.value_type):
            inner = typ.value_type
            flat = np.ascontiguousarray(arr, dtype=inner.value_type.to_pandas_dtype()).reshape(-1)
            rows = pa.FixedSizeListArray.from_arrays(pa.array(flat), inner.list_size)
            arrays.append(pa.FixedSizeListArray.from_arrays(rows, typ.list_size))
        elif pa.types.is_fixed_size_list(typ):
            flat = np.ascontiguousarray(arr, dtype=typ.value_type.to_pandas_dtype()).reshape(-1)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), typ.list_size))
        elif pa.types.is_string(typ):
            arrays.append(pa.array([str(v) for v in values], type=typ))
        else:
            arrays.append(pa.array(arr.astype(typ.to_pandas_dtype(), copy=False), type=typ))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def features_of(table: pa.Table, videos: dict[str, dict] | None = None) -> dict[str, dict]:
    """info.json `features` for an episode table plus video features."""
    feats = {f.name: feature_from_arrow(f.name, f.type) for f in table.schema}
    for key, vfeat in (videos or {}).items():
        feats[key] = vfeat
    return feats
