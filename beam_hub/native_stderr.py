"""Keep TensorFlow's native start-up lines out of the command line's stderr.

TensorFlow 2.21 logs through Abseil before Abseil is initialised, and such lines go to stderr
whatever ``TF_CPP_MIN_LOG_LEVEL`` says ("All log messages before absl::InitializeLog() is called
are written to STDERR", oneDNN notices, "Could not find cuda drivers", "failed call to cuInit").
The CLI routes file descriptor 2 through a filter that drops those INFO/WARNING lines, the CUDA
probe's error on machines without a GPU and oneDNN's "falling back to Eigen" notice (logged as
an error), and passes everything else through unchanged, as
it arrives (tqdm bars included), for this process and the worker processes it starts.
"""

from __future__ import annotations

import os
import re
import sys
import threading

from beam_hub import settings

_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "
    rb"|E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"
    rb"|E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_\w+ only on platforms with)"
)
_ABSL_WARNING = b"WARNING: All log messages before absl"
_ABSL_LINE_START = re.compile(rb"^[IWE]\d{0,4}$|^[IWE]\d{4} ")


def _could_be_noise(partial: bytes) -> bool:
    """Whether an unfinished line may still turn out to be noise (then wait for its end)."""
    return _ABSL_WARNING.startswith(partial[: len(_ABSL_WARNING)]) or bool(_ABSL_LINE_START.match(partial))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class NativeStderrFilter:
    """While open, fd 2 is a pipe whose lines are filtered onto the real stderr."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self._real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read,), name="beam-hub-stderr", daemon=True)
        self._thread.start()

    def _pump(self, read: int) -> None:
        pending = b""
        while chunk := os.read(read, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not _NOISE.match(line))
            if pending and not _could_be_noise(pending):
                out, pending = out + pending, b""  # a partial line (a progress bar): show it now
            if out:
                _write_all(self._real, out)
        if pending and not _NOISE.match(pending):
            _write_all(self._real, pending)
        os.close(read)

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self._real, 2)  # this process no longer writes into the pipe
        self._thread.join(timeout=5)
        os.close(self._real)


def quiet_tensorflow() -> NativeStderrFilter | None:
    """Filter native start-up noise unless the user set TF_CPP_MIN_LOG_LEVEL (their choice wins)."""
    if settings.tf_log_level() is not None:
        return None
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return NativeStderrFilter()
