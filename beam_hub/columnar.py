"""Columnar batches: pyarrow RecordBatches/Tables or dicts of numpy columns, in and out whole.

With whole batches (e.g. from ``ReadFromParquetBatched``) there is no per-row Python work: the
input columns go to the module as arrays and the outputs come back as new columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def is_arrow(batch: Any) -> bool:
    return type(batch).__module__.startswith("pyarrow")


def num_rows(batch: Any) -> int:
    if is_arrow(batch):
        return batch.num_rows
    return len(next(iter(batch.values()))) if batch else 0


def column(batch: Any, name: str) -> np.ndarray:
    """One column as a numpy array (strings as an object array; list columns stacked to 2-D)."""
    if not is_arrow(batch):
        if name not in batch:
            raise KeyError(f"column {name!r} is not in the batch (columns: {sorted(batch)})")
        return np.asarray(batch[name])
    import pyarrow as pa

    if name not in batch.schema.names:
        raise KeyError(f"column {name!r} is not in the batch (columns: {batch.schema.names})")
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if (
        pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
    ):
        lengths = (
            set(col.value_lengths().to_pylist())
            if not pa.types.is_fixed_size_list(col.type)
            else {col.type.list_size}
        )
        if len(lengths) > 1:
            raise ValueError(f"column {name!r} holds lists of different lengths {sorted(lengths)[:5]}")
        width = lengths.pop() if lengths else 0
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width)
    return col.to_numpy(zero_copy_only=False)


def with_columns(batch: Any, new: Mapping[str, np.ndarray]) -> Any:
    """``batch`` plus the ``new`` columns (2-D arrays become list<item> columns)."""
    if not is_arrow(batch):
        return {**batch, **new}
    import pyarrow as pa

    out = batch
    for name, values in new.items():
        values = np.asarray(values)
        if values.ndim == 1:
            array = pa.array(values)
        else:
            flat = pa.array(values.reshape(-1))
            width = int(np.prod(values.shape[1:]))
            offsets = pa.array(
                np.arange(0, (len(values) + 1) * width, width, dtype=np.int32), type=pa.int32()
            )
            array = pa.ListArray.from_arrays(offsets, flat)
        if name in out.schema.names:
            raise ValueError(
                f"output column {name!r} already exists in the batch; pick another output_column"
            )
        out = out.append_column(name, array)
    return out


def take(batch: Any, start: int, length: int) -> Any:
    """Rows ``start`` to ``start + length`` of the batch, as a batch of the same kind."""
    if is_arrow(batch):
        return batch.slice(start, length)
    return {k: np.asarray(v)[start : start + length] for k, v in batch.items()}


def row(batch: Any, i: int) -> dict[str, Any]:
    """Row ``i`` as a dict of Python values (for a dead letter)."""
    if is_arrow(batch):
        return batch.slice(i, 1).to_pylist()[0]
    return {k: np.asarray(v)[i].tolist() for k, v in batch.items()}


def concat(batches: list[Any]) -> Any:
    """One batch of every row of ``batches`` (all of one kind and schema), in order."""
    if is_arrow(batches[0]):
        import pyarrow as pa

        tables = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b for b in batches]
        return pa.concat_tables(tables)
    return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}
