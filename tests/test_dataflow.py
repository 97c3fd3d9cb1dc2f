"""The embedding job for Dataflow, offline: the job builds (--dry_run) and the --setup_file package."""

import os
import subprocess
import sys
import tarfile

from helpers import REPO


def test_embed_job_builds_for_dataflow_with_a_shared_cache():
    import apache_beam as beam
    from apache_beam.internal import pickler
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability.api import beam_runner_api_pb2

    from pipelines import embed

    options = PipelineOptions(
        [
            "--input",
            os.path.join(REPO, "examples", "sentences.jsonl"),
            "--output",
            "gs://bucket/out/emb",
            "--module",
            "gs://bucket/modules/all-MiniLM-L6-v2.tar.gz",
            "--hub_cache_dir",
            "gs://bucket/hub-cache",
            "--runner",
            "DataflowRunner",
            "--project",
            "my-project",
            "--region",
            "us-central1",
            "--temp_location",
            "gs://bucket/tmp",
            "--dry_run=True",
            "--no_auth",
        ]
    )
    p = beam.Pipeline(options=options)
    embed.build(p, options.view_as(embed.EmbedOptions))
    result = p.run()
    assert str(result.state) == "DONE"
    # what the workers run: the embedding DoFn as the job carries it, unpickled
    (apply,) = [
        t
        for t in result.job.proto_pipeline.components.transforms.values()
        if t.unique_name.startswith("Embed/Apply") and t.spec.urn == "beam:transform:pardo:v1"
    ]
    dofn = pickler.loads(beam_runner_api_pb2.ParDoPayload.FromString(apply.spec.payload).do_fn.payload)[0]
    assert dofn._handler.module_key.cache_dir == "gs://bucket/hub-cache"
    assert dofn._handler.module_key.handle == "gs://bucket/modules/all-MiniLM-L6-v2.tar.gz"
    names = {t.unique_name for t in p.to_runner_api().components.transforms.values()}
    # every format is read as tables; on a distributed runner they are spread over the workers
    for stage in ("Match", "Read", "Spread", "Embed/ApplyColumns", "Write"):
        assert any(n == stage or n.startswith(stage + "/") for n in names), sorted(names)


def test_setup_file_package_holds_the_library_and_the_jobs(tmp_path):
    # the command Beam's stager runs for --setup_file when `build` is not installed
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (sdist,) = [f for f in os.listdir(tmp_path) if f.endswith(".tar.gz")]
    with tarfile.open(tmp_path / sdist) as tar:
        members = tar.getnames()
    for path in (
        "beam_hub/beam/apply.py",
        "beam_hub/models/minilm/tokenizer.py",
        "pipelines/embed.py",
        "pyproject.toml",
    ):
        assert any(m.endswith(path) for m in members), path


def test_reexport_job_builds_for_dataflow(tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines import reexport

    train = tmp_path / "train.jsonl"  # local: building the graph matches the input pattern now
    train.write_text('{"x": [1.0, 2.0], "y": 1}\n')
    args, beam_args = reexport.parse_args(
        [
            "--base",
            "gs://bucket/models/base/1.tar.gz",
            "--train",
            str(train),
            "--dest",
            "gs://bucket/models/tuned",
            "--input-field",
            "x",
            "--label-field",
            "y",
            "--num-classes",
            "2",
            "--work-dir",
            "gs://bucket/tmp/reexport",
            "--runner",
            "DataflowRunner",
            "--project",
            "my-project",
            "--region",
            "us-central1",
            "--temp_location",
            "gs://bucket/tmp",
            "--dry_run=True",
            "--no_auth",
        ]
    )
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    reexport.build(p, args, "0" * 64)
    assert str(p.run().state) == "DONE"
    names = {t.unique_name for t in p.to_runner_api().components.transforms.values()}
    for stage in ("Match", "Parse", "Typed", "FineTune/WriteShards", "FineTune/Train", "Publish"):
        assert any(n == stage or n.startswith(stage + "/") for n in names), sorted(names)
