"""Helpers the tests import: run the CLI, run pipelines on the in-process runner, read metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m beam_hub ...` in a fresh interpreter (as the console script does)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "beam_hub", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"beam-hub {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def beam_options(*extra: str):
    """Pipeline options for tests: the in-process runner (never Prism's download), plus ``extra``."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(["--runner=FnApiRunner", *extra])


def run_pipeline(build, *extra: str):
    """Build with ``build(pipeline)``, run to completion, return the result (for metrics)."""
    import apache_beam as beam

    p = beam.Pipeline(options=beam_options(*extra))
    build(p)
    result = p.run()
    result.wait_until_finish()
    return result


def counters(result, namespace: str = "beam_hub") -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    # Beam 2.77's in-process runner consolidates each stage's metrics as a lazy generator chained
    # onto the previous bundle's (fn_runner.py run_stages): a streaming run of a few hundred
    # bundles nests deeper than Python's default limit when the metrics are finally read.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 6000))
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(namespace))
    finally:
        sys.setrecursionlimit(limit)
    out: dict[str, int] = {}
    for c in found["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    for d in found["distributions"]:
        out[d.key.metric.name + ".count"] = out.get(d.key.metric.name + ".count", 0) + d.committed.count
    return out


class Served:
    """`beam-hub serve ROOT` in a child process on an ephemeral port of 127.0.0.1 (``url``); its
    stderr (a log line per request) is drained on a thread so that a busy server never blocks."""

    def __init__(
        self,
        root: str,
        *extra: str,
        pack_dir: str | None = "",
        env: dict | None = None,
        launcher: tuple[str, ...] = ("-m", "beam_hub"),
    ) -> None:
        """``launcher``: what runs the CLI (tests/serve_watched.py watches TensorFlow in the server)."""
        packs = [] if pack_dir is None else ["--pack-dir", pack_dir or os.path.join(root, "..", "packs")]
        self.proc = subprocess.Popen(
            [sys.executable, *launcher, "serve", root, "--port", "0", *packs, *extra],
            env={**os.environ, **(env or {})},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("Serving "), self.proc.stderr.read() if self.proc.poll() is not None else line
        self.url = line.split(" at ")[1].strip().rstrip("/")
        self._err: list[str] = []
        self._drain = threading.Thread(target=lambda: self._err.extend(self.proc.stderr), daemon=True)
        self._drain.start()

    def stop(self) -> str:
        """Stop the server; what it wrote to stderr."""
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._drain.join(timeout=30)
        self.proc.stdout.close()
        return "".join(self._err)


def get(url, headers=None, method="GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_no_redirect(url):
    """GET without following redirects: (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
