"""DEST@latest: the newest published version, resolved once, never cached under the alias."""

import logging
import os
import shutil

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


def test_split_alias_takes_a_trailing_latest_or_alias_name():
    assert split_alias("gs://b/models/fruit@latest") == ("gs://b/models/fruit", "latest")
    assert split_alias("/srv/fruit/@latest#sha256=" + "a" * 64) == ("/srv/fruit#sha256=" + "a" * 64, "latest")
    assert split_alias("gs://b/m@champion") == ("gs://b/m", "champion")
    assert split_alias("gs://b/m@2x.tar.gz") == ("gs://b/m@2x.tar.gz", None)  # not an alias name
    assert split_alias("gs://b/m@v2/saved_model") == ("gs://b/m@v2/saved_model", None)
    assert split_alias("hf://org/repo@latest") == ("hf://org/repo@latest", None)  # a Hugging Face revision
    assert split_alias("https://user@host/m/1") == ("https://user@host/m/1", None)
    assert split_alias("https://user@host") == ("https://user@host", None)


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


def serving_base(put, one_input, one_input_x2) -> None:
    """A TF Serving / TFX Pusher base path: whole versions 1 and 1733300000 (a push time), and two
    newer ones still being written: one without saved_model.pb, one missing a variable shard."""
    put(one_input, "1")
    put(one_input_x2, "1733300000")
    put(os.path.join(one_input, "variables"), "1733300500/variables")
    put(one_input, "1733300900")


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_latest_of_a_tf_serving_base_path_is_its_highest_whole_version(
    modules_dir, tmp_path, where, request, caplog
):
    if where == "local":
        base = str(tmp_path / "serving" / "linear")

        def put(src, rel):
            shutil.copytree(src, os.path.join(base, rel))

        def remove(rel):
            os.unlink(os.path.join(base, rel))
    else:
        base = request.getfixturevalue("bucket") + "/serving/linear"
        fs = request.getfixturevalue("gcs")

        def put(src, rel):
            fs.put(src + "/", f"{base}/{rel}/", recursive=True)

        def remove(rel):
            fs.rm(f"{base}/{rel}")

    serving_base(put, modules_dir["one_input"], modules_dir["one_input_x2"])
    remove("1733300900/variables/variables.data-00000-of-00001")
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        assert beam_hub.resolve_version(f"{base}@latest") == f"{base}/1733300000"
    assert "skipped 1733300900/ (variables/variables.data-* shards are missing" in caplog.text
    assert "1733300500/ (saved_model.pb is missing" in caplog.text
    np.testing.assert_allclose(beam_hub.load(f"{base}@latest")(X), [[28.0]])
    np.testing.assert_allclose(beam_hub.load(f"{base}/1")(X), [[14.0]])  # a version loads as any directory
    # publishing next to the Pusher never reuses a number, whole or not
    assert beam_hub.publish(modules_dir["one_input"], base) == f"{base}/1733300901.tar.gz"
    assert beam_hub.resolve_version(f"{base}@latest") == f"{base}/1733300901.tar.gz"


def test_latest_of_a_base_path_with_only_unfinished_versions_says_so(modules_dir, tmp_path):
    base = str(tmp_path / "serving")
    shutil.copytree(os.path.join(modules_dir["one_input"], "variables"), os.path.join(base, "7", "variables"))
    with pytest.raises(
        ModuleNotFoundAtHandleError, match=r"no whole version under .* \(7/ \(saved_model.pb is missing"
    ):
        beam_hub.resolve_version(f"{base}@latest")
