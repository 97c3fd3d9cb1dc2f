"""ApplyHubModule: ``pcoll | ApplyHubModule(handle, signature="default")``."""

from __future__ import annotations

import copy
import os
import time
from typing import Any, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_hub.beam.handler import METRICS_NAMESPACE, HubModelHandler
from beam_hub.beam.shared_model import acquire
from beam_hub.errors import InputError

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

    Batching uses Beam's ``BatchElements`` (adaptive between ``min_batch_size`` and
    ``max_batch_size``; more options through ``batch_kwargs``). ``large_model=True`` keeps one
    copy of the module per machine instead of per process. ``.with_exception_handling()`` turns
    failing elements into a ``failed`` output of :class:`FailedElement` instead of failing the job.
    Metrics (namespace ``beam_hub``): ``module_loads``, ``inference_elements``,
    ``inference_batches``, ``batch_size``, ``inference_msecs``, ``load_msecs``.
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
        min_batch_size: int = 1,
        max_batch_size: int = 1024,
        large_model: bool = False,
        batch_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.handler = HubModelHandler(
            handle, signature, output_key=output_key, as_dict=as_dict, from_examples=from_examples,
            tags=tags, cache_dir=cache_dir, large_model=large_model,
        )
        self._keyed = keyed
        self._batch_kwargs = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size,
                              **(batch_kwargs or {})}
        self._dead_letter = False

    def with_exception_handling(self) -> "ApplyHubModule":
        """Return a copy whose result unpacks as ``outputs, failed`` (a failed element never stops the job)."""
        clone = copy.copy(self)
        clone._dead_letter = True
        return clone

    def default_label(self) -> str:
        return f"ApplyHubModule({self.handler.handle})"

    def expand(self, pcoll: beam.PCollection) -> Any:
        batches = pcoll | "Batch" >> beam.BatchElements(**self._batch_kwargs)
        dofn = _ApplyDoFn(self.handler, keyed=self._keyed, dead_letter=self._dead_letter)
        if not self._dead_letter:
            return batches | "Apply" >> beam.ParDo(dofn)
        return batches | "Apply" >> beam.ParDo(dofn).with_outputs(FAILED, main="outputs")


class _ApplyDoFn(beam.DoFn):
    """One signature call per batch; outputs returned as one list (no per-row generator)."""

    def __init__(self, handler: HubModelHandler, *, keyed: bool, dead_letter: bool) -> None:
        self._handler = handler
        self._spec = handler.apply_spec
        self._keyed = keyed
        self._dead_letter = dead_letter

    def setup(self) -> None:
        acquired = acquire(self._handler.module_key, per_machine=self._handler.share_model_across_processes())
        self._module = acquired.module
        self._pending_load_msecs = acquired.load_msecs  # counters only count from process()
        ns = METRICS_NAMESPACE
        self._loads = Metrics.counter(ns, "module_loads")
        self._load_msecs = Metrics.distribution(ns, "load_msecs")
        self._elements = Metrics.counter(ns, "inference_elements")
        self._batches = Metrics.counter(ns, "inference_batches")
        self._batch_size = Metrics.distribution(ns, "batch_size")
        self._inference_msecs = Metrics.distribution(ns, "inference_msecs")

    def process(self, batch: list[Any]) -> list[Any]:
        if self._pending_load_msecs is not None:
            self._loads.inc()
            self._load_msecs.update(int(self._pending_load_msecs))
            self._pending_load_msecs = None
        keys, values = self._split_keys(batch) if self._keyed else (None, batch)
        start = time.perf_counter()
        try:
            outputs = self._module.apply_batch(values, self._spec)
        except Exception as e:  # noqa: BLE001 - isolated per element below
            return self._one_by_one(batch, keys, values, e)
        self._inference_msecs.update(int((time.perf_counter() - start) * 1000))
        self._elements.inc(len(outputs))
        self._batches.inc()
        self._batch_size.update(len(outputs))
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

    def _one_by_one(self, batch: list[Any], keys: list[Any] | None, values: list[Any],
                    batch_error: Exception) -> list[Any]:
        """Apply each element alone: good ones get outputs; a bad one is dead-lettered or named."""
        results: list[Any] = []
        culprit = None
        for i, (element, value) in enumerate(zip(batch, values)):
            try:
                (output,) = self._module.apply_batch([value], self._spec)
            except Exception as e:  # noqa: BLE001 - reported per element
                if not self._dead_letter:
                    culprit = (element, e)
                    break
                results.append(beam.pvalue.TaggedOutput(FAILED, FailedElement(element, str(e), type(e).__name__)))
                continue
            results.append(output if keys is None else (keys[i], output))
        if culprit is None and not self._dead_letter:
            raise batch_error  # every element works alone: the batch itself is the problem
        if culprit is not None:
            element, error = culprit
            spec = self._module.spec(self._spec)
            raise InputError(
                f"ApplyHubModule({self._handler.handle!r}) failed on element {_short(element)}: {error} "
                f"(signature {spec}). Use .with_exception_handling() to route bad elements to a "
                "'failed' output instead."
            ) from error
        self._elements.inc(sum(1 for r in results if not isinstance(r, beam.pvalue.TaggedOutput)))
        return results


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "..."
