"""ApplyHubModule: ``pcoll | ApplyHubModule(handle, signature="default")``."""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.utils.windowed_value import WindowedValue

from beam_hub import columnar
from beam_hub.beam.handler import HubModelHandler
from beam_hub.beam.metrics import InferenceMetrics
from beam_hub.beam.options import HubOptions
from beam_hub.beam.versions import ModuleSource
from beam_hub.errors import InputError
from beam_hub.settings import AuditMode

FAILED = "failed"
_REPR_LIMIT = 200


class FailedElement(NamedTuple):
    """What the dead-letter output carries: the element as it came in, and why it failed."""

    element: Any
    error: str
    error_type: str


class ApplyHubModule(beam.PTransform):
    """Apply a hub module to every element, loading it once per worker and calling it in batches.

    Elements: one value (numpy array, number, str or bytes) for a one-input signature, or a dict
    of input name -> value; with ``keyed=True``, ``(key, value)`` pairs in and ``(key, output)``
    out; with ``from_examples=True``, serialized ``tf.train.Example`` records whose features are
    named like the signature's inputs. Output per element: the default output (a numpy array) or,
    with ``as_dict=True``, a dict of arrays; ``output_key`` picks one output. Output arrays are
    read-only views into the batch's result (Beam elements must not be mutated in place).

    ``cache_dir`` may be a shared ``gs://`` cache (then ``local_cache_dir`` is each worker's local
    tier); unset, they come from the pipeline options ``--hub_cache_dir`` and
    ``--hub_local_cache_dir``, else from the workers' environment.

    Batching uses Beam's ``BatchElements`` (adaptive between ``min_batch_size`` and
    ``max_batch_size``; more options through ``batch_kwargs``). ``large_model=True`` keeps one
    copy of the module per machine instead of per process. ``.with_exception_handling()`` turns
    failing elements into a ``failed`` output of :class:`FailedElement` instead of failing the job.
    Metrics (namespace ``beam_hub``): ``module_loads``, ``inference_elements``,
    ``inference_batches``, ``batch_size``, ``inference_msecs``, ``load_msecs``.

    ``sort_key`` (e.g. ``len`` for texts) reorders the elements of each bundle, ``sort_window`` at
    a time, by ``sort_key(value)`` before batching, so that each batch holds similar elements: a
    text model then pads every batch to a length close to its texts' own. Outputs come in that
    order (a PCollection has none; keep keys with ``keyed=True``).

    ``audit`` ("warn", "refuse" or "off"; default ``BEAM_HUB_AUDIT``) and ``allow_ops`` apply the
    audit policy on each worker before the module loads (see :func:`beam_hub.load`).

    ``follow=True`` follows a moving name (``DEST@latest``, ``DEST@NAME``, a Hugging Face branch,
    a `beam-hub serve` ``MODEL@latest``) while the job runs, bounded or not: each worker process
    starts on what the name points to, asks again every ``poll_seconds`` (one listing or request;
    no download unless it moved), and uses a new version from the next batch on once it resolved,
    passed the audit policy, loaded, kept its signature and, called on the last batch, returned
    outputs of the same structure; a version that fails is rejected once and the current one
    stays (see :mod:`beam_hub.follow`). Without it a moving name is pinned when the pipeline is
    built. ``with_version=True`` makes each output ``(output, version)`` (keyed: ``(key, (output,
    version))``; columnar: a column ``{output_column}_version``), the version being the concrete
    handle that computed it.

    Columnar mode (``columns=``): elements are whole batches (pyarrow RecordBatches or Tables, as
    ``ReadFromParquetBatched`` gives, or dicts of numpy columns). ``columns`` names the column for
    a one-input signature, or maps input names to columns; each batch comes out with the output
    added as column ``output_column`` (``{output_column}_{key}`` per output with ``as_dict``).
    No per-row Python work; string inputs are sorted by length into sub-batches of at most
    ``max_batch_size`` rows, which saves padding in text models.
    """

    def __init__(
        self,
        handle: str | os.PathLike,
        signature: str | None = None,
        *,
        output_key: str | None = None,
        as_dict: bool = False,
        keyed: bool = False,
        from_examples: bool = False,
        tags: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_cache_dir: str | os.PathLike | None = None,
        min_batch_size: int = 1,
        max_batch_size: int = 1024,
        large_model: bool = False,
        batch_kwargs: Mapping[str, Any] | None = None,
        columns: str | Mapping[str, str] | None = None,
        output_column: str = "output",
        sort_key: Callable[[Any], Any] | None = None,
        sort_window: int = 4096,
        audit: AuditMode | None = None,
        allow_ops: Sequence[str] = (),
        follow: bool = False,
        poll_seconds: float = 60.0,
        with_version: bool = False,
    ) -> None:
        super().__init__()
        if follow and not poll_seconds > 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        if min_batch_size > max_batch_size:
            raise ValueError(
                f"min_batch_size ({min_batch_size}) must not exceed max_batch_size ({max_batch_size})"
            )
        if columns is not None and (keyed or from_examples):
            raise ValueError(
                "columns= (columnar batches) cannot be combined with keyed=True or from_examples=True"
            )
        self.handler = HubModelHandler(
            handle,
            signature,
            output_key=output_key,
            as_dict=as_dict,
            from_examples=from_examples,
            tags=tags,
            cache_dir=cache_dir,
            local_cache_dir=local_cache_dir,
            large_model=large_model,
            audit=audit,
            allow_ops=allow_ops,
            pin=not follow,
        )
        self._poll_seconds = poll_seconds if follow else None
        self._with_version = with_version
        self._keyed = keyed
        self._batch_kwargs = {
            "min_batch_size": min_batch_size,
            "max_batch_size": max_batch_size,
            **(batch_kwargs or {}),
        }
        self._dead_letter = False
        self._columns = columns
        self._output_column = output_column
        if sort_window < 1:
            raise ValueError(f"sort_window must be at least 1, got {sort_window}")
        self._sort = None if sort_key is None else _SortWithinBundle(sort_key, sort_window, keyed)

    def with_exception_handling(self) -> ApplyHubModule:
        """Return a copy whose result unpacks as ``outputs, failed`` (a failed element never stops the job)."""
        clone = copy.copy(self)
        clone._dead_letter = True
        return clone

    def default_label(self) -> str:
        return f"ApplyHubModule({self.handler.handle})"

    def expand(self, pcoll: beam.PCollection) -> Any:
        hub = pcoll.pipeline.options.view_as(HubOptions)
        self.handler.with_cache_dirs(hub.hub_cache_dir, hub.hub_local_cache_dir)
        if self._columns is not None:
            columnar_dofn = _ColumnarDoFn(
                self.handler,
                self._columns,
                self._output_column,
                self._batch_kwargs["max_batch_size"],
                dead_letter=self._dead_letter,
                poll_seconds=self._poll_seconds,
                with_version=self._with_version,
            )
            if not self._dead_letter:
                return pcoll | "ApplyColumns" >> beam.ParDo(columnar_dofn)
            return pcoll | "ApplyColumns" >> beam.ParDo(columnar_dofn).with_outputs(FAILED, main="outputs")
        if _drops_finish_bundle_output(pcoll.pipeline):
            # BatchElements emits its last batch in finish_bundle, which this runner drops:
            # batch after a shuffle instead (every batch is emitted from process()).
            batches = (
                pcoll
                | "SpreadForBatches" >> beam.Map(lambda e: (random.randrange(_SHUFFLE_KEYS), e))
                | "GroupForBatches" >> beam.GroupByKey()
                | "Batch" >> beam.FlatMap(_chunks, self._batch_kwargs["max_batch_size"])
            )
        else:
            if self._sort is not None:  # it emits in finish_bundle too: not on the runner above
                pcoll = pcoll | "SortWithinBundle" >> beam.ParDo(self._sort)
            batches = pcoll | "Batch" >> beam.BatchElements(**self._batch_kwargs)
        dofn = _ApplyDoFn(
            self.handler,
            keyed=self._keyed,
            dead_letter=self._dead_letter,
            poll_seconds=self._poll_seconds,
            with_version=self._with_version,
        )
        if not self._dead_letter:
            return batches | "Apply" >> beam.ParDo(dofn)
        return batches | "Apply" >> beam.ParDo(dofn).with_outputs(FAILED, main="outputs")


class _SortWithinBundle(beam.DoFn):
    """Emit the elements of a bundle ``window`` at a time, sorted by ``key`` of their value (keys
    that fail to compute sort first: the element fails, or not, in the module itself)."""

    def __init__(self, key: Callable[[Any], Any], window: int, keyed: bool) -> None:
        self._key, self._window, self._keyed = key, window, keyed

    def start_bundle(self) -> None:
        self._buffer: list[tuple[Any, Any, Any, Any]] = []

    def process(self, element: Any, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        value = element[1] if self._keyed and isinstance(element, tuple) and len(element) == 2 else element
        try:
            key = (1, self._key(value))
        except Exception:  # noqa: BLE001 - a bad element is the module's to report, not the sort's
            key = (0, 0)
        self._buffer.append((key, element, window, timestamp))
        if len(self._buffer) >= self._window:
            return self._flush()
        return None

    def finish_bundle(self):
        return self._flush()

    def _flush(self) -> list[WindowedValue]:
        try:
            self._buffer.sort(key=lambda entry: entry[0])
        except TypeError:  # keys that do not compare (a key function mixing types): keep arrival order
            pass
        out = [WindowedValue(element, timestamp, (window,)) for _, element, window, timestamp in self._buffer]
        self._buffer = []
        return out


class _ApplyDoFn(beam.DoFn):
    """One signature call per batch; outputs returned as one list (no per-row generator)."""

    def __init__(
        self,
        handler: HubModelHandler,
        *,
        keyed: bool,
        dead_letter: bool,
        poll_seconds: float | None = None,
        with_version: bool = False,
    ) -> None:
        self._handler = handler
        self._spec = handler.apply_spec
        self._keyed = keyed
        self._dead_letter = dead_letter
        self._source = ModuleSource(handler, poll_seconds)
        self._with_version = with_version

    def setup(self) -> None:
        self._metrics = InferenceMetrics(self._handler.handle)
        self._source.open(self._metrics, f"elements {self._spec}", _apply_elements(self._spec))

    def process(self, batch: list[Any]) -> list[Any]:
        self._metrics.flush_load()
        keys, values = self._split_keys(batch) if self._keyed else (None, batch)
        start = time.perf_counter()
        try:
            version, outputs = self._source.run(values)
        except Exception as e:  # noqa: BLE001 - isolated per element below
            return self._one_by_one(batch, keys, values, e)
        self._metrics.inferred(len(outputs), msecs=(time.perf_counter() - start) * 1000)
        self._source.report(self._metrics, version, len(outputs))
        if self._with_version:
            outputs = [(output, version) for output in outputs]
        return outputs if keys is None else list(zip(keys, outputs))

    def _split_keys(self, batch: list[Any]) -> tuple[list[Any], list[Any]]:
        try:
            keys, values = zip(*batch)
        except (TypeError, ValueError):
            bad = next((e for e in batch if not (isinstance(e, tuple) and len(e) == 2)), batch[0])
            raise InputError(
                f"ApplyHubModule(keyed=True) takes (key, value) pairs; got {_short(bad)}."
            ) from None
        return list(keys), list(values)

    def _one_by_one(
        self, batch: list[Any], keys: list[Any] | None, values: list[Any], batch_error: Exception
    ) -> list[Any]:
        """Apply each element alone: good ones get outputs; a bad one is dead-lettered or named."""
        results: list[Any] = []
        culprit = None
        for i, (element, value) in enumerate(zip(batch, values)):
            try:
                version, (output,) = self._source.run([value])
            except Exception as e:  # noqa: BLE001 - reported per element
                if not self._dead_letter:
                    culprit = (element, e)
                    break
                results.append(
                    beam.pvalue.TaggedOutput(FAILED, FailedElement(element, str(e), type(e).__name__))
                )
                continue
            self._source.report(self._metrics, version, 1)
            output = (output, version) if self._with_version else output
            results.append(output if keys is None else (keys[i], output))
        if culprit is None and not self._dead_letter:
            raise batch_error  # every element works alone: the batch itself is the problem
        if culprit is not None:
            element, error = culprit
            raise InputError(
                f"ApplyHubModule({self._handler.handle!r}) failed on element {_short(element)}: {error} "
                f"(signature {self._source.spec()}). Use .with_exception_handling() to route bad elements to a "
                "'failed' output instead."
            ) from error
        self._metrics.inferred(sum(1 for r in results if not isinstance(r, beam.pvalue.TaggedOutput)))
        return results


class _ColumnarDoFn(_ApplyDoFn):
    """Whole columnar batches in, the same batches with output columns out (see ``LoadedModule.apply_table``).

    With dead letters, a batch the module fails on is applied row by row: good rows come out as
    one batch, each failing row as a FailedElement holding the row as a dict.
    """

    def __init__(
        self,
        handler: HubModelHandler,
        columns: str | Mapping[str, str],
        output_column: str,
        max_rows: int,
        *,
        dead_letter: bool = False,
        poll_seconds: float | None = None,
        with_version: bool = False,
    ) -> None:
        super().__init__(
            handler,
            keyed=False,
            dead_letter=dead_letter,
            poll_seconds=poll_seconds,
            with_version=with_version,
        )
        self._columns = columns
        self._output_column = output_column
        self._max_rows = max_rows

    def setup(self) -> None:
        self._metrics = InferenceMetrics(self._handler.handle)
        how = f"columns {self._spec} {self._columns!r} {self._output_column} {self._max_rows}"
        compute = _apply_table(self._spec, self._columns, self._output_column, self._max_rows)
        self._source.open(self._metrics, how, compute)

    def _versioned(self, out: Any, version: str) -> Any:
        if not self._with_version:
            return out
        n = columnar.num_rows(out)
        return columnar.with_columns(
            out, {f"{self._output_column}_version": np.array([version] * n, dtype=object)}
        )

    def process(self, batch: Any):
        self._metrics.flush_load()
        n = columnar.num_rows(batch)
        if n == 0:
            return
        start = time.perf_counter()
        try:
            version, out = self._source.run(batch)
        except Exception:
            if not self._dead_letter:
                raise
            yield from self._row_by_row(batch, n)
            return
        self._metrics.inferred(n, calls=-(-n // self._max_rows), msecs=(time.perf_counter() - start) * 1000)
        self._source.report(self._metrics, version, n)
        yield self._versioned(out, version)

    def _row_by_row(self, batch: Any, n: int) -> Any:
        good = []
        for i in range(n):
            try:
                version, out = self._source.run(columnar.take(batch, i, 1))
            except Exception as e:  # noqa: BLE001 - reported per row
                yield beam.pvalue.TaggedOutput(
                    FAILED, FailedElement(columnar.row(batch, i), str(e), type(e).__name__)
                )
                continue
            self._source.report(self._metrics, version, 1)
            good.append(self._versioned(out, version))
        self._metrics.inferred(len(good))
        if good:
            yield columnar.concat(good)


def _apply_elements(spec: Any) -> Callable[[Any, Any], Any]:
    def compute(module: Any, values: Any) -> Any:
        return module.apply_batch(values, spec)

    return compute


def _apply_table(spec: Any, columns: Any, output_column: str, max_rows: int) -> Callable[[Any, Any], Any]:
    def compute(module: Any, batch: Any) -> Any:
        return module.apply_table(batch, columns, spec, output_column=output_column, max_rows=max_rows)

    return compute


_SHUFFLE_KEYS = 64


def _drops_finish_bundle_output(pipeline: beam.Pipeline) -> bool:
    """Beam's DaskRunner (2.77) loses what DoFns emit in finish_bundle."""
    return type(pipeline.runner).__name__ == "DaskRunner"


def _chunks(keyed: tuple[int, Any], size: int):
    batch: list[Any] = []
    for element in keyed[1]:
        batch.append(element)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "..."
