"""Hub modules as embeddings for Beam's MLTransform (EmbeddingsManager implementations).

    MLTransform(write_artifact_location=...).with_transform(HubTextEmbeddings(columns=["text"]))

Each named column is replaced by its embedding (a list of float32), on the same loaded-once,
batched path as ApplyHubModule. No tensorflow_hub, tf_keras or tensorflow_text needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import RunInference
from apache_beam.ml.transforms.base import EmbeddingsManager, _ImageEmbeddingHandler, _TextEmbeddingHandler

from beam_hub.batch import LoadedModule
from beam_hub.beam.handler import HubModelHandler

DEFAULT_TEXT_MODULE = "builtin://all-MiniLM-L6-v2"


class _VectorsHandler(HubModelHandler):
    """Returns plain lists of floats, one per input, as MLTransform's embedding handlers expect."""

    def __init__(self, *args: Any, images: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._images = images

    # MLTransform's embedding handlers return vectors, not PredictionResults
    def run_inference(  # type: ignore[override]
        self, batch: Sequence[Any], model: LoadedModule, inference_args: Mapping[str, Any] | None = None
    ) -> list[list[float]]:
        if self._images:
            batch = _prepare_images(batch, model.spec(self.apply_spec))
        return [
            np.asarray(row, dtype=np.float32).reshape(-1).tolist()
            for row in model.apply_batch(batch, self.apply_spec)
        ]


def _prepare_images(images: Sequence[Any], spec: Any) -> list[np.ndarray]:
    """The common image signature: float32 RGB in [0, 1], NHWC, resized to the module's H x W if it declares one."""
    import tensorflow as tf

    (info,) = spec.inputs.values()
    dims = info.shape.as_list() if info.shape.rank == 4 else [None, None, None, 3]
    out = []
    for image in images:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        arr = arr.astype(np.float32) / 255.0 if arr.dtype.kind in "ui" else arr.astype(np.float32)
        if dims[1] and dims[2] and arr.shape[:2] != (dims[1], dims[2]):
            arr = tf.image.resize(arr, (dims[1], dims[2])).numpy()
        out.append(arr)
    return out


class _HubEmbeddings(EmbeddingsManager):
    _images = False

    def __init__(
        self,
        columns: list[str],
        handle: str | os.PathLike,
        *,
        signature: str | None = None,
        output_key: str | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(columns=columns, **kwargs)
        self.handle = os.fspath(handle)
        self.signature = signature
        self.output_key = output_key
        self.cache_dir = cache_dir

    def get_model_handler(self) -> _VectorsHandler:
        return _VectorsHandler(
            self.handle,
            self.signature,
            output_key=self.output_key,
            cache_dir=self.cache_dir,
            min_batch_size=self.min_batch_size,
            max_batch_size=self.max_batch_size,
            large_model=self.large_model,
            images=self._images,
        )


class HubTextEmbeddings(_HubEmbeddings):
    """Replace each of ``columns`` (text) by its embedding; the default module is the built-in MiniLM."""

    def __init__(
        self, columns: list[str], handle: str | os.PathLike = DEFAULT_TEXT_MODULE, **kwargs: Any
    ) -> None:
        super().__init__(columns, handle, **kwargs)

    def get_ptransform_for_processing(self, **kwargs: Any) -> RunInference:
        return RunInference(model_handler=_TextEmbeddingHandler(self), inference_args=self.inference_args)


class HubImageEmbeddings(_HubEmbeddings):
    """Replace each of ``columns`` (images: HxWx3 arrays, uint8 or float) by its embedding."""

    _images = True

    def get_ptransform_for_processing(self, **kwargs: Any) -> RunInference:
        return RunInference(model_handler=_ImageEmbeddingHandler(self), inference_args=self.inference_args)
