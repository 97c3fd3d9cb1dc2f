"""Which ops the installed TensorFlow registers, without importing TensorFlow into this process.

The audit flags an op TensorFlow does not know (native code from some other package). Where this
process has imported TensorFlow already (a job, ``beam_hub.load``), its live registry is asked: it
includes ops that packages such as tensorflow_text registered. Elsewhere (``beam-hub serve``,
``beam-hub inspect``), TensorFlow is asked once, in a child process that loads no module, for the
names it registers; they are kept per TensorFlow version::

    ~/.cache/beam_hub_tensorflow_ops/        ($XDG_CACHE_HOME when set)
        tensorflow-2.21.0.txt               one op name a line (about 1,900)

With no TensorFlow installed, or a child that fails, ops are not checked for being unknown and the
report says so (``AuditReport.op_registry`` is empty).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from beam_hub import settings
from beam_hub.files import write_text_atomic

log = logging.getLogger("beam_hub.audit")

_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos", "tf-nightly")
_OP_NAME = re.compile(r"^[A-Za-z0-9_>.]+$")
_MIN_OPS = 500  # a list shorter than this is not TensorFlow's
_CHILD_TIMEOUT = 300.0
_DUMP = """
import sys
try:
    from tensorflow.python.client import pywrap_tf_session as s
    from tensorflow.core.framework import op_def_pb2
    names = [op.name for op in op_def_pb2.OpList.FromString(s.TF_GetBuffer(s.TF_GetAllOpList())).op]
except Exception:  # a TensorFlow without that binding: its public list of ops
    import tensorflow as tf
    names = [n for n in dir(tf.raw_ops) if not n.startswith("_")]
sys.stdout.write("\\n".join(sorted(set(names))))
"""
_lock = threading.Lock()
_known: dict[str, frozenset[str]] = {}


@dataclass(frozen=True)
class OpRegistry:
    """``known(op)``: whether TensorFlow registers ``op``; None when nothing could tell."""

    source: str  # e.g. "TensorFlow 2.21.0"; "" when ops are not checked
    known: Callable[[str], bool] | None


@functools.cache
def tensorflow_version() -> str | None:
    """The installed TensorFlow's version, read from its package metadata (no import)."""
    for name in _DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    tf = sys.modules.get("tensorflow")
    return getattr(tf, "__version__", None)


def registered_ops() -> OpRegistry:
    """TensorFlow's op registry: the live one when TensorFlow is imported here, else its names."""
    version = tensorflow_version()
    if "tensorflow.python.framework.op_def_registry" in sys.modules:
        from tensorflow.python.framework import op_def_registry

        return OpRegistry(f"TensorFlow {version}", lambda op: op_def_registry.get(op) is not None)
    if version is None:
        return OpRegistry("", None)
    names = _names(version)
    if names is None:
        return OpRegistry("", None)
    return OpRegistry(f"TensorFlow {version}", names.__contains__)


def _names(version: str) -> frozenset[str] | None:
    with _lock:  # one child at a time, and only once per process
        if version not in _known:
            found = _read(_path(version)) or _ask_tensorflow(version)
            if found is None:
                return None
            _known[version] = found
        return _known[version]


def _path(version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", version)
    return os.path.join(settings.user_cache_base(), "beam_hub_tensorflow_ops", f"tensorflow-{safe}.txt")


def _read(path: str) -> frozenset[str] | None:
    try:
        with open(path, encoding="utf-8") as f:
            names = f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if len(names) < _MIN_OPS or not all(_OP_NAME.match(n) for n in names):
        return None  # damaged or not ours: asked again
    return frozenset(names)


def _ask_tensorflow(version: str) -> frozenset[str] | None:
    """The op names of the installed TensorFlow, from a child process; kept for the next time."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _DUMP],
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not list TensorFlow's ops (%s): unknown ops are not checked", e)
        return None
    names = done.stdout.split("\n")
    if done.returncode != 0 or len(names) < _MIN_OPS or not all(_OP_NAME.match(n) for n in names):
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        log.warning("could not list TensorFlow's ops (%s): unknown ops are not checked", tail[0])
        return None
    path = _path(version)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_text_atomic(path, "\n".join(names))
    except OSError as e:  # a read-only home: asked again by the next process
        log.debug("TensorFlow's op list not kept at %s: %s", path, e)
    return frozenset(names)
