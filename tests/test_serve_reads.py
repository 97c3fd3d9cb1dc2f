"""`beam-hub serve` reads the modules it serves and never runs them: no TensorFlow in its process,
no SavedModel load, signatures for every module (one the audit flags, one that cannot load here,
TF1, Keras), and memory that stays small over hundreds of modules."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

import modules
from beam_hub.signature_defs import read_signatures
from helpers import REPO, Served, get, get_no_redirect

WATCHED = os.path.join(REPO, "tests", "serve_watched.py")


def watched(root: str, mode: str, log: str, tmp_path) -> Served:
    return Served(root, pack_dir=str(tmp_path / "packs"), launcher=(WATCHED, mode, log))


def visit_watched(root: str, mode: str, tmp_path) -> dict[str, dict]:
    """visit_everything() on a server watched in ``mode`` (serve_watched.py), which must not have
    written to its log (no TensorFlow import, or no load) nor a traceback."""
    log = str(tmp_path / f"{mode}.log")
    served = watched(root, mode, log, tmp_path)
    try:
        seen = visit_everything(served.url)
    finally:
        err = served.stop()
    assert not os.path.exists(log), open(log).read()
    assert "Traceback" not in err, err
    return seen


@pytest.fixture(scope="module")
def root(tmp_path_factory, modules_dir, archives):
    root = tmp_path_factory.mktemp("hub")
    for name in ("fruit", "keras", "tf1", "custom_op"):
        shutil.copytree(modules_dir[name], root / "acme" / name / "1")
    shutil.copytree(modules_dir["one_input_x2"], root / "acme" / "fruit" / "2")
    modules.make_load_counter(str(root / "acme" / "counter" / "1"), str(tmp_path_factory.mktemp("loads")))
    os.makedirs(root / "acme" / "packed")
    shutil.copy(archives["one_input"], root / "acme" / "packed" / "1.tar.gz")  # served as an archive only
    return str(root)


SERVED = ["fruit/1", "fruit/2", "keras/1", "tf1/1", "custom_op/1", "counter/1", "packed/1"]


def visit_everything(url: str) -> dict[str, dict]:
    """Every kind of request a hub answers; the API's view of each version."""
    assert get(url + "/")[0] == 200
    assert get(url + "/api/modules?q=acme")[0] == 200
    assert get(url + "/acme/fruit")[0] == 200
    status, headers = get_no_redirect(url + "/acme/fruit/latest")[:2]
    assert status == 302 and headers["Location"].endswith("/acme/fruit/2")
    seen = {}
    for path in SERVED:
        status, _, page = get(f"{url}/acme/{path}")
        assert status == 200, path
        assert "<table id='signatures'>" in page.decode(), path
        status, _, body = get(f"{url}/api/modules/acme/{path}")
        assert status == 200, path
        seen[path] = json.loads(body)
        status, _, archive = get(f"{url}/acme/{path}?tf-hub-format=compressed")
        assert status == 200 and archive[:2] == b"\x1f\x8b", path
    return seen


def as_read(module_dir: str) -> dict:
    return {
        n: {"inputs": s["inputs"], "outputs": s["outputs"]} for n, s in read_signatures(module_dir).items()
    }


def test_the_server_process_never_imports_tensorflow(root, modules_dir, tmp_path):
    seen = visit_watched(root, "no-tensorflow", tmp_path)
    for path, name in [
        ("fruit/1", "fruit"),
        ("keras/1", "keras"),
        ("tf1/1", "tf1"),
        ("custom_op/1", "custom_op"),
    ]:
        assert seen[path]["signatures"] == as_read(modules_dir[name]), path
    assert "__call__" in seen["fruit/1"]["signatures"]  # from the saved object graph
    # a module that needs a custom op this TensorFlow lacks: its signatures, and the audit says why
    assert seen["custom_op/1"]["signatures"]["default"]["inputs"] == {
        "x": {"dtype": "float32", "shape": [None, 3]}
    }
    assert {f["op"] for f in seen["custom_op/1"]["audit"]["findings"]} == {"CaseFoldUTF8"}
    assert seen["custom_op/1"]["audit"]["op_registry"].startswith("TensorFlow ")
    # one the audit flags (it writes a file when loaded): its signatures too
    assert [f["op"] for f in seen["counter/1"]["audit"]["findings"]] == ["WriteFile"]
    assert seen["counter/1"]["signatures"]["default"]["outputs"] == {
        "default": {"dtype": "float32", "shape": [None, 1]}
    }
    assert seen["packed/1"]["signatures"] == as_read(modules_dir["one_input"])
    # the audit names a module by its URL path, never by where the server keeps it
    assert {seen[p]["audit"]["path"] for p in SERVED} == {f"acme/{p}" for p in SERVED}


def test_a_server_with_tensorflow_still_never_loads_a_module(root, tmp_path):
    """TensorFlow imported in the server (as in a process that also runs jobs), every loader
    replaced by one that raises: pages, signatures and audits all the same."""
    seen = visit_watched(root, "no-load", tmp_path)
    assert all(seen[path]["signatures"] for path in SERVED)
    assert seen["custom_op/1"]["audit"]["findings"] and seen["fruit/1"]["audit"]["findings"] == []


def test_the_tf1_page_shows_its_empty_tag_set(root, tmp_path):
    served = Served(root, pack_dir=str(tmp_path / "packs"))
    try:
        page = get(served.url + "/acme/tf1/1")[2].decode()
        fruit = get(served.url + "/acme/fruit/1")[2].decode()
    finally:
        served.stop()
    assert "<td>(none)</td>" in page  # the TF1 Hub format's default graph has no tags
    assert "<td>serve</td>" in fruit and "apples: float32[?, 3]" in fruit


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_hundred_module_pages_keep_the_server_small(modules_dir, tmp_path):
    root = tmp_path / "hub"
    for i in range(200):  # 200 distinct modules: the same graph, each with its own asset
        module = root / f"org{i // 20}" / f"model{i}" / "1"
        shutil.copytree(modules_dir["fruit"], module)
        os.makedirs(module / "assets", exist_ok=True)
        (module / "assets" / "id.txt").write_text(f"module {i}\n")
    log = str(tmp_path / "imports.log")
    served = watched(str(root), "no-tensorflow", log, tmp_path)
    try:
        for i in range(200):
            path = f"org{i // 20}/model{i}/1"
            status, _, body = get(f"{served.url}/api/modules/{path}")
            assert status == 200 and "fruit_to_pet" in json.loads(body)["signatures"], path
            assert get(f"{served.url}/{path}")[0] == 200
        rss = _rss_mb(served.proc.pid)
    finally:
        served.stop()
    assert not os.path.exists(log), open(log).read()
    assert rss < 300, f"the server holds {rss:.0f} MB after 200 module pages"


def test_inspections_are_kept_for_the_most_recently_viewed_versions_only(modules_dir, tmp_path):
    from beam_hub.serve.inspection import Inspections
    from beam_hub.serve.store import ModuleStore

    for i in range(3):
        shutil.copytree(modules_dir["one_input"], tmp_path / "hub" / "acme" / f"m{i}" / "1")
        (tmp_path / "hub" / "acme" / f"m{i}" / "1" / "assets").mkdir(exist_ok=True)
        (tmp_path / "hub" / "acme" / f"m{i}" / "1" / "assets" / "id.txt").write_text(str(i))
    store = ModuleStore(str(tmp_path / "hub"), str(tmp_path / "packs"))
    kept = Inspections(limit=2)

    def inspect(i: int):
        module = store.find(f"acme/m{i}/1")
        return kept.get(module, store.archive(module))

    first = [inspect(0), inspect(1)]
    assert inspect(0) is first[0]  # viewed again: kept, and now the most recent
    third = inspect(2)
    assert len(kept) == 2 and third.signatures["default"]["inputs"]["x"]["shape"] == [None, 3]
    assert inspect(0) is first[0]
    assert inspect(1) is not first[1] and inspect(1).signatures == first[1].signatures  # read again


def test_an_archive_is_read_for_its_graph_not_extracted_or_cached(tmp_path, cache_dir):
    """A published version is an archive: the page reads its graph files out of it; its
    variables are never written, nothing enters a cache, no temporary file is left."""
    from beam_hub.archive import pack

    module = modules.make_weights(str(tmp_path / "weights"), 8)
    os.makedirs(tmp_path / "hub" / "acme" / "big")
    pack(module, str(tmp_path / "hub" / "acme" / "big" / "1.tar.gz"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    served = Served(str(tmp_path / "hub"), pack_dir=str(tmp_path / "packs"), env={"TMPDIR": str(scratch)})
    try:
        data = json.loads(get(served.url + "/api/modules/acme/big/1")[2])
        page = get(served.url + "/acme/big/1")[2].decode()
    finally:
        served.stop()
    assert data["signatures"] == as_read(module) and data["audit"]["findings"] == []
    assert "<table id='signatures'>" in page
    assert not os.path.exists(cache_dir) or os.listdir(cache_dir) == []
    assert os.listdir(scratch) == []
