"""HubModelHandler: a hub module for Beam's own RunInference."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beam_hub.batch import ApplySpec, LoadedModule
from beam_hub.beam.metrics import METRICS_NAMESPACE
from beam_hub.beam.shared_model import ModuleKey
from beam_hub.resolvers import resolve_version
from beam_hub.settings import AuditMode


class HubModelHandler(ModelHandler[Any, PredictionResult, LoadedModule]):
    """Knows the module: how to load it and how to apply it to a batch.

        pcoll | RunInference(HubModelHandler("https://example.com/m/1", signature="default"))

    Works with Beam's own features: PredictionResult, KeyedModelHandler, ``with_exception_handling``,
    model updates through ``update_model_path``, ``large_model`` / ``model_copies``. Loads with
    ``tf.saved_model.load`` (no Keras), so it works under Keras 3 without TF_USE_LEGACY_KERAS.
    ApplyHubModule uses the same handler for its own, leaner DoFn. ``audit`` and ``allow_ops``:
    the audit policy applied on each worker before the module loads (see :func:`beam_hub.load`).
    A moving name (``DEST@latest``, ``DEST@NAME``, a Hugging Face branch) is pinned to the version it
    names when the handler is made; ``pin=False`` keeps the name (``ApplyHubModule(follow=True)``
    resolves it on the workers; for RunInference, see :class:`beam_hub.WatchVersions`).
    """

    def __init__(
        self,
        handle: str | os.PathLike,
        signature: str | None = None,
        *,
        output_key: str | None = None,
        as_dict: bool = False,
        from_examples: bool = False,
        tags: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_cache_dir: str | os.PathLike | None = None,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        large_model: bool = False,
        model_copies: int | None = None,
        audit: AuditMode | None = None,
        allow_ops: Sequence[str] = (),
        pin: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            large_model=large_model,
            model_copies=model_copies,
            **kwargs,
        )
        self._key = ModuleKey(
            resolve_version(handle)
            if pin
            else os.fspath(handle),  # a moving name is pinned now, on the launcher
            None if tags is None else tuple(tags),
            None if cache_dir is None else os.fspath(cache_dir),
            None if local_cache_dir is None else os.fspath(local_cache_dir),
            audit,
            tuple(allow_ops),
        )
        self.apply_spec = ApplySpec(signature, output_key, as_dict, from_examples)

    @property
    def module_key(self) -> ModuleKey:
        return self._key

    def with_cache_dirs(self, cache_dir: str | None, local_cache_dir: str | None) -> None:
        """Fill cache locations left unset (e.g. from pipeline options); set ones are kept."""
        self._key = dataclasses.replace(
            self._key,
            cache_dir=self._key.cache_dir or cache_dir,
            local_cache_dir=self._key.local_cache_dir or local_cache_dir,
        )

    @property
    def handle(self) -> str:
        return self._key.handle

    def load_model(self) -> LoadedModule:
        return self._key.load()

    def run_inference(
        self, batch: Sequence[Any], model: LoadedModule, inference_args: Mapping[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        outputs = model.apply_batch(batch, self.apply_spec)
        return [PredictionResult(x, y, self._key.handle) for x, y in zip(batch, outputs)]

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(_nbytes(x) for x in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def update_model_path(self, model_path: str | None = None) -> None:
        if model_path:
            self._key = dataclasses.replace(self._key, handle=resolve_version(model_path))

    def validate_inference_args(self, inference_args: Mapping[str, Any] | None) -> None:
        if inference_args:
            raise ValueError(
                f"HubModelHandler takes no inference_args (got {sorted(inference_args)}); pick the "
                "signature and outputs with HubModelHandler(handle, signature=..., output_key=...)."
            )

    def __repr__(self) -> str:
        return f"HubModelHandler({self._key.handle!r}, {self.apply_spec})"


def _nbytes(x: Any) -> int:
    if isinstance(x, Mapping):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (bytes, str)):
        return len(x)
    return int(getattr(x, "nbytes", np.asarray(x).nbytes))
