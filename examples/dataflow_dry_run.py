"""The embedding job built for Dataflow, without running it (``--dry_run``): what you would submit.

    python examples/dataflow_dry_run.py [--project P --region R --temp_location gs://... ...]

Builds ``beam-hub embed`` on the sample file for the DataflowRunner with a shared module cache on
GCS, stops before anything is sent (``--dry_run=True --no_auth``: no credentials, no network) and
prints the job's steps. Drop ``--dry_run=True --no_auth`` and give your project, region, buckets
and ``--setup_file ./setup.py`` to run it for real (see docs/embedding-job.md).
"""

from __future__ import annotations

import os
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import embed

SENTENCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentences.jsonl")
DEFAULTS = {
    "--input": SENTENCES,
    "--output": "gs://my-bucket/embeddings/emb",
    "--module": "gs://my-bucket/modules/all-MiniLM-L6-v2.tar.gz",
    "--hub_cache_dir": "gs://my-bucket/hub-cache",
    "--runner": "DataflowRunner",
    "--project": "my-project",
    "--region": "us-central1",
    "--temp_location": "gs://my-bucket/tmp",
}


def main(argv: list[str]) -> None:
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    args = [x for flag, value in DEFAULTS.items() if flag not in given for x in (flag, value)]
    options = PipelineOptions([*args, *argv, "--dry_run=True", "--no_auth"])
    p = beam.Pipeline(options=options)
    embed.build(p, options.view_as(embed.EmbedOptions))
    result = p.run()
    steps = [
        t.unique_name
        for t in result.job.proto_pipeline.components.transforms.values()
        if "/" not in t.unique_name
    ]
    print(f"job state: {result.state} (nothing was sent); {len(steps)} steps:")
    for step in sorted(steps):
        print("  ", step)


if __name__ == "__main__":
    main(sys.argv[1:])
