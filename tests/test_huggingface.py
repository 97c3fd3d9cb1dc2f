"""hf://ORG/REPO[@REVISION][/SUBDIR] against a local stub of the Hugging Face Hub (hf_stub.py)."""

import logging
import os

import numpy as np
import pytest

import beam_hub
from beam_hub.cache import Manifest, cache_key
from beam_hub.errors import (
    DownloadError,
    IntegrityError,
    ModuleNotFoundAtHandleError,
    NotASavedModelError,
    OfflineCacheMissError,
    UnsafePathError,
    UnsupportedHandleError,
)
from helpers import run_cli
from hf_stub import BlobStorage, HubStub, read_tree

X = np.array([[1.0, 1.0, 1.0]], dtype=np.float32)


@pytest.fixture
def storage():
    server = BlobStorage()
    yield server
    server.stop()


@pytest.fixture
def hub(monkeypatch, storage):
    stub = HubStub(storage)
    monkeypatch.setenv("HF_ENDPOINT", stub.url)
    yield stub
    stub.stop()


@pytest.fixture
def fruit_repo(hub, one_input):
    """acme/fruit: a SavedModel at the top of main, beside a README and PyTorch weights."""
    repo = hub.add("acme/fruit")
    files = read_tree(one_input)
    files["README.md"] = b"# fruit\n"
    files["pytorch_model.bin"] = os.urandom(4096)
    repo.push(files)
    return repo


def _auth(headers: dict[str, str]) -> str | None:
    return {k.lower(): v for k, v in headers.items()}.get("authorization")


def _output(path: str) -> float:
    return float(np.asarray(beam_hub.load(path)(X))[0, 0])


def test_a_branch_is_resolved_to_its_commit_and_only_the_saved_model_is_fetched(hub, fruit_repo):
    path = beam_hub.resolve("hf://acme/fruit")
    commit = fruit_repo.refs["main"]
    assert os.path.basename(path) == cache_key(f"hf://acme/fruit@{commit}")
    assert Manifest.read(path).handle == f"hf://acme/fruit@{commit}"
    assert _output(path) == 6.0
    fetched = {p.rsplit(f"/resolve/{commit}/", 1)[1] for p in hub.file_requests()}
    assert "saved_model.pb" in fetched and "variables/variables.index" in fetched
    assert not fetched & {"pytorch_model.bin", "README.md"}  # the rest of the repo stays on the Hub
    assert not os.path.exists(os.path.join(path, "pytorch_model.bin"))


def test_a_moved_branch_is_fetched_once_and_a_commit_handle_never_again(hub, fruit_repo, modules_dir):
    first = fruit_repo.refs["main"]
    old = beam_hub.resolve("hf://acme/fruit@main")
    assert beam_hub.resolve("hf://acme/fruit@main") == old
    assert len(hub.file_requests()) == 4  # the second resolve only asked for the commit

    second = fruit_repo.push(read_tree(modules_dir["one_input_x2"]))  # main moves
    new = beam_hub.resolve("HF://Acme/Fruit@main")
    assert new != old and _output(new) == 12.0
    assert os.path.basename(new) == cache_key(f"hf://acme/fruit@{second}")
    assert len(hub.file_requests()) == 8
    beam_hub.resolve("hf://acme/fruit@main")
    assert len(hub.file_requests()) == 8

    seen = len(hub.requests)
    assert beam_hub.resolve(f"hf://acme/fruit@{first}") == old
    assert beam_hub.resolve(f"hf://ACME/fruit@{second}") == new
    assert len(hub.requests) == seen  # a cached commit handle asks the Hub nothing


def test_a_tag_and_a_subdirectory(hub, one_input):
    repo = hub.add("acme/nested")
    repo.push({**read_tree(one_input, "export/saved_model/"), "model.safetensors": b"\0" * 64}, ref="v1.0")
    path = beam_hub.resolve("hf://acme/nested@v1.0/export/saved_model")
    assert _output(path) == 6.0
    assert Manifest.read(path).handle == f"hf://acme/nested@{repo.refs['v1.0']}/export/saved_model"


def test_the_listing_is_followed_across_pages(hub, fruit_repo):
    hub.page_size = 2
    path = beam_hub.resolve("hf://acme/fruit")
    assert _output(path) == 6.0
    assert sum("/tree/" in p for p in hub.api_requests()) >= 3


def test_files_are_fetched_in_parallel(hub, one_input):
    files = read_tree(one_input)
    files.update({f"assets/vocab-{i}.txt": f"word{i}\n".encode() for i in range(6)})
    hub.add("acme/many").push(files)
    hub.file_delay = 0.3
    beam_hub.resolve("hf://acme/many")
    assert len(hub.file_requests()) == 10
    assert hub.max_parallel >= 4


def test_hf_token_goes_to_the_hub_only(hub, storage, one_input, monkeypatch):
    repo = hub.add("acme/private", private=True)
    repo.push(read_tree(one_input))
    hub.token = "hf_secret_token"
    with pytest.raises(ModuleNotFoundAtHandleError, match="no model repo acme/private.*HF_TOKEN"):
        beam_hub.resolve("hf://acme/private")

    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    path = beam_hub.resolve("hf://acme/private")
    assert _output(path) == 6.0
    hub_paths = [p for p, _, headers in hub.requests if _auth(headers) == "Bearer hf_secret_token"]
    assert any("/resolve/" in p for p in hub_paths) and any("/tree/" in p for p in hub_paths)
    assert storage.requests, "the LFS file was redirected to the storage host"
    assert all(_auth(headers) is None for _, _, headers in storage.requests)


def test_a_gated_repo_says_how_to_get_in(hub, one_input):
    hub.add("acme/gated", gated=True).push(read_tree(one_input))
    with pytest.raises(ModuleNotFoundAtHandleError, match="gated: accept its terms"):
        beam_hub.resolve("hf://acme/gated")


def test_an_unknown_revision_and_an_unknown_subdirectory(hub, fruit_repo):
    with pytest.raises(ModuleNotFoundAtHandleError, match="no branch, tag or commit 'nope'"):
        beam_hub.resolve("hf://acme/fruit@nope")
    with pytest.raises(ModuleNotFoundAtHandleError, match="no directory 'missing'"):
        beam_hub.resolve("hf://acme/fruit/missing")
    with pytest.raises(NotASavedModelError, match="names a file"):
        beam_hub.resolve("hf://acme/fruit/saved_model.pb")


@pytest.mark.parametrize("variable", ["BEAM_HUB_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_a_branch_uses_the_commit_it_last_named(hub, fruit_repo, monkeypatch, caplog, variable):
    online = beam_hub.resolve("hf://acme/fruit")
    fruit_repo.push({"README.md": b"moved on, never fetched"})
    monkeypatch.setenv(variable, "1")
    seen = len(hub.requests)
    with caplog.at_level(logging.INFO, logger="beam_hub"):
        assert beam_hub.resolve("hf://acme/fruit@main") == online
    assert len(hub.requests) == seen
    commit = Manifest.read(online).handle.split("@")[1]
    assert f"offline; using {commit}" in caplog.text

    with pytest.raises(OfflineCacheMissError, match="no commit of acme/other"):
        beam_hub.resolve("hf://acme/other")


def test_offline_without_a_recorded_ref_uses_the_newest_cached_commit(hub, fruit_repo, monkeypatch, caplog):
    commit = fruit_repo.refs["main"]
    path = beam_hub.resolve(f"hf://acme/fruit@{commit}")  # cached by commit: no ref for "main"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.INFO, logger="beam_hub"):
        assert beam_hub.resolve("hf://acme/fruit") == path
    assert "the newest cached commit of acme/fruit" in caplog.text


def test_an_unreachable_hub_falls_back_to_the_cached_commit(hub, fruit_repo, monkeypatch, caplog):
    path = beam_hub.resolve("hf://acme/fruit")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused
    with caplog.at_level(logging.WARNING, logger="beam_hub"):
        assert beam_hub.resolve("hf://acme/fruit") == path
    assert "the Hub cannot be reached" in caplog.text


def test_a_stalled_listing_is_given_up_on_and_retried(hub, fruit_repo, monkeypatch):
    monkeypatch.setenv("BEAM_HUB_READ_TIMEOUT", "1")
    hub.stall_tree = 1  # huggingface_hub lists trees with no timeout of its own
    path = beam_hub.resolve("hf://acme/fruit")
    assert _output(path) == 6.0
    assert sum("/tree/" in p for p in hub.api_requests()) == 2
    assert hub.abandoned == 1  # the client hung up on the stalled request instead of waiting on it


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"model.keras": b"PK..", "README.md": b"#"},
            r"Keras 3 model file \(model.keras\).*keras.saving.load_model",
        ),
        (
            {"model.safetensors": b"\0" * 32, "config.json": b"{}"},
            r"safetensors weights \(model.safetensors\).*transformers",
        ),
        ({"pytorch_model.bin": b"\0" * 32}, r"PyTorch weights \(pytorch_model.bin\)"),
        ({"tf_model.h5": b"\0" * 32}, r"TensorFlow weights for Transformers.*TFAutoModel"),
        ({"exports/1/saved_model.pb": b"\0", "README.md": b"#"}, r"use hf://acme/other/exports/1"),
    ],
)
def test_a_repo_without_a_saved_model_says_what_it_holds(hub, files, message, tmp_path):
    hub.add("acme/other").push(files)
    with pytest.raises(NotASavedModelError, match=message):
        beam_hub.resolve("hf://acme/other")
    assert not hub.file_requests()  # decided from the listing: nothing downloaded
    assert not [e for e in os.listdir(tmp_path / "cache") if len(e) == 40]


def test_a_repo_without_a_saved_model_is_one_line_on_the_command_line(hub, tmp_path):
    hub.add("acme/torch").push({"model.safetensors": b"\0" * 32})
    result = run_cli("resolve", "hf://acme/torch", env={"HF_ENDPOINT": hub.url}, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "safetensors weights" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- hostile Hub answers --------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "file", "oid": "0" * 40, "size": 3, "path": "variables/../../../outside.txt"},
        {"type": "file", "oid": "0" * 40, "size": 3, "path": "/etc/evil"},
    ],
)
def test_a_listing_cannot_write_outside_the_entry(hub, fruit_repo, entry, tmp_path):
    hub.extra_entries = [entry]
    with pytest.raises(UnsafePathError, match="refusing to copy it"):
        beam_hub.resolve("hf://acme/fruit")
    assert not hub.file_requests()
    assert not list(tmp_path.rglob("outside.txt"))


def test_a_listing_naming_files_outside_the_subdirectory_is_refused(hub, one_input):
    hub.add("acme/nested").push(read_tree(one_input, "a/"))
    hub.extra_entries = [{"type": "file", "oid": "0" * 40, "size": 3, "path": "b/variables/x"}]
    with pytest.raises(UnsafePathError, match="not inside it"):
        beam_hub.resolve("hf://acme/nested/a")


@pytest.mark.parametrize("lfs", [True, False], ids=["lfs-sha256", "git-blob-id"])
def test_a_file_that_is_not_what_the_listing_says_is_refused_and_nothing_cached(
    hub, fruit_repo, lfs, cache_dir
):
    files = fruit_repo.commits[fruit_repo.refs["main"]]
    name = "saved_model.pb" if lfs else "variables/variables.index"
    assert (len(files[name]) > 512) is lfs
    original = files[name]
    hub.tamper[name] = bytes([original[0] ^ 1]) + original[1:]  # same size, other bytes
    with pytest.raises(IntegrityError, match="sha256" if lfs else "git blob id"):
        beam_hub.resolve("hf://acme/fruit")
    assert not [e for e in os.listdir(cache_dir) if len(e) == 40]
    hub.tamper.clear()
    assert _output(beam_hub.resolve("hf://acme/fruit")) == 6.0  # nothing half-made was left behind


def test_a_file_longer_than_listed_is_cut_off(hub, fruit_repo):
    name = "variables/variables.index"
    hub.listed_sizes[name] = 10
    with pytest.raises(IntegrityError, match="more than the 10 bytes"):
        beam_hub.resolve("hf://acme/fruit")


@pytest.mark.parametrize("size", [-(10**12), "12"])
def test_a_listing_cannot_hide_bytes_from_the_cap(hub, fruit_repo, size):
    hub.listed_sizes["variables/variables.index"] = size  # a negative size would offset a huge file
    with pytest.raises(UnsafePathError, match="gives .* the size"):
        beam_hub.resolve("hf://acme/fruit")
    assert not hub.file_requests()


def test_a_listing_over_the_size_cap_is_refused_before_any_download(hub, fruit_repo, monkeypatch):
    monkeypatch.setenv("BEAM_HUB_MAX_EXTRACT_BYTES", "1000")
    with pytest.raises(UnsafePathError, match="BEAM_HUB_MAX_EXTRACT_BYTES"):
        beam_hub.resolve("hf://acme/fruit")
    assert not hub.file_requests()


@pytest.mark.parametrize(
    ("handle", "error", "message"),
    [
        ("hf://datasets/acme/fruit", UnsupportedHandleError, "names a dataset repo"),
        ("hf://acme", UnsupportedHandleError, "hf://ORG/REPO"),
        ("hf://acme/fruit#sha256=" + "0" * 64, UnsupportedHandleError, "pinned by its commit"),
    ],
)
def test_malformed_handles_are_refused_before_any_request(hub, handle, error, message):
    with pytest.raises(error, match=message):
        beam_hub.resolve(handle)
    assert not hub.requests


def test_a_revision_answered_without_a_commit_id_is_refused(hub, fruit_repo, monkeypatch):
    fruit_repo.refs["main"] = "../../etc"  # the stub answers whatever the ref names
    fruit_repo.commits["../../etc"] = {}
    with pytest.raises(DownloadError, match="without a commit id"):
        beam_hub.resolve("hf://acme/fruit")


def test_a_pipeline_pins_a_branch_to_its_commit_when_it_is_built(hub, fruit_repo, modules_dir, caplog):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from helpers import run_pipeline

    commit = fruit_repo.refs["main"]
    assert beam_hub.resolve_version("hf://acme/fruit/") == f"hf://acme/fruit@{commit}"
    with caplog.at_level(logging.INFO, logger="beam_hub"):
        transform = beam_hub.ApplyHubModule("hf://acme/fruit@main")
    assert f"hf://acme/fruit@main is commit {commit}" in caplog.text
    fruit_repo.push(read_tree(modules_dir["one_input_x2"]))  # main moves mid-job

    def build(p):
        out = p | beam.Create([X[0]] * 4) | transform | beam.Map(lambda a: a.tolist())
        assert_that(out, equal_to([[6.0]] * 4))  # every worker applies the commit pinned at build time

    run_pipeline(build)


def test_a_follower_of_a_branch_moves_with_it_and_downloads_only_when_it_moved(hub, fruit_repo, modules_dir):
    """follow=True on hf://org/repo@main: each poll is one API call; files only for a new commit."""
    from beam_hub.batch import ApplySpec
    from beam_hub.beam.shared_model import ModuleKey
    from beam_hub.beam.versions import follower_of

    spec = ApplySpec()
    follower = follower_of(
        "hf://acme/fruit@main",
        lambda concrete: ModuleKey(concrete).load(),
        spec,
        lambda module, batch: module.apply_batch(batch, spec),
        poll_seconds=60,
    )
    assert follower.compute([X[0]])[1][0].tolist() == [6.0]
    files = len(hub.file_requests())
    assert follower.poll() is False and len(hub.file_requests()) == files  # unmoved: no download
    second = fruit_repo.push(read_tree(modules_dir["one_input_x2"]))
    assert follower.poll() is True
    version, outputs = follower.compute([X[0]])
    assert (version, outputs[0].tolist()) == (f"hf://acme/fruit@{second}", [12.0])
