"""Kaggle Models handles against local stubs of Kaggle and its signed storage (kaggle_stub.py)."""

import base64
import hashlib
import json
import logging
import os
import shutil

import pytest

import beam_hub
from beam_hub.cache import Manifest, cache_key
from beam_hub.errors import DownloadError
from kaggle_stub import KaggleStub, SignedStorage

FORMS = [
    "https://www.kaggle.com/models/acme/fruit/frameworks/tensorFlow2/variations/small/versions/3",
    "https://www.kaggle.com/models/acme/fruit/TensorFlow2/small/3",
    "kaggle://acme/fruit/tensorflow2/small/3",
]


@pytest.fixture
def kaggle(monkeypatch, one_input_tgz):
    storage = SignedStorage()
    stub = KaggleStub(storage)
    stub.add("acme", "fruit", "tensorFlow2", "small", 3, one_input_tgz)
    monkeypatch.setenv("BEAM_HUB_KAGGLE_URL", stub.url)
    yield stub
    stub.stop()
    storage.stop()


def test_every_form_of_a_version_shares_one_entry(kaggle, cache_dir, one_input_tgz):
    paths = {beam_hub.resolve(form) for form in FORMS}
    assert len(paths) == 1 and len(kaggle.calls()) == 1
    (path,) = paths
    assert os.path.basename(path) == cache_key("kaggle://acme/fruit/tensorflow2/small/3")
    assert kaggle.calls()[0][0] == "/models/acme/fruit/frameworks/tensorFlow2/variations/small/versions/3"
    assert Manifest.read(path).archive_sha256 == hashlib.sha256(one_input_tgz).hexdigest()


def test_kaggle_url_form_is_fetched_as_given(kaggle):
    beam_hub.resolve("kaggle://acme/fruit/tensorFlow2/small/3")
    path, query, _ = kaggle.calls()[0]
    assert path == "/models/acme/fruit/frameworks/tensorFlow2/variations/small/versions/3"
    assert query == {"tf-hub-format": "compressed"}


@pytest.mark.parametrize("how", ["token", "env", "kaggle.json"])
def test_credentials_go_to_kaggle_only_and_are_never_logged(kaggle, monkeypatch, tmp_path, caplog, how):
    if how == "token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_secret_token")
        expected, secret = "Bearer KGAT_secret_token", "KGAT_secret_token"
    else:
        secret = "s3cret-key"
        if how == "env":
            monkeypatch.setenv("KAGGLE_USERNAME", "ada")
            monkeypatch.setenv("KAGGLE_KEY", secret)
        else:
            config = tmp_path / "kaggle-config"
            config.mkdir()
            (config / "kaggle.json").write_text(json.dumps({"username": "ada", "key": secret}))
        expected = "Basic " + base64.b64encode(f"ada:{secret}".encode()).decode()
    kaggle.require = expected  # a private model
    with caplog.at_level(logging.DEBUG):
        path = beam_hub.resolve(FORMS[0])
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert [r[2].get("Authorization") for r in kaggle.calls()] == [expected]
    assert kaggle.storage.requests and all("Authorization" not in r[2] for r in kaggle.storage.requests)
    assert secret not in caplog.text


def test_a_private_model_without_credentials_is_a_clear_error(kaggle):
    kaggle.require = "Bearer something"
    with pytest.raises(DownloadError, match="HTTP 403.*Check access rights or credentials"):
        beam_hub.resolve(FORMS[2])


def test_an_expired_signed_url_starts_again_at_kaggle(kaggle, one_input_tgz, caplog):
    """The transfer breaks half-way and its signature expires: the resume asks Kaggle for a fresh one."""
    kaggle.storage.break_next = 1
    with caplog.at_level(logging.INFO, logger="beam_hub"):
        path = beam_hub.resolve(FORMS[1])
    assert Manifest.read(path).archive_sha256 == hashlib.sha256(one_input_tgz).hexdigest()
    assert len(kaggle.calls()) == 2  # a fresh signed URL for the resume
    blob_requests = [r for r in kaggle.storage.requests if r[0].startswith("/blob/")]
    assert [r[1]["X-Goog-Signature"] for r in blob_requests] == ["sig1", "sig2"]
    assert blob_requests[1][2]["Range"] == f"bytes={len(one_input_tgz) // 2}-"  # resumed, not restarted
    assert "Resuming" in caplog.text


def test_a_403_from_storage_is_retried_from_kaggle_a_bounded_number_of_times(kaggle, monkeypatch):
    kaggle.storage.live.clear()
    signed = kaggle.storage.sign
    kaggle.storage.sign = lambda name: signed(name).replace("sig", "expired")  # every URL is stale
    monkeypatch.setenv("BEAM_HUB_DOWNLOAD_RETRIES", "2")
    with pytest.raises(DownloadError, match=r"after 3 attempt\(s\).*HTTP 403"):
        beam_hub.resolve(FORMS[0])
    assert len(kaggle.calls()) == 3
    kaggle.storage.sign = signed  # one fresh URL is all it takes
    kaggle.storage.expire_on_use = True
    assert os.path.isfile(os.path.join(beam_hub.resolve(FORMS[0]), "saved_model.pb"))


def test_a_version_kagglehub_downloaded_is_used_in_place(kaggle, one_input, tmp_path):
    base = tmp_path / "kagglehub" / "models" / "acme" / "fruit" / "tensorFlow2" / "small"
    shutil.copytree(one_input, base / "3")
    assert beam_hub.resolve(FORMS[2]) != str(base / "3")  # no .complete marker: not kagglehub's whole copy
    assert len(kaggle.calls()) == 1
    (base / "3.complete").touch()
    for form in FORMS:
        assert beam_hub.resolve(form) == str(base / "3")
    assert len(kaggle.calls()) == 1  # nothing more downloaded


@pytest.mark.parametrize(
    "handle",
    ["kaggle://../../etc/passwd/x/1", "kaggle://acme/fruit/tf2/small", "kaggle://acme/.hidden/tf2/v/1"],
)
def test_a_malformed_kaggle_handle_is_refused_before_any_path_or_request(kaggle, handle):
    with pytest.raises(
        beam_hub.errors.UnsupportedHandleError, match="OWNER/MODEL/FRAMEWORK/VARIATION/VERSION"
    ):
        beam_hub.resolve(handle)
    assert kaggle.requests == []


def test_a_broken_kaggle_json_is_one_clear_error(kaggle, tmp_path):
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text('{"username": "ada"}')  # no key
    with pytest.raises(beam_hub.errors.ConfigError, match="is not a Kaggle credentials file"):
        beam_hub.resolve(FORMS[0])
    assert kaggle.requests == []
