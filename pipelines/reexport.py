"""The scheduled fine-tune-and-re-export job.

    python -m pipelines.reexport --base HANDLE --train PATTERN --dest DEST --input-field F --label-field F
        [--num-classes N | --regression] [--epochs N] [--learning-rate X] [any Beam pipeline option]

Reads training records (JSONL, CSV, Parquet, or TFRecord files of tf.train.Examples), fine-tunes
the base module on them, exports the result and publishes it as the next version under DEST. The
last line printed is the new module's handle. Idempotent: each version records a fingerprint of
its base module, training data and parameters; a run whose fingerprint matches a published
version publishes nothing and prints that version's handle. Meant for cron.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import beam_hub
from beam_hub.cache import Manifest
from beam_hub.files import records_to_json
from beam_hub.publish import published_with
from pipelines.io import Located, input_format, match_files, read_records, setup_logging, with_default_runner

TRAIN_FORMATS = ("jsonl", "csv", "parquet", "tfrecord")
log = logging.getLogger("beam_hub.reexport")


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(prog="python -m pipelines.reexport", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="handle of the module to fine-tune")
    ap.add_argument("--train", required=True, help="training data file pattern")
    ap.add_argument("--dest", required=True, help="where versions are published (any fsspec URL)")
    ap.add_argument("--input-field", required=True)
    ap.add_argument("--label-field", required=True)
    task = ap.add_mutually_exclusive_group(required=True)
    task.add_argument("--num-classes", type=int, help="classification with N classes")
    task.add_argument("--regression", action="store_true")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--validation-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--work-dir",
        default=None,
        help="temporary training shards (default: a local temp dir; on Dataflow a gs:// path)",
    )
    return ap.parse_known_args(argv)


# --- fingerprint -------------------------------------------------------------------------------


def fingerprint(args: argparse.Namespace) -> str:
    """sha256 over the base module's files, the training files' bytes and the parameters."""
    h = hashlib.sha256()
    base = beam_hub.resolve(args.base)
    manifest = Manifest.read(base) or Manifest.build(base, args.base)
    h.update(json.dumps(records_to_json(manifest.files), sort_keys=True).encode())
    for path in match_files(args.train, "--train"):
        h.update(path.rsplit("/", 1)[-1].encode())
        with FileSystems.open(path) as f:
            while block := f.read(1 << 20):
                h.update(block)
    params = {
        k: getattr(args, k)
        for k in (
            "input_field",
            "label_field",
            "num_classes",
            "regression",
            "epochs",
            "learning_rate",
            "batch_size",
            "validation_fraction",
            "seed",
        )
    }
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


# --- reading -----------------------------------------------------------------------------------


def _typed(record: Any, input_field: str, label_field: str, classification: bool) -> dict[str, Any]:
    if isinstance(record, Located):
        record = record.record
    if not isinstance(record, dict):
        raise ValueError(f"training record is not an object: {str(record)[:200]}")
    if input_field not in record or label_field not in record:
        raise ValueError(
            f"training record lacks {input_field!r} or {label_field!r} (fields: {sorted(record)})"
        )
    value = record[input_field]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    label = record[label_field]
    label = int(label) if classification else float(label)
    return {input_field: value, label_field: label}


def read(p: beam.Pipeline, pattern: str) -> beam.PCollection:
    return read_records(p, pattern, input_format(pattern, None, allowed=TRAIN_FORMATS, flag="--train"))


# --- the job -----------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> str:
    args, beam_args = parse_args(list(sys.argv[1:] if argv is None else argv))
    beam_args = with_default_runner(beam_args)
    digest = fingerprint(args)
    existing = published_with(args.dest, digest)
    if existing:
        log.info("Nothing changed since %s (same base, data and parameters): publishing nothing", existing)
        return existing
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        build(p, args, digest)
    handle = published_with(args.dest, digest)  # found through the fingerprint the workers wrote
    if handle is None:
        raise RuntimeError(f"the job finished but no version under {args.dest} carries fingerprint {digest}")
    return handle


def build(p: beam.Pipeline, args: argparse.Namespace, digest: str) -> beam.PCollection:
    """Read, fine-tune, publish, record the fingerprint: the whole job, on any runner."""
    work = args.work_dir or tempfile.mkdtemp(prefix="beam-hub-reexport-")
    classification = args.num_classes is not None
    return (
        read(p, args.train)
        | "Typed" >> beam.Map(_typed, args.input_field, args.label_field, classification)
        | "FineTune"
        >> beam_hub.FineTuneHubModule(
            args.base,
            input_key=args.input_field,
            label_key=args.label_field,
            head="classification" if classification else "regression",
            num_classes=args.num_classes,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            work_dir=work,
        )
        | "Publish" >> beam_hub.ExportHubModule(args.dest, fingerprint=digest)
    )


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    print(run(argv))  # the last line: the module's handle
    return 0


if __name__ == "__main__":
    sys.exit(main())
