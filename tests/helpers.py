"""Helpers the tests import: run the CLI, run pipelines on the in-process runner, read metrics."""

from __future__ import annotations

import os
import subprocess
import sys

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

    found = result.metrics().query(MetricsFilter().with_namespace(namespace))
    out: dict[str, int] = {}
    for c in found["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    for d in found["distributions"]:
        out[d.key.metric.name + ".count"] = out.get(d.key.metric.name + ".count", 0) + d.committed.count
    return out
