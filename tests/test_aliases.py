"""DEST@latest: the newest published version, resolved once, never cached under the alias."""

import logging
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

import beam_hub
from beam_hub.aliases import split_alias
from beam_hub.cache import cache_key
from beam_hub.errors import ModuleNotFoundAtHandleError
from helpers import run_pipeline

X = np.array([[1.0, 2.0, 3.0]], np.float32)


def test_split_alias_only_takes_a_trailing_latest():
    assert split_alias("gs://b/models/fruit@latest") == ("gs://b/models/fruit", "latest")
    assert split_alias("/srv/fruit/@latest#sha256=" + "a" * 64) == ("/srv/fruit#sha256=" + "a" * 64, "latest")
    assert split_alias("gs://b/m@v2") == ("gs://b/m@v2", None)
    assert split_alias("hf://org/repo@latest") == ("hf://org/repo@latest", None)  # a Hugging Face revision
    assert split_alias("https://user@host/m/1") == ("https://user@host/m/1", None)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_latest_is_the_newest_published_version(modules_dir, tmp_path, cache_dir, where):
    dest = str(tmp_path / "models" / "linear") if where == "local" else f"memory://registry/{tmp_path.name}"
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    assert beam_hub.resolve_version(f"{dest}@latest") == f"{dest}/2.tar.gz"
    np.testing.assert_allclose(beam_hub.load(f"{dest}@latest")(X), [[28.0]])  # version 2 doubles
    keys = sorted(n for n in os.listdir(cache_dir) if len(n) == 40)
    assert keys == [cache_key(f"{dest}/2.tar.gz")]  # nothing cached under the alias
    beam_hub.publish(modules_dir["one_input"], dest)
    assert beam_hub.resolve(f"{dest}@latest").endswith(cache_key(f"{dest}/3.tar.gz"))


def test_latest_of_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(ModuleNotFoundAtHandleError, match="no version is published"):
        beam_hub.resolve_version(str(tmp_path / "empty") + "@latest")


def test_a_pipeline_pins_the_version_when_it_is_built(modules_dir, tmp_path, caplog):
    dest = str(tmp_path / "models")
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    with caplog.at_level(logging.INFO, logger="beam_hub"):
        transform = beam_hub.ApplyHubModule(f"{dest}@latest")
    assert f"{dest}@latest is {dest}/2.tar.gz" in caplog.text
    beam_hub.publish(modules_dir["one_input"], dest)  # version 3 appears mid-job

    def build(p):
        out = p | beam.Create([X[0]] * 4) | transform | beam.Map(lambda a: a.tolist())
        assert_that(out, equal_to([[28.0]] * 4))  # every worker applies version 2

    run_pipeline(build)


@pytest.mark.parametrize(
    "status, location, match",
    [(302, "http://elsewhere.example/acme/m/9", "off its host"), (200, None, "not a redirect")],
)
def test_a_server_cannot_send_latest_elsewhere(server, status, location, match):
    from beam_hub.errors import DownloadError

    if location is None:
        server.add("/acme/m/latest", b"<html>a page</html>", protocol=False)
    else:
        server.add("/acme/m/latest", b"", mode="redirect", statuses=[status], location=location)
    with pytest.raises(DownloadError, match=match):
        beam_hub.resolve_version(server.url + "/acme/m@latest")
