"""`beam-hub serve` with TensorFlow watched, for tests: ``python serve_watched.py MODE LOG serve ...``.

MODE ``no-tensorflow``: any import of TensorFlow, Keras or tensorflow_hub is written to LOG (with
the stack that asked) and refused. MODE ``no-load``: TensorFlow is imported first and every
SavedModel loader is replaced by one that writes to LOG and raises.
"""

from __future__ import annotations

import importlib.abc
import sys
import traceback

_WATCHED = ("tensorflow", "keras", "tf_keras", "tensorflow_hub")


def record(log: str, what: str) -> None:
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"{what}\n{''.join(traceback.format_stack())}\n")


class Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, log: str) -> None:
        self.log = log

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in _WATCHED:
            record(self.log, f"import {name}")
            raise ImportError(f"{name} is not to be imported by the hub server")
        return None


def refuse_loads(log: str) -> None:
    import tensorflow as tf
    from tensorflow.python.saved_model import load as load_v2
    from tensorflow.python.saved_model import loader_impl

    def refused(*args, **kwargs):
        record(log, f"SavedModel load {args[:1]}")
        raise RuntimeError("the hub server loaded a module")

    tf.saved_model.load = tf.compat.v2.saved_model.load = load_v2.load = refused
    tf.compat.v1.saved_model.load = tf.compat.v1.saved_model.loader.load = loader_impl.load = refused


if __name__ == "__main__":
    mode, log, *argv = sys.argv[1:]
    if mode == "no-tensorflow":
        sys.meta_path.insert(0, Refuse(log))
    elif mode == "no-load":
        refuse_loads(log)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    from beam_hub.cli import main

    sys.exit(main(argv))
