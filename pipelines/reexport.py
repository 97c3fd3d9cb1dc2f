"""The scheduled fine-tune-and-re-export job.

    python -m pipelines.reexport --base HANDLE --train PATTERN --dest DEST --input-field F --label-field F
        [--num-classes N | --regression] [--epochs N] [--learning-rate X] [--set-alias NAME]
        [any Beam pipeline option]

Reads training records (JSONL, CSV, Parquet, or TFRecord files of tf.train.Examples), fine-tunes
the base module on them, exports the result and publishes it as the next version under DEST. The
last line printed is the new module's handle. Idempotent: each version records a fingerprint of
its base module, training data and parameters; a run whose fingerprint matches a published
version publishes nothing and prints that version's handle. Meant for cron. ``--set-alias NAME``
points DEST@NAME at the version (e.g. ``candidate``: publish nightly, promote by hand with
`beam-hub alias set DEST champion N`); ``DEST@latest`` always follows the newest version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

import beam_hub
from beam_hub import alias_store
from beam_hub import errors as errors_module
from beam_hub.cache import Manifest
from beam_hub.download import filesystem
from beam_hub.errors import BeamHubError, FineTuneError
from beam_hub.files import records_to_json
from beam_hub.layout import SUFFIX
from beam_hub.publish import published_with
from beam_hub.resolvers import resolve_version
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
        "--set-alias",
        default=None,
        metavar="NAME",
        help="point DEST@NAME at the version published (or found unchanged), e.g. candidate",
    )
    ap.add_argument(
        "--work-dir",
        default=None,
        help="temporary training shards (default: a local temp dir; on Dataflow a gs:// path)",
    )
    return ap.parse_known_args(argv)


# --- fingerprint -------------------------------------------------------------------------------

_STORE_CHECKSUMS = ("crc32c", "md5Hash", "ETag", "etag", "generation")  # gcsfs, s3fs, ... info() keys


def _file_token(path: str) -> str:
    """What identifies a training file's content, from its metadata where the store offers it:
    its checksum or generation (GCS crc32c/md5Hash/generation, S3 ETag), else size and mtime
    (local disks); its bytes are read only where the store says nothing usable."""
    fs, fs_path = filesystem(path)
    info = fs.info(fs_path)
    size = info.get("size")
    for key in _STORE_CHECKSUMS:
        if info.get(key):
            return f"size={size};{key}={info[key]}"
    if info.get("mtime") is not None:
        return f"size={size};mtime={info['mtime']}"
    h = hashlib.sha256()
    with fs.open(fs_path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return f"size={size};sha256={h.hexdigest()}"


def fingerprint(args: argparse.Namespace) -> str:
    """sha256 over the base module's files, the training files' identities (see _file_token) and
    the parameters: equal fingerprints mean nothing changed."""
    h = hashlib.sha256()
    base = beam_hub.resolve(args.base)
    manifest = Manifest.read(base) or Manifest.build(base, args.base)
    h.update(json.dumps(records_to_json(manifest.files), sort_keys=True).encode())
    for path in match_files(args.train, "--train"):
        h.update(f"{path.rsplit('/', 1)[-1]}:{_file_token(path)};".encode())
    params = {k: getattr(args, k) for k in _PARAMETERS}
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


_PARAMETERS = (
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


# --- reading and checking ----------------------------------------------------------------------


def _where(source: str, position: int | None, fmt: str) -> str:
    unit = "line" if fmt in ("jsonl", "csv") else "row"
    return f"{source} {unit} {position}" if position is not None else source


def _label(value: Any, num_classes: int | None) -> int | float:
    """A class index in [0, num_classes), or a finite number for regression; ValueError saying why not."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise ValueError(f"label {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"label {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"label {value!r} is not a finite number")
    if num_classes is None:
        return number
    if not number.is_integer():
        raise ValueError(f"label {value!r} is not a whole number; classes are integers in [0, {num_classes})")
    if not 0 <= number < num_classes:
        raise ValueError(f"label {value!r} is outside the classes [0, {num_classes})")
    return int(number)


def _typed(
    located: Located, input_field: str, label_field: str, num_classes: int | None, fmt: str
) -> dict[str, Any]:
    """The training record, checked; FineTuneError naming the record when it cannot be trained on."""
    record = located.record
    where = _where(located.source, located.position, fmt)
    missing = [f for f in (input_field, label_field) if record.get(f) is None]
    if missing:
        raise FineTuneError(
            f"{where}: the training record has no {' or '.join(map(repr, missing))} "
            f"(fields: {sorted(record)}); nothing was published."
        )
    try:
        label = _label(record[label_field], num_classes)
    except ValueError as e:
        raise FineTuneError(f"{where}: {e}; nothing was published.") from None
    value = record[input_field]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return {input_field: value, label_field: label}


def _refuse(letter: dict[str, Any], fmt: str) -> None:
    where = _where(letter["source"], letter["position"], fmt)
    raise FineTuneError(f"{where}: {letter['error']}; fix the training data (nothing was published).")


# --- the job -----------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> str:
    """Run the job; return the handle of the version published (or already published)."""
    args, beam_args = parse_args(list(sys.argv[1:] if argv is None else argv))
    beam_args = with_default_runner(beam_args)
    if args.set_alias is not None:
        alias_store.check_name(args.set_alias)  # a bad name fails before any training
    args.base = resolve_version(args.base)  # one version for the whole run (and its fingerprint)
    digest = fingerprint(args)
    existing = published_with(args.dest, digest)
    if existing:
        log.info("Nothing changed since %s (same base, data and parameters): publishing nothing", existing)
        return _aliased(args, existing)
    work = _run_dir(args.work_dir)
    try:
        with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
            build(p, args, digest, work)
    except Exception as e:  # noqa: BLE001 - re-raised, unwrapped from the runner's wrapping
        raise _clean_failure(e) from None
    finally:
        _remove(work)  # training shards and the exported module: nothing of a run stays behind
    handle = published_with(args.dest, digest)  # found through the fingerprint the workers wrote
    if handle is None:
        raise RuntimeError(f"the job finished but no version under {args.dest} carries fingerprint {digest}")
    return _aliased(args, handle)


def _aliased(args: argparse.Namespace, handle: str) -> str:
    """With --set-alias, point DEST@NAME at ``handle``'s version (unless it points there already)."""
    if args.set_alias is None:
        return handle
    version = handle.rstrip("/").rsplit("/", 1)[-1].removesuffix(SUFFIX)
    current = alias_store.get_alias(args.dest, args.set_alias)
    if current is None or current.version != version:
        alias_store.set_alias(args.dest, args.set_alias, version)
        log.info("%s@%s now points at version %s", args.dest.rstrip("/"), args.set_alias, version)
    return handle


def build(
    p: beam.Pipeline, args: argparse.Namespace, digest: str, work: str | None = None
) -> beam.PCollection:
    """Read and check, fine-tune, publish with the fingerprint: the whole job, on any runner."""
    work = work or _run_dir(args.work_dir)
    fmt = input_format(args.train, None, allowed=TRAIN_FORMATS, flag="--train")
    records, errors = read_records(p, args.train, fmt)
    _ = errors | "RefuseBadRecords" >> beam.Map(_refuse, fmt)
    classification = args.num_classes is not None
    return (
        records
        | "Typed" >> beam.Map(_typed, args.input_field, args.label_field, args.num_classes, fmt)
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
        | "Publish" >> beam_hub.ExportHubModule(args.dest, fingerprint=digest, remove_after=True)
    )


def _run_dir(work_dir: str | None) -> str:
    """This run's own directory: under --work-dir (local or gs://), else under the temp dir."""
    base = (work_dir or tempfile.gettempdir()).rstrip("/")
    return f"{base}/beam-hub-reexport-{uuid.uuid4().hex[:12]}"


def _remove(path: str) -> None:
    fs, fs_path = filesystem(path)
    try:
        fs.rm(fs_path, recursive=True)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("Could not remove the run's work directory %s: %s", path, e)


def _clean_failure(error: Exception) -> Exception:
    """The beam-hub error inside a failed pipeline (runners wrap it), as itself; else the error."""
    if isinstance(error, BeamHubError):
        return type(error)(re.sub(r" \[while running '[^']*'\]$", "", str(error)))
    found = re.search(r"beam_hub\.errors\.(\w+): (.+)", str(error))
    if found and isinstance(getattr(errors_module, found.group(1), None), type):
        return getattr(errors_module, found.group(1))(found.group(2).strip())
    return error


def main(argv: Sequence[str] | None = None) -> int:
    from beam_hub.native_stderr import quiet_tensorflow

    quiet = quiet_tensorflow()
    setup_logging()
    try:
        print(run(argv))  # the last line: the module's handle
        return 0
    except (BeamHubError, ValueError, FileNotFoundError) as e:  # bad data, flags or module: one line
        text = str(e).strip()
        print(f"reexport: error: {text.splitlines()[0] if text else type(e).__name__}", file=sys.stderr)
        return 2
    finally:
        if quiet is not None:
            quiet.close()


if __name__ == "__main__":
    sys.exit(main())
