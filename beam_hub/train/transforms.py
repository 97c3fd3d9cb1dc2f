"""FineTuneHubModule and ExportHubModule: fine-tuning and publishing as Beam transforms."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from typing import Any

import apache_beam as beam

from beam_hub.download import filesystem
from beam_hub.train.finetune import FineTuneConfig
from beam_hub.urls import is_remote_url


class FineTuneHubModule(beam.PTransform):
    """Training records (dicts) in, one fine-tuned module directory out.

        records | FineTuneHubModule(handle, input_key="x", label_key="y", head="classification",
                                    num_classes=2) | ExportHubModule("gs://bucket/models/mine")

    The records are written to temporary TFRecord shards under ``work_dir`` and streamed from
    there with tf.data (never collected in memory); on a distributed runner ``work_dir`` must be
    shared (e.g. gs://bucket/tmp). The output is a local directory on the worker that trained:
    follow with ExportHubModule to publish it. The module's variables are trained with a head
    on top (``"classification"`` with ``num_classes``, ``"regression"``, or your tf.Module/Keras
    layer), its ``regularization_losses`` added to the loss; early stopping watches a validation
    split. The result is itself a reusable hub module with a README.md of how it was made.
    """

    def __init__(
        self,
        handle: str | os.PathLike,
        *,
        input_key: str,
        label_key: str,
        head: Any = "classification",
        num_classes: int | None = None,
        epochs: int = 10,
        batch_size: int = 32,
        learning_rate: float = 1e-4,
        validation_fraction: float = 0.1,
        patience: int = 2,
        train_base: bool = True,
        seed: int = 0,
        work_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.config = FineTuneConfig(
            os.fspath(handle),
            input_key,
            label_key,
            head,
            num_classes,
            epochs,
            batch_size,
            learning_rate,
            validation_fraction,
            patience,
            train_base,
            seed,
            None if cache_dir is None else os.fspath(cache_dir),
        )
        self.work_dir = None if work_dir is None else os.fspath(work_dir)

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        work = self.work_dir or tempfile.mkdtemp(prefix="beam-hub-finetune-")
        shards = (
            records
            | "ToExamples" >> beam.Map(_training_example, self.config.input_key, self.config.label_key)
            | "WriteShards"
            >> beam.io.WriteToTFRecord(os.path.join(work, "data", "train"), file_name_suffix=".tfrecord")
        )
        return (
            shards
            | "AllShards" >> beam.combiners.ToList()
            | "Train" >> beam.Map(_train_and_export, self.config, work)
        )


def _training_example(record: dict[str, Any], input_key: str, label_key: str) -> bytes:
    from beam_hub.examples import serialize

    return serialize({input_key: record[input_key], label_key: record[label_key]})


def _train_and_export(files: list[str], config: FineTuneConfig, work: str) -> str:
    """Train on the shards, then delete them (they are copies of the data); export the module to a
    new local directory (under a local ``work``, else a temp dir of this worker)."""

    from beam_hub.train.finetune import export, train

    try:
        result = train(sorted(files), config)
    finally:
        for shard in files:
            fs, path = filesystem(shard)
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)
    if is_remote_url(work):
        return export(result, config, tempfile.mkdtemp(prefix="beam-hub-finetuned-"))
    return export(result, config, os.path.join(work, f"module-{uuid.uuid4().hex[:8]}"))


class ExportHubModule(beam.PTransform):
    """Module directories in, published handles out: packed reproducibly, published to ``dest``
    (with ``fingerprint`` recorded beside the version, see ``beam_hub.publish``). With
    ``remove_after=True`` each directory is deleted once published (a temporary product)."""

    def __init__(
        self,
        dest: str | os.PathLike,
        version: int | str | None = None,
        *,
        fingerprint: str | None = None,
        remove_after: bool = False,
    ) -> None:
        super().__init__()
        self.dest = os.fspath(dest)
        self.version = version
        self.fingerprint = fingerprint
        self.remove_after = remove_after

    def expand(self, module_dirs: beam.PCollection) -> beam.PCollection:
        return module_dirs | "Publish" >> beam.Map(
            _publish, self.dest, self.version, self.fingerprint, self.remove_after
        )


def _publish(
    module_dir: str, dest: str, version: int | str | None, fingerprint: str | None, remove_after: bool
) -> str:
    from beam_hub.publish import publish

    try:
        return publish(module_dir, dest, version=version, fingerprint=fingerprint)
    finally:
        if remove_after:
            shutil.rmtree(module_dir, ignore_errors=True)
