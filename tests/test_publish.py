import hashlib
import os

import fsspec
import numpy as np
import pytest

import beam_hub
from beam_hub.errors import NotASavedModelError, PublishError
from beam_hub.layout import versions
from helpers import run_cli


def test_versions_are_sequential_and_immutable(one_input, fruit, tmp_path):
    dest = str(tmp_path / "models" / "linear")
    first = beam_hub.publish(one_input, dest)
    assert first == f"{dest}/1.tar.gz"
    second = beam_hub.publish(fruit, dest)
    assert second == f"{dest}/2.tar.gz" and versions(dest) == [1, 2]
    before = open(first, "rb").read()
    with pytest.raises(PublishError, match="immutable"):
        beam_hub.publish(fruit, dest, version=1)
    assert open(first, "rb").read() == before  # the good version is untouched
    sidecar = open(first + ".sha256").read().split()
    assert sidecar == [hashlib.sha256(before).hexdigest(), "1.tar.gz"]
    assert sorted(os.listdir(dest)) == [
        "1.tar.gz",
        "1.tar.gz.sha256",
        "2.tar.gz",
        "2.tar.gz.sha256",
    ]  # no temp files


def test_published_handle_resolves_and_is_reproducible(one_input, tmp_path):
    a = beam_hub.publish(one_input, str(tmp_path / "a"))
    b = beam_hub.publish(one_input, str(tmp_path / "b"), version="2026.11")
    assert open(a, "rb").read() == open(b, "rb").read()
    np.testing.assert_allclose(beam_hub.load(a)(np.ones((1, 3), np.float32)), [[6.0]])


def test_failed_publish_changes_nothing(tmp_path, one_input):
    dest = str(tmp_path / "models")
    beam_hub.publish(one_input, dest)
    with pytest.raises(NotASavedModelError):
        beam_hub.publish(str(tmp_path), dest)
    with pytest.raises(PublishError, match="letters, digits"):
        beam_hub.publish(one_input, dest, version="../x")
    assert versions(dest) == [1] and sorted(os.listdir(dest)) == ["1.tar.gz", "1.tar.gz.sha256"]


def test_any_fsspec_destination(one_input, cache_dir):
    handle = beam_hub.publish(one_input, "memory://registry/linear")
    assert handle == "memory://registry/linear/1.tar.gz"
    assert fsspec.filesystem("memory").exists("/registry/linear/1.tar.gz.sha256")
    assert os.path.isfile(os.path.join(beam_hub.resolve(handle), "saved_model.pb"))


def test_publish_command_line(one_input, tmp_path):
    out = run_cli("publish", one_input, str(tmp_path / "m")).stdout.strip()
    assert out == f"{tmp_path}/m/1.tar.gz"
    proc = run_cli("publish", one_input, str(tmp_path / "m"), "--version", "1", check=False)
    assert proc.returncode == 2 and "immutable" in proc.stderr


def test_extracted_directory_beside_the_archive(one_input, tmp_path):
    dest = str(tmp_path / "m")
    handle = beam_hub.publish(one_input, dest, extracted=True)
    assert sorted(os.listdir(dest)) == ["1", "1.tar.gz", "1.tar.gz.sha256"]
    assert sorted(os.listdir(os.path.join(dest, "1"))) == sorted(os.listdir(one_input))
    assert beam_hub.resolve(os.path.join(dest, "1")) == os.path.join(dest, "1")
    assert handle == f"{dest}/1.tar.gz"
