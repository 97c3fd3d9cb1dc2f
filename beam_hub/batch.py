"""The batch core: apply a module to many elements with one signature call per batch.

Shared by ApplyHubModule, HubModelHandler (RunInference) and MLTransform; it knows the module,
not Beam. Two shapes of batch:

- rows (``apply_batch``): a list of per-element values or dicts; each input is stacked into one
  array, the signature is called once, each output converted to numpy once, and rows split off
  as read-only views (no per-row TensorFlow work);
- columns (``apply_table``): a whole pyarrow RecordBatch/Table or dict of numpy columns; string
  inputs are sorted by length into sub-batches (less padding for text models), outputs put back
  in the original row order and added as new columns.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from beam_hub import columnar, settings
from beam_hub.errors import InputError
from beam_hub.module import HubModule
from beam_hub.signatures import SignatureSpec, TensorInfo


@dataclass(frozen=True)
class ApplySpec:
    """How to apply a module to elements: which signature, which outputs, what the elements are."""

    signature: str | None = None
    output_key: str | None = None
    as_dict: bool = False
    from_examples: bool = False  # elements are serialized tf.train.Example records


def stack(values: Sequence[Any], info: TensorInfo, signature: str) -> np.ndarray:
    """One batch array from per-element values (arrays, numbers, str or bytes)."""
    if info.dtype == tf.string:
        if info.shape.rank != 1:
            return np.array(list(values), dtype=object)
        arr = np.empty(len(values), dtype=object)  # one str/bytes per element, any lengths
        arr[:] = list(values)
        return arr
    try:
        arr = np.array(values)  # ~3x faster than np.stack for many small rows
        if arr.dtype != object:
            return arr
    except ValueError:  # ragged: say which shapes met in the batch
        pass
    shapes = collections.Counter(np.shape(v) for v in values)
    if len(shapes) <= 1:
        return np.stack(values)
    listing = ", ".join(f"{shape} x {n}" for shape, n in shapes.most_common(5))
    raise InputError(
        f"Input {info.name!r} of signature {signature!r}: elements in one batch have different "
        f"shapes ({listing}); the signature expects {info}. Pad or reshape elements to one "
        "shape before applying the module."
    )


class LoadedModule:
    """A loaded module plus the batch logic; what Beam shares per process (or proxies per machine)."""

    def __init__(self, module: HubModule) -> None:
        self.module = module

    def spec(self, apply: ApplySpec) -> SignatureSpec:
        return self.module.signature(apply.signature)

    # -- rows --------------------------------------------------------------------------------------

    def apply_batch(self, elements: Sequence[Any], apply: ApplySpec) -> list[Any]:
        """Outputs for ``elements``, in order: arrays, or dicts of arrays with ``as_dict``."""
        spec = self.spec(apply)
        if apply.from_examples:
            from beam_hub.examples import parse_examples

            inputs: Any = parse_examples(elements, spec)
        elif isinstance(elements[0], Mapping):
            missing = [k for k in spec.inputs if k not in elements[0]]
            if missing:  # let the module's binding raise its full message
                inputs = dict(elements[0])
            else:
                inputs = {
                    k: stack([e[k] for e in elements], info, spec.name) for k, info in spec.inputs.items()
                }
        elif len(spec.inputs) == 1:
            (info,) = spec.inputs.values()
            inputs = stack(elements, info, spec.name)
        else:
            inputs = elements[0]  # the module raises: several inputs need a dict
        outputs = self.apply_columns(inputs, apply, len(elements))
        if isinstance(outputs, Mapping):
            keys = list(outputs)
            return [dict(zip(keys, row)) for row in zip(*(list(outputs[k]) for k in keys))]
        return list(outputs)

    def apply_columns(self, inputs: Any, apply: ApplySpec, n: int) -> Any:
        """One signature call on whole columns; numpy outputs with one row per input row.

        Outputs are zero-copy, read-only views of TensorFlow's results (``.numpy()`` would copy
        each once more); Beam elements are immutable anyway.
        """
        spec = self.spec(apply)
        outputs = self.module(
            inputs, signature=spec.name, as_dict=apply.as_dict, output_key=apply.output_key, numpy=False
        )
        if isinstance(outputs, Mapping):
            return {key: _check_batch(key, np.asarray(value), n, spec) for key, value in outputs.items()}
        return _check_batch("default", np.asarray(outputs), n, spec)

    # -- columns -----------------------------------------------------------------------------------

    def apply_table(
        self,
        batch: Any,
        columns: str | Mapping[str, str],
        apply: ApplySpec,
        *,
        output_column: str = "output",
        max_rows: int = 1024,
    ) -> Any:
        """``batch`` (Arrow or dict of numpy columns) with the outputs added as new columns.

        ``columns`` names the input column of a one-input signature, or maps input names to
        columns. The output is column ``output_column`` (``{output_column}_{key}`` per output with
        ``as_dict``). Calls the signature on sub-batches of at most ``max_rows`` rows, taking
        string inputs in order of length, and puts every output row back in its input row's place.
        Up to BEAM_HUB_CALL_THREADS sub-batches (default: the CPU cores) are called at once on
        threads: TensorFlow releases the GIL while a call runs; each row's output is the same.
        """
        n = columnar.num_rows(batch)
        spec = self.spec(apply)
        mapping = _input_columns(columns, spec)
        inputs = {name: columnar.column(batch, col) for name, col in mapping.items()}
        order = _length_order(batch, mapping, spec)

        def call(lo: int) -> Any:
            rows = order[lo : lo + max_rows]
            chunk = {k: v[rows] for k, v in inputs.items()}
            return self.apply_columns(
                chunk if len(chunk) > 1 else next(iter(chunk.values())), apply, len(rows)
            )

        starts = range(0, n, max_rows)
        threads = min(settings.call_threads(), len(starts))
        if threads > 1:  # TensorFlow releases the GIL in a call: sub-batches run side by side
            with ThreadPoolExecutor(threads, thread_name_prefix="beam-hub-call") as pool:
                pieces = list(pool.map(call, starts))
        else:
            pieces = [call(lo) for lo in starts]
        if not pieces:
            return batch
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        if isinstance(pieces[0], Mapping):
            outputs = {
                f"{output_column}_{k}": np.concatenate([p[k] for p in pieces])[inverse] for k in pieces[0]
            }
        else:
            outputs = {output_column: np.concatenate(pieces)[inverse]}
        return columnar.with_columns(batch, outputs)


def _input_columns(columns: str | Mapping[str, str], spec: SignatureSpec) -> Mapping[str, str]:
    if not isinstance(columns, str):
        unknown = sorted(set(columns) - set(spec.inputs))
        if unknown:
            raise InputError(f"columns= names inputs {unknown} that signature {spec} does not have.")
        return columns
    if len(spec.inputs) != 1:
        raise InputError(f"Signature {spec} takes several inputs: pass columns={{input: column}}.")
    return {next(iter(spec.inputs)): columns}


def _length_order(batch: Any, mapping: Mapping[str, str], spec: SignatureSpec) -> np.ndarray:
    """Rows sorted by text length when the one input is a string column (less padding), else as is."""
    n = columnar.num_rows(batch)
    if len(mapping) != 1 or spec.inputs[next(iter(mapping))].dtype != tf.string:
        return np.arange(n)
    col = next(iter(mapping.values()))
    if columnar.is_arrow(batch):
        import pyarrow.compute as pc

        values = batch.column(col)
        lengths = pc.binary_length(
            values.cast("binary") if not str(values.type).endswith("binary") else values
        )
        return np.argsort(lengths.to_numpy(zero_copy_only=False), kind="stable")
    return np.argsort(np.fromiter(map(len, batch[col]), dtype=np.int64, count=n), kind="stable")


def _check_batch(key: str, value: np.ndarray, n: int, spec: SignatureSpec) -> np.ndarray:
    if value.ndim == 0 or len(value) != n:
        raise InputError(
            f"Output {key!r} of signature {spec.name!r} has shape {np.shape(value)}, not one row per "
            f"element ({n}); it cannot be split into per-element results. Use a batched signature."
        )
    return value
