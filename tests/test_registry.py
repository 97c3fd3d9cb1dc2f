"""The audit tells TensorFlow's ops from unknown ones without importing TensorFlow into the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO

_SCAN = """
import json, sys
from beam_hub.safety import registry
from beam_hub.safety.scan import scan_saved_model
if sys.argv[2] == "no-tensorflow":
    registry.tensorflow_version = lambda: None
report = scan_saved_model(sys.argv[1])
print(json.dumps({
    "ops": sorted({(f.op, f.kind) for f in report.findings}),
    "registry": report.op_registry,
    "summary": report.summary(),
    "tensorflow": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"),
}))
"""


def scan(path: str, cache: str, mode: str = "") -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    out = subprocess.run(
        [sys.executable, "-c", _SCAN, path, mode], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_unknown_ops_found_without_tensorflow_in_the_process(modules_dir, tmp_path):
    cache = str(tmp_path / "xdg")
    first = scan(modules_dir["custom_op"], cache)
    assert first["ops"] == [["CaseFoldUTF8", "custom op"]]
    assert first["registry"].startswith("TensorFlow 2.") and first["tensorflow"] == []
    (kept,) = os.listdir(os.path.join(cache, "beam_hub_tensorflow_ops"))
    listing = os.path.join(cache, "beam_hub_tensorflow_ops", kept)
    names = open(listing).read().split("\n")
    assert "MatMul" in names and "CaseFoldUTF8" not in names and len(names) > 1000
    os.utime(listing, (1, 1))  # the next process reads the list: no child asks again
    assert scan(modules_dir["one_input"], cache)["ops"] == []
    assert os.stat(listing).st_mtime == 1


def test_a_damaged_op_list_is_asked_for_again(modules_dir, tmp_path):
    cache = str(tmp_path / "xdg")
    scan(modules_dir["one_input"], cache)
    (kept,) = os.listdir(os.path.join(cache, "beam_hub_tensorflow_ops"))
    listing = os.path.join(cache, "beam_hub_tensorflow_ops", kept)
    with open(listing, "w") as f:
        f.write("MatMul\n<script>")  # truncated, and not op names
    assert scan(modules_dir["custom_op"], cache)["ops"] == [["CaseFoldUTF8", "custom op"]]
    assert len(open(listing).read().split("\n")) > 1000


def test_without_tensorflow_the_report_says_unknown_ops_were_not_checked(modules_dir, tmp_path):
    found = scan(modules_dir["custom_op"], str(tmp_path / "xdg"), "no-tensorflow")
    assert found["ops"] == [] and found["registry"] == ""
    assert "unknown ops not checked" in found["summary"]
    assert not os.path.exists(tmp_path / "xdg" / "beam_hub_tensorflow_ops")


def test_in_a_process_with_tensorflow_its_live_registry_is_asked(modules_dir):
    import tensorflow

    from beam_hub.safety.registry import registered_ops

    registry = registered_ops()
    assert registry.known("MatMul") and not registry.known("CaseFoldUTF8")
    assert registry.source == f"TensorFlow {tensorflow.__version__}"


_AUDIT_ENTRY = """
import json, sys
import beam_hub
from beam_hub.cache import Manifest
from beam_hub.safety import policy, registry
if sys.argv[2] == "child-fails":
    registry._ask_tensorflow = lambda version: None
path = beam_hub.resolve(sys.argv[1])
report = policy.audit_path(path)
stored = Manifest.read(path).audit
print(json.dumps({"registry": report.op_registry, "stored": None if stored is None else stored["report"]["op_registry"]}))
"""


def test_a_report_that_could_not_check_ops_is_not_kept_for_later_loads(archives, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "TFHUB_CACHE_DIR": str(tmp_path / "cache")}

    def audit(mode: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", _AUDIT_ENTRY, archives["one_input"], mode],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert audit("child-fails") == {"registry": "", "stored": None}
    checked = audit("")  # the next process asks TensorFlow, and keeps what it found
    assert checked["registry"].startswith("TensorFlow ") and checked["stored"] == checked["registry"]
