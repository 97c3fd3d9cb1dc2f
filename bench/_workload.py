"""Shared by the benchmarks: tiny Dense modules and a generated input with an in-pipeline clock;
a quiet HTTP server for a directory, and a timer.

Kept in its own module so that Beam pickles these functions by reference: the clock's ticks then
land in this process's module (the benchmarks use the in-process runner).
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

DIM = 256
CHUNK = 1024
_BASE: list[np.ndarray] = []
TICKS: list[float] = []


def build(path: str, layers: list[int]) -> str:
    """A module of ReLU Dense layers over DIM floats: "default"/"serving_default" signatures, __call__."""
    import tensorflow as tf

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)
            sizes = [DIM] + layers
            self.ws = [
                tf.Variable(rng.standard_normal((a, b), np.float32) / np.float32(np.sqrt(a)))
                for a, b in zip(sizes, sizes[1:])
            ]

        @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32, name="x")])
        def __call__(self, x):
            for w in self.ws:
                x = tf.nn.relu(tf.matmul(x, w))
            return x

        @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32, name="x")])
        def serve(self, x):
            return {"default": self(x)}

    m = Dense()
    tf.saved_model.save(m, path, signatures={"default": m.serve, "serving_default": m.serve})
    return path


def build_weights(path: str, mb: int) -> None:
    """A module that is ``mb`` MB of incompressible weights behind a trivial signature (for I/O benchmarks)."""
    import tensorflow as tf

    class Weights(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(0).standard_normal(mb * 2**18, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x):
            return {"default": x * self.w[0]}

    m = Weights()
    tf.saved_model.save(m, path, signatures={"default": m.serve})


def chunk(i: int) -> np.ndarray:
    """Chunk ``i`` of the input: cheap to make (one vectorised add), different for every i."""
    if not _BASE:
        _BASE.append(np.random.default_rng(0).standard_normal((CHUNK, DIM), dtype=np.float32))
    return _BASE[0] + np.float32(i % 97) * np.float32(1e-3)


def rows(i: int) -> list[np.ndarray]:
    """The rows of chunk ``i`` as pipeline elements; notes the time each chunk is started."""
    TICKS.append(time.perf_counter())
    return list(chunk(i))


def steady_seconds_per_element() -> float:
    """From the clock: time between the first and the last chunk, per element in between.

    The pipeline is push-based and fused, so chunk i+1 starts once chunk i's rows went through the
    transform: this excludes start-up, module load and tear-down, and adds no per-element work.
    """
    if len(TICKS) < 3:
        raise RuntimeError("need at least 3 chunks to measure a steady state")
    return (TICKS[-1] - TICKS[0]) / ((len(TICKS) - 1) * CHUNK)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def serve_dir(root: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (any query ignored); returns the server and its URL."""
    handler = functools.partial(_QuietHandler, directory=root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds one call of ``fn(*args, **kwargs)`` takes."""
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t
