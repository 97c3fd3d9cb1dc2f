import hashlib
import json
import os
import subprocess
import sys

from helpers import REPO, run_cli

NO_HEAVY_IMPORTS = (
    "import sys, beam_hub\n"
    "print(beam_hub.resolve(sys.argv[1]))\n"
    "from beam_hub.cache import LocalCache; LocalCache().entries(); LocalCache().verify()\n"
    "import beam_hub.cli\n"
    "heavy = [m for m in ('tensorflow', 'apache_beam', 'keras', 'numpy') if m in sys.modules]\n"
    "assert not heavy, heavy\n"
)


def test_import_resolve_and_cache_do_not_import_tensorflow_or_beam(server, one_input_tgz):
    url = server.add("/m", one_input_tgz)
    proc = subprocess.run(
        [sys.executable, "-c", NO_HEAVY_IMPORTS, url],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(os.path.join(proc.stdout.strip(), "saved_model.pb"))


def test_resolve_prints_the_path(server, one_input_tgz, cache_dir):
    url = server.add("/m", one_input_tgz)
    out = run_cli("resolve", url).stdout.strip()
    assert out == os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    out2 = run_cli("--cache-dir", cache_dir + "2", "resolve", url).stdout.strip()
    assert out2.startswith(cache_dir + "2")


def test_resolve_error_is_one_clear_line(server):
    proc = run_cli("resolve", server.url + "/missing.tar.gz", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("beam-hub: error: Nothing found at") and "Traceback" not in proc.stderr


def test_inspect_reads_the_signatures_and_loads_only_when_asked(fruit):
    out = run_cli("inspect", fruit).stdout
    assert "signature 'fruit_to_pet' (graph: serve):" in out and "nothing loaded" in out
    assert "input   apples: float32[?, 3]" in out and "output  dogs: float32[?, 1]" in out
    assert "default: __call__" in out
    data = json.loads(run_cli("inspect", "--json", fruit).stdout)
    assert data["signatures"]["name_length"]["inputs"] == {"names": {"dtype": "string", "shape": [None]}}
    assert data["loaded"] is False
    loaded = json.loads(run_cli("inspect", "--json", "--load", fruit).stdout)
    assert loaded["loaded"] is True and loaded["default"] == data["default"]
    assert loaded["signatures"] == {
        name: {"inputs": s["inputs"], "outputs": s["outputs"]} for name, s in data["signatures"].items()
    }
    out = run_cli("inspect", "--load", fruit).stdout
    assert "signature 'fruit_to_pet':" in out and "variables: " in out


def test_inspect_imports_no_tensorflow_unless_loading(fruit):
    code = (
        "import sys; from beam_hub.cli import main; main(['inspect', sys.argv[1]]); "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'tensorflow'], 'tensorflow imported'"
    )
    done = subprocess.run([sys.executable, "-c", code, fruit], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "fruit_to_pet" in done.stdout, done.stderr


def test_inspect_a_module_that_cannot_load_here(modules_dir):
    out = run_cli("inspect", modules_dir["custom_op"]).stdout
    assert "input   x: float32[?, 3]" in out
    proc = run_cli("inspect", "--load", modules_dir["custom_op"], check=False)
    assert proc.returncode == 2 and "tensorflow-text" in proc.stderr and "Traceback" not in proc.stderr


def test_inspect_a_tf1_module_by_its_tags(modules_dir):
    out = run_cli("inspect", modules_dir["tf1"]).stdout
    assert "format:  TF1 Hub format" in out and "(graph: no tags)" in out
    proc = run_cli("inspect", modules_dir["tf1"], "--tags", "train", check=False)
    assert proc.returncode == 2 and "no graph tagged ['train']" in proc.stderr and "[[]]" in proc.stderr


def test_cache_commands(server, one_input_tgz, cache_dir):
    url = server.add("/m", one_input_tgz)
    path = run_cli("resolve", url).stdout.strip()
    listing = run_cli("cache", "list").stdout
    assert url in listing and os.path.basename(path) in listing and "1 entries" in listing
    assert "1 whole, 0 damaged" in run_cli("cache", "verify").stdout
    data = [f for f in os.listdir(os.path.join(path, "variables")) if f.startswith("variables.data")][0]
    with open(os.path.join(path, "variables", data), "r+b") as f:
        f.write(b"\xde\xad")
    proc = run_cli("cache", "verify", check=False)
    assert proc.returncode == 1 and "DAMAGED" in proc.stdout and "content differs" in proc.stdout
    assert not os.path.exists(path)  # removed, so the next resolve fetches it again
    assert run_cli("resolve", url).stdout.strip() == path and server.gets("/m") == 2
    assert "removed 0 entries" in run_cli("cache", "prune", "--older-than", "30").stdout
    assert "removed 1 entries" in run_cli("cache", "clear").stdout
    assert not os.path.exists(path)


def test_pack_is_reproducible_from_the_command_line(one_input, tmp_path):
    a = run_cli("pack", one_input, str(tmp_path / "a.tar.gz")).stdout.split()[0]
    b = run_cli("pack", one_input, str(tmp_path / "b.tar.gz")).stdout.split()[0]
    assert a == b == hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()
    proc = run_cli("pack", str(tmp_path), str(tmp_path / "c.tar.gz"), check=False)
    assert proc.returncode == 2 and "saved_model.pb" in proc.stderr


def test_a_malformed_setting_is_one_line_naming_it(server, one_input_tgz):
    url = server.add("/m", one_input_tgz)
    for name, value in (
        ("BEAM_HUB_READ_TIMEOUT", "soon"),
        ("TFHUB_MODEL_LOAD_FORMAT", "zip"),
        ("BEAM_HUB_DOWNLOAD_RETRIES", "-1"),
    ):
        proc = run_cli("resolve", url, env={name: value}, check=False)
        assert proc.returncode == 2, (name, proc.stderr)
        assert proc.stderr.startswith(f"beam-hub: error: {name}=") and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert server.gets("/m") == 0


FILTERED = """
import os, subprocess, sys
from beam_hub.native_stderr import NativeStderrFilter
f = NativeStderrFilter()
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1795783812.829856   30445 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"E0000 00:00:1795783815.156502   30445 cuda_platform.cc:52] failed call to cuInit: INTERNAL\\n")
os.write(2, b"E0000 00:00:1795783815.156502   30445 other.cc:9] a real native error\\n")
os.write(2, b"progress 50%\\r")
subprocess.run([sys.executable, "-c", "import os; os.write(2, b'I0000 00:00:1.0 1 x.cc:1] child noise\\\\nchild line\\\\n')"])
print("python line", file=sys.stderr)
f.close()
"""


def test_native_start_up_noise_is_filtered_and_the_rest_passes():
    proc = subprocess.run([sys.executable, "-c", FILTERED], capture_output=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        b"E0000 00:00:1795783815.156502   30445 other.cc:9] a real native error\n"
        b"progress 50%\rchild line\npython line\n"
    )
