"""Pipeline options through which cache settings reach the workers."""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions


class HubOptions(PipelineOptions):
    """``--hub_cache_dir`` (e.g. a shared gs:// cache) and ``--hub_local_cache_dir`` (the workers' local tier)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--hub_cache_dir",
            "--hub-cache-dir",
            dest="hub_cache_dir",
            default=None,
            help="module cache for the workers: a local path or a shared URL such as gs://bucket/hub-cache",
        )
        parser.add_argument(
            "--hub_local_cache_dir",
            "--hub-local-cache-dir",
            dest="hub_local_cache_dir",
            default=None,
            help="the workers' local tier when --hub_cache_dir is remote (default ~/.cache/beam_hub)",
        )
