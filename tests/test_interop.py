"""Whatever tensorflow_hub loads, beam-hub loads, with the same outputs.

Every archive here is packed by a real tool (GNU tar, bsdtar, Python's tarfile, git; see
``packers.py``) or holds a module written by a real producer (Keras 3, tf_keras, tf.saved_model
with assets, TF1's SavedModelBuilder; see ``producers.py``); none by beam-hub's ``pack``. Each
cell runs tensorflow_hub on the archive served over HTTP, in the same test, and expects beam-hub
to give the same outputs through a local path, HTTP, the shared gs:// tier and a gs:// archive
URL; where tensorflow_hub fails on what a person plainly meant (``Form.better``), beam-hub must
load the module anyway.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import beam_hub
from helpers import REPO
from packers import FORMS, GUIDE, LONG_VOCAB_NAME, gnu, have, require
from producers import PRODUCERS, Produced, assets_module


@pytest.fixture(scope="session")
def produced(tmp_path_factory) -> dict[str, Produced]:
    """One module from each producer, built once per session."""
    root = tmp_path_factory.mktemp("produced")
    return {name: make(str(root / name)) for name, make in PRODUCERS.items()}


@pytest.fixture(scope="session")
def bases(produced, tmp_path_factory) -> dict[str, Produced]:
    """The modules the archive forms pack (see packers.py)."""
    root = tmp_path_factory.mktemp("bases")
    short = produced["saved-model-assets"]
    long = assets_module(str(root / "long"), vocab_name=LONG_VOCAB_NAME)
    assert len(f"./assets/{LONG_VOCAB_NAME}") > 100
    sparse = str(root / "sparse")
    shutil.copytree(short.path, sparse)
    with open(os.path.join(sparse, "assets", "holes.bin"), "wb") as f:
        f.write(b"head")
        f.seek(1 << 20)
        f.write(b"tail")  # a hole of ~1 MB between: tar -S stores it as a sparse member
    linked = str(root / "linked")
    shutil.copytree(short.path, linked)
    os.link(os.path.join(linked, "assets", "vocab.txt"), os.path.join(linked, "assets", "vocab-copy.txt"))
    return {
        "short": short,
        "long": long,
        "sparse": Produced(sparse, short.signature, short.inputs),
        "linked": Produced(linked, short.signature, short.inputs),
    }


@pytest.fixture(scope="session")
def packed(bases, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("forms")
    out = {}
    for name, form in FORMS.items():
        if have(form.tool):  # the tests of a form whose tool is missing call require(), which says so
            out[name] = str(root / f"{name}{form.suffix}")
            form.pack(bases[form.base].path, out[name])
    return out


def _members(archive: str) -> list[tarfile.TarInfo]:
    with tarfile.open(archive, "r|*") as tar:
        return list(tar)


def _raw(archive: str) -> bytes:
    """The uncompressed tar stream (its headers, as the tool wrote them)."""
    with open(archive, "rb") as f:
        data = f.read()
    for opener in (gzip.decompress, bz2.decompress, lzma.decompress):
        try:
            return opener(data)
        except (OSError, ValueError, lzma.LZMAError):
            continue
    return data


# What each form is named for, read back from the archive the tool wrote: the matrix tests these
# archive features only if the tools really wrote them.
CLAIMS = {
    "gnu-guide": lambda m, raw: m[0].name == "." and all(x.name.startswith("./") for x in m[1:]),
    "gnu-ustar": lambda m, raw: raw[257:265] == b"ustar\x0000",
    "gnu": lambda m, raw: raw[257:265] == b"ustar  \x00",
    "gnu-posix": lambda m, raw: raw[156:157] == b"x",
    "gnu-long-names": lambda m, raw: b"././@LongLink" in raw,
    "gnu-posix-long-names": lambda m, raw: b" path=./assets/vocabulary-" in raw,
    "gnu-sparse": lambda m, raw: any(x.type == tarfile.GNUTYPE_SPARSE for x in m),
    "gnu-posix-sparse": lambda m, raw: b"GNU.sparse" in raw,
    "gnu-appended": lambda m, raw: [x.name for x in m].count("./saved_model.pb") == 2,
    "gnu-directory-twice": lambda m, raw: any(x.islnk() and x.linkname == x.name for x in m),
    "gnu-hard-linked-files": lambda m, raw: any(x.islnk() and x.linkname != x.name for x in m),
    "gnu-absolute-path": lambda m, raw: "/" in m[0].name and not m[0].name.startswith(("/", ".")),
    "gnu-files-before-directories": lambda m, raw: m[0].isfile() and m[-1].isdir(),
    "bsdtar": lambda m, raw: m[0].name == "." and raw[257:263] == b"ustar\x00",
    "bsdtar-names": lambda m, raw: not any(x.name.startswith(".") for x in m),
    "bsdtar-hard-linked-files": lambda m, raw: any(x.islnk() for x in m),
    "tarfile-empty-arcname": lambda m, raw: m[0].name == "" and m[0].isdir(),
    "tarfile-files-only": lambda m, raw: not any(x.isdir() for x in m),
    "git-archive": lambda m, raw: raw.startswith(b"pax_global_header"),
}


def test_the_forms_hold_what_they_are_named_for(packed):
    for name, claim in CLAIMS.items():
        require(FORMS[name].tool)
        assert claim(_members(packed[name]), _raw(packed[name])), name


def reference(module: Produced) -> dict[str, np.ndarray]:
    """The module's outputs, loaded straight from the directory its producer wrote."""
    import tensorflow as tf

    fn = tf.saved_model.load(module.path).signatures[module.signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in module.inputs.items()}).items()}


def tfhub(handle: str, module: Produced, cache: str, monkeypatch) -> dict[str, np.ndarray] | Exception:
    """What tensorflow_hub 0.16 gives for ``handle``: the outputs, or the error it raised."""
    import tensorflow as tf
    import tensorflow_hub as hub

    monkeypatch.setenv("TFHUB_CACHE_DIR", cache)
    try:
        fn = hub.load(handle).signatures[module.signature]
        return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in module.inputs.items()}).items()}
    except Exception as e:  # noqa: BLE001 - the failure is the result
        return e


def ours(handle: str, module: Produced, **where) -> dict[str, np.ndarray]:
    return beam_hub.load(handle, **where)(module.inputs, signature=module.signature, as_dict=True)


def assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], what: str) -> None:
    assert sorted(got) == sorted(expected), what
    for key in expected:
        assert got[key].dtype == expected[key].dtype, (what, key)
        np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{what}: {key}")


def through_every_transport(
    archive: str, module: Produced, name: str, server, bucket, tmp_path
) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """(the HTTP URL serving ``archive``, beam-hub's outputs through each way of reaching it)."""
    import fsspec

    with open(archive, "rb") as f:
        body = f.read()
    path = f"/models/{name}/1"
    url = server.add(path, body)  # answers ?tf-hub-format=compressed, as tfhub.dev and Kaggle do
    got = {
        "local path": ours(archive, module, cache_dir=str(tmp_path / "local")),
        "http": ours(url, module, cache_dir=str(tmp_path / "http")),
    }
    shared = f"{bucket}/hub-cache"
    beam_hub.resolve(url, cache_dir=shared, local_cache_dir=str(tmp_path / "tier-1"))
    gets = server.gets(path)
    from_tier = beam_hub.resolve(url, cache_dir=shared, local_cache_dir=str(tmp_path / "tier-2"))
    assert server.gets(path) == gets, "the second machine must copy the module from the shared tier"
    got["shared gs:// tier"] = ours(from_tier, module)
    remote = f"{bucket}/archives/{os.path.basename(archive)}"
    fsspec.filesystem("gs").put_file(archive, remote)
    got["gs:// archive"] = ours(remote, module, cache_dir=str(tmp_path / "gs"))
    return url, got


@pytest.mark.parametrize("name", sorted(FORMS))
def test_an_archive_packed_by_a_real_tool(name, packed, bases, server, bucket, tmp_path, monkeypatch):
    form = FORMS[name]
    require(form.tool)
    module = bases[form.base]
    url, got = through_every_transport(packed[name], module, name, server, bucket, tmp_path)
    theirs = tfhub(url, module, str(tmp_path / "tfhub"), monkeypatch)
    if form.better:  # tensorflow_hub fails on it; beam-hub loads the module its producer wrote
        assert isinstance(theirs, Exception), f"tensorflow_hub now loads {name}: drop its 'better'"
        assert re.search(form.better.error, str(theirs)), f"{name}: not {form.better.why}: {theirs!r}"
        expected = reference(module)
    else:
        assert not isinstance(theirs, Exception), f"tensorflow_hub fails on {name}: {theirs!r}"
        expected = theirs
        assert_same(theirs, reference(module), f"tensorflow_hub on {name}")
    for transport, outputs in got.items():
        assert_same(outputs, expected, f"{name} through {transport}")


@pytest.mark.parametrize("name", sorted(PRODUCERS))
def test_a_module_written_by_a_real_producer(name, produced, server, bucket, tmp_path, monkeypatch):
    module = produced[name]
    archive = str(tmp_path / f"{name}.tar.gz")
    gnu("-z", *GUIDE)(module.path, archive)  # the hosting guide's command, verbatim
    url, got = through_every_transport(archive, module, name, server, bucket, tmp_path)
    theirs = tfhub(url, module, str(tmp_path / "tfhub"), monkeypatch)
    assert not isinstance(theirs, Exception), f"tensorflow_hub fails on {name}: {theirs!r}"
    assert_same(theirs, reference(module), f"tensorflow_hub on {name}")
    for transport, outputs in got.items():
        assert_same(outputs, theirs, f"{name} through {transport}")
    signatures = beam_hub.load(url, cache_dir=str(tmp_path / "http")).signatures
    assert {n: (sorted(s.inputs), sorted(s.outputs)) for n, s in signatures.items() if n != "__call__"} == {
        n: (sorted(i), sorted(o)) for n, (i, o) in module.signatures.items()
    }


def test_inspect_shows_every_producers_signatures(produced):
    """`beam-hub inspect` on each producer's module (the four run side by side)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "beam_hub", "inspect", "--json", module.path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for name, module in produced.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        shown = json.loads(out)["signatures"]
        for sig, (inputs, outputs) in produced[name].signatures.items():
            for side, expected in (("inputs", inputs), ("outputs", outputs)):
                assert {k: (v["dtype"], v["shape"]) for k, v in shown[sig][side].items()} == expected, (
                    name,
                    sig,
                )


@pytest.mark.parametrize("name", ["tf-keras-save", "saved-model-assets"])
def test_a_kaggle_model_packed_with_the_guides_command(name, produced, tmp_path, monkeypatch):
    """Kaggle's archives hold './' entries; tensorflow_hub reads them through the same stub."""
    from kaggle_stub import KaggleStub, SignedStorage

    module = produced[name]
    archive = str(tmp_path / "model.tar.gz")
    gnu("-z", *GUIDE)(module.path, archive)
    assert _members(archive)[0].name == "."
    storage = SignedStorage()
    kaggle = KaggleStub(storage)
    try:
        with open(archive, "rb") as f:
            path = kaggle.add("acme", "classifier", "tensorFlow2", "default", 2, f.read())
        monkeypatch.setenv("BEAM_HUB_KAGGLE_URL", kaggle.url)
        theirs = tfhub(kaggle.url + path, module, str(tmp_path / "tfhub"), monkeypatch)
        assert not isinstance(theirs, Exception), theirs
        for handle in ("kaggle://acme/classifier/tensorFlow2/default/2", kaggle.url + path):
            assert_same(ours(handle, module, cache_dir=str(tmp_path / "ours")), theirs, handle)
    finally:
        kaggle.stop()
        storage.stop()


@pytest.mark.parametrize("name", ["keras3-export", "tf-keras-save"])
def test_a_saved_model_in_a_subfolder_of_a_hugging_face_repo(name, produced, tmp_path, monkeypatch):
    """A repo as Keras users push one: the SavedModel its producer wrote in a subfolder, beside a
    README, a config and other weights; tensorflow_hub loads the same files from disk."""
    from hf_stub import BlobStorage, HubStub, read_tree

    module = produced[name]
    storage = BlobStorage()
    hub = HubStub(storage)
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        files = read_tree(module.path, "exports/saved_model/1/")
        files.update(
            {"README.md": b"# classifier\n", "config.json": b"{}", "model.weights.h5": os.urandom(2048)}
        )
        hub.add("acme/classifier").push(files)
        theirs = tfhub(module.path, module, str(tmp_path / "tfhub"), monkeypatch)
        assert not isinstance(theirs, Exception), theirs
        got = ours("hf://acme/classifier/exports/saved_model/1", module, cache_dir=str(tmp_path / "ours"))
        assert_same(got, theirs, f"hf:// {name}")
    finally:
        hub.stop()
        storage.stop()
