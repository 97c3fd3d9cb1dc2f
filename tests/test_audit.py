"""The audit: crafted modules that write, read, list files or call Python where a scanner has to
look for it, modules that must audit clean, the load policy (warn, refuse, allow_ops), the report
kept in the cache entry's manifest, and the CLI."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

import beam_hub
import risky_modules as risky
from beam_hub.cache import Manifest
from beam_hub.errors import ConfigError, UnsafeModuleError
from beam_hub.safety import policy
from helpers import Served, get, run_cli, run_pipeline
from modules import make_load_counter


@pytest.fixture(scope="session")
def crafted(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("risky")
    target = str(root / "written-by-module")
    built = {
        "writer": risky.make_writer(str(root / "writer"), target),
        "deep_writer": risky.make_deep_writer(str(root / "deep_writer"), target),
        "dataset_reader": risky.make_dataset_reader(str(root / "dataset_reader")),
        "graph_in_a_dataset": risky.make_graph_in_a_dataset(str(root / "graph_in_a_dataset"), target),
        "py_function": risky.make_py_function(str(root / "py_function")),
        "tf1_reader": risky.make_tf1_reader(str(root / "tf1_reader")),
        "vocab": risky.make_vocab_lookup(str(root / "vocab"), str(root / "work")),
        "tf1_vocab": risky.make_tf1_vocab_lookup(str(root / "tf1_vocab"), str(root / "work")),
    }
    assert not os.path.exists(target)  # saving ran nothing
    return built


def ops(report) -> list[tuple[str, str, str]]:
    return [(f.op, f.kind, f.severity) for f in report.findings]


def test_a_signature_that_writes_a_file_is_found(crafted):
    report = beam_hub.audit(crafted["writer"])
    assert ops(report) == [("WriteFile", "file write", "high")]
    (finding,) = report.findings
    roots = {r.split(" -> ")[0] for r in finding.reachable_from}
    assert roots == {"signature 'serving_default'", "__call__", "signatures.serving_default"}
    assert "__call__" in finding.function


def test_the_same_write_one_function_deeper_is_found_with_its_path(crafted):
    report = beam_hub.audit(crafted["deep_writer"])
    assert ops(report) == [("WriteFile", "file write", "high")]
    (finding,) = report.findings
    assert "remember" in finding.function
    via_signature = next(r for r in finding.reachable_from if r.startswith("signature 'serving_default'"))
    chain = via_signature.split(" -> ")
    assert len(chain) >= 3 and "__call__" in " ".join(chain[1:-1]) and "remember" in chain[-1]


def test_a_file_read_inside_a_dataset_map_function_is_found(crafted):
    report = beam_hub.audit(crafted["dataset_reader"])
    assert ops(report) == [("ReadFile", "file read", "medium")]
    (finding,) = report.findings
    assert "read_file" in finding.function  # the map function, reached through MapDataset's f
    assert any(r.startswith("signature 'serving_default'") for r in finding.reachable_from)


def test_a_write_inside_a_graph_serialized_into_a_dataset_is_found(crafted):
    """modelscan misses this one: the WriteFile is in no function of the SavedModel's library."""
    report = beam_hub.audit(crafted["graph_in_a_dataset"])
    assert ops(report) == [("WriteFile", "file write", "high")]
    (finding,) = report.findings
    assert "DatasetFromGraph" in finding.node
    assert any("graph in" in r and "DatasetFromGraph" in r for r in finding.reachable_from)


def test_a_python_callback_is_found(crafted):
    report = beam_hub.audit(crafted["py_function"])
    assert ops(report) == [("EagerPyFunc", "python call", "high")]


def test_a_tf1_hub_module_reading_files_is_found(crafted):
    report = beam_hub.audit(crafted["tf1_reader"])
    assert ops(report) == [("ReadFile", "file read", "medium")]
    (finding,) = report.findings
    assert finding.function is None and finding.reachable_from == ("signature 'default'",)


@pytest.mark.parametrize("name", ["vocab", "tf1_vocab"])
def test_a_vocabulary_read_from_the_modules_own_assets_is_not_flagged(crafted, name):
    report = beam_hub.audit(crafted[name])
    assert report.clean, report.lines()
    assert report.functions > 0 or name == "tf1_vocab"
    assert report.nodes > 5


@pytest.mark.parametrize("name", ["one_input", "fruit", "keras", "tf1", "text_embedder"])
def test_ordinary_modules_audit_clean(modules_dir, name):
    report = beam_hub.audit(modules_dir[name])
    assert report.clean, report.lines()


def test_the_builtin_module_audits_clean(minilm_cache):
    report = beam_hub.audit("builtin://all-MiniLM-L6-v2", cache_dir=minilm_cache)
    assert report.clean, report.lines()
    assert report.functions > 20


def test_an_op_this_tensorflow_does_not_know_names_its_package(modules_dir):
    report = beam_hub.audit(modules_dir["custom_op"])  # the op is in two traced functions
    assert set(ops(report)) == {("CaseFoldUTF8", "custom op", "medium")}
    assert all("probably from the package tensorflow-text" in f.detail for f in report.findings)


RISKY = {
    "writer": "WriteFile",
    "deep_writer": "WriteFile",
    "dataset_reader": "ReadFile",
    "graph_in_a_dataset": "WriteFile",
    "py_function": "EagerPyFunc",
    "tf1_reader": "ReadFile",
}


@pytest.mark.parametrize("name", sorted(RISKY))
def test_refuse_stops_each_crafted_module(crafted, name, monkeypatch):
    loaded = []
    monkeypatch.setattr("tensorflow.saved_model.load", lambda *a, **k: loaded.append(a))
    with pytest.raises(UnsafeModuleError, match=f"(?s)Refusing to load .*{RISKY[name]}") as e:
        beam_hub.load(crafted[name], audit="refuse")
    assert loaded == []  # TensorFlow never saw the module
    assert {f.op for f in e.value.report.findings} == {RISKY[name]}
    assert not os.path.exists(os.path.join(os.path.dirname(crafted[name]), "written-by-module"))


def test_refuse_stops_the_load_before_any_op_runs(tmp_path):
    """The module writes a file when it loads (a resource initializer): refused, nothing written."""
    loads = tmp_path / "loads"
    path = make_load_counter(str(tmp_path / "counter"), str(loads))
    with pytest.raises(UnsafeModuleError, match=r"WriteFile.*reachable from .*counter\._initialize") as e:
        beam_hub.load(path, audit="refuse")
    assert os.listdir(loads) == []
    assert e.value.report.findings[0].op == "WriteFile"
    assert "allow_ops=['WriteFile']" in str(e.value)
    beam_hub.load(path, audit="refuse", allow_ops=["WriteFile"])  # accepted: it loads, and writes
    assert len(os.listdir(loads)) == 1


def test_refuse_from_the_environment(tmp_path, monkeypatch):
    loads = tmp_path / "loads"
    path = make_load_counter(str(tmp_path / "counter"), str(loads))
    monkeypatch.setenv("BEAM_HUB_AUDIT", "refuse")
    with pytest.raises(UnsafeModuleError):
        beam_hub.load(path)
    assert os.listdir(loads) == []
    beam_hub.load(path, audit="off")  # the argument wins over the variable
    assert len(os.listdir(loads)) == 1


def test_warn_logs_the_findings_once_per_module(crafted, caplog):
    with caplog.at_level(logging.WARNING, logger="beam_hub.audit"):
        beam_hub.load(crafted["py_function"])
        beam_hub.load(crafted["py_function"])
    warnings = [r.getMessage() for r in caplog.records if r.name == "beam_hub.audit"]
    assert len(warnings) == 1 and "EagerPyFunc" in warnings[0] and "python call" in warnings[0]


def test_an_unknown_policy_is_a_config_error(crafted, monkeypatch):
    with pytest.raises(ConfigError, match="audit='strict' must be one of warn, refuse, off"):
        beam_hub.load(crafted["writer"], audit="strict")
    monkeypatch.setenv("BEAM_HUB_AUDIT", "loud")
    with pytest.raises(ConfigError, match="BEAM_HUB_AUDIT='loud'"):
        beam_hub.load(crafted["writer"])


def test_the_report_is_kept_in_the_entry_manifest_and_redone_when_stale(crafted, tmp_path):
    archive = str(tmp_path / "writer.tar.gz")
    beam_hub.pack(crafted["writer"], archive)
    entry = beam_hub.resolve(archive)
    assert Manifest.read(entry).audit is None
    first = beam_hub.audit(archive)
    stored = Manifest.read(entry).audit
    assert stored["auditor"] == policy.AUDITOR and stored["report"]["findings"][0]["op"] == "WriteFile"

    # a new process reads the manifest instead of scanning: prove it by editing the stored report
    policy._memo.clear()
    manifest = Manifest.read(entry)
    manifest.audit["report"]["findings"][0]["node"] = "from-the-manifest"
    manifest.write(entry)
    assert beam_hub.audit(archive).findings[0].node == "from-the-manifest"

    # a report made by another auditor version is not trusted: scanned again
    policy._memo.clear()
    manifest.audit["auditor"] = policy.AUDITOR - 1
    manifest.write(entry)
    assert beam_hub.audit(archive).findings[0].node == first.findings[0].node
    assert Manifest.read(entry).audit["auditor"] == policy.AUDITOR


def test_a_graph_that_does_not_parse_or_nests_too_deep_is_reported(tmp_path):
    """Hostile bytes where a graph should be: reported as unscannable (high), never a crash."""
    import tensorflow as tf

    def module_with(graph_bytes: bytes, name: str) -> str:
        class Hidden(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
            def __call__(self, x):
                variant = tf.raw_ops.DatasetFromGraph(graph_def=tf.constant(graph_bytes))
                ds = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.int64))
                return x + ds.reduce(tf.constant(0, tf.int64), lambda a, b: a + b)

        path = str(tmp_path / name)
        tf.saved_model.save(Hidden(), path)
        return path

    garbage = module_with(b"\xff\xff\xff\xff not a graph", "garbage")
    report = beam_hub.audit(garbage)
    assert ops(report) == [("DatasetFromGraph", "unscannable graph", "high")]
    assert "does not parse" in report.findings[0].detail

    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    node = graph.node.add(name="WriteFile", op="WriteFile")
    for depth in range(12):  # a graph in a graph in a graph ...
        outer = graph_pb2.GraphDef()
        node = outer.node.add(name=f"level{depth}", op="DatasetFromGraph")
        node.attr["graph_def"].s = graph.SerializeToString()
        graph = outer
    report = beam_hub.audit(module_with(graph.SerializeToString(), "deep"))
    assert [f.kind for f in report.findings] == ["unscannable graph"]
    assert "nested more than 8 deep" in report.findings[0].detail


def test_the_cli_prints_findings_a_user_understands(crafted):
    out = run_cli("inspect", "--audit", crafted["deep_writer"], check=False)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2].startswith("audit: 1 finding (1 high)") and lines[2].endswith(": WriteFile")
    assert lines[3].startswith("  high: file write: WriteFile, node 'WriteFile' in ")
    assert "reachable from signature 'serving_default' -> " in lines[3]
    clean = run_cli("inspect", "--audit", crafted["vocab"])
    assert "audit: clean" in clean.stdout
    data = json.loads(run_cli("inspect", "--audit", "--json", crafted["py_function"], check=False).stdout)
    assert data["audit"]["findings"][0]["op"] == "EagerPyFunc"
    allowed = run_cli("inspect", "--audit", "--allow-op", "EagerPyFunc", crafted["py_function"])
    assert "audit: clean" in allowed.stdout and "allowed: EagerPyFunc" in allowed.stdout


@pytest.mark.parametrize("name", ["vocab", "tf1_vocab"])
@pytest.mark.parametrize("filename", ["../../../../etc/hostname", "/etc/hostname"])
def test_an_asset_named_outside_the_assets_directory_is_a_file_read(crafted, tmp_path, name, filename):
    """The loader joins an asset's name to assets/: `../` or an absolute name reads any file."""
    import shutil

    from tensorflow.core.protobuf import meta_graph_pb2

    from beam_hub.protos import read_saved_model

    path = shutil.copytree(crafted[name], tmp_path / name)
    saved = read_saved_model(str(path))
    meta_graph = saved.meta_graphs[0]
    for asset in meta_graph.asset_file_def:
        asset.filename = filename
    if "saved_model_assets" in meta_graph.collection_def:
        for packed in meta_graph.collection_def["saved_model_assets"].any_list.value:
            asset = meta_graph_pb2.AssetFileDef()
            packed.Unpack(asset)
            asset.filename = filename
            packed.Pack(asset)
    (path / "saved_model.pb").write_bytes(saved.SerializeToString())
    report = beam_hub.audit(str(path))
    assert set(ops(report)) == {("InitializeTableFromTextFileV2", "file read", "medium")}


def test_serve_shows_the_audit_and_the_signatures_of_a_risky_module_it_never_runs(modules_dir, tmp_path):
    import shutil

    loads = tmp_path / "loads"
    root = tmp_path / "root"
    make_load_counter(str(root / "acme" / "counter" / "1"), str(loads))
    shutil.copytree(modules_dir["fruit"], root / "acme" / "fruit" / "1")
    served = Served(str(root), pack_dir=str(tmp_path / "packs"))
    try:
        status, _, page = get(served.url + "/acme/counter/1")
        text = page.decode()
        assert status == 200 and "<h2>Audit</h2>" in text and "1 finding(s) (1 high" in text
        assert "<code>WriteFile</code>" in text and "counter._initialize" in text
        assert "x: float32[?, 3]" in text and "never loads or runs the modules it serves" in text
        status, _, body = get(served.url + "/api/modules/acme/counter/1")
        data = json.loads(body)
        assert status == 200 and data["signatures"] == {
            "default": {
                "inputs": {"x": {"dtype": "float32", "shape": [None, 3]}},
                "outputs": {"default": {"dtype": "float32", "shape": [None, 1]}},
            }
        }
        assert [f["op"] for f in data["audit"]["findings"]] == ["WriteFile"]
        assert data["download"] == served.url + "/acme/counter/1?tf-hub-format=compressed"
        clean = json.loads(get(served.url + "/api/modules/acme/fruit/1")[2])
        assert clean["audit"]["findings"] == [] and "fruit_to_pet" in clean["signatures"]
        assert clean["signatures"]["fruit_to_pet"]["inputs"]["apples"] == {
            "dtype": "float32",
            "shape": [None, 3],
        }
        assert "Clean: no op reads or writes files" in get(served.url + "/acme/fruit/1")[2].decode()
        assert get(served.url + "/api/modules/acme/nothing/1")[0] == 404
    finally:
        served.stop()
    assert os.listdir(loads) == []  # the server never ran the module


def test_publish_refuses_high_findings_unless_allowed(crafted, tmp_path):
    from beam_hub.errors import PublishError
    from beam_hub.layout import versions

    dest = str(tmp_path / "hub" / "writer")
    with pytest.raises(
        PublishError, match=r"(?s)Not publishing .*WriteFile.*allow_risky=True \(--allow-risky\)"
    ):
        beam_hub.publish(crafted["writer"], dest)
    assert not os.path.exists(dest) or versions(dest) == []
    out = run_cli("publish", crafted["writer"], dest, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert "audit: 1 finding (1 high)" in out.stderr and "beam-hub: error: Not publishing" in out.stderr
    out = run_cli("publish", crafted["writer"], dest, "--allow-risky")
    assert out.stdout.strip() == f"{dest}/1.tar.gz" and "high: file write: WriteFile" in out.stderr
    # medium findings (a file read) are printed, not refused
    out = run_cli("publish", crafted["dataset_reader"], str(tmp_path / "hub" / "reader"))
    assert "medium: file read: ReadFile" in out.stderr


def test_apply_hub_module_refuses_on_the_worker_before_loading(tmp_path):
    import apache_beam as beam

    loads = tmp_path / "loads"
    path = make_load_counter(str(tmp_path / "counter"), str(loads))
    with pytest.raises(Exception, match="Refusing to load") as e:
        run_pipeline(
            lambda p: (
                p | beam.Create([np.ones(3, np.float32)]) | beam_hub.ApplyHubModule(path, audit="refuse")
            )
        )
    assert "WriteFile" in str(e.value)
    assert os.listdir(loads) == []
    result = run_pipeline(
        lambda p: (
            p
            | beam.Create([np.ones(3, np.float32)])
            | beam_hub.ApplyHubModule(path, audit="refuse", allow_ops=["WriteFile"])
        )
    )
    assert result.state == "DONE" and len(os.listdir(loads)) == 1


def test_keras_layer_takes_the_policy(tmp_path):
    loads = tmp_path / "loads"
    path = make_load_counter(str(tmp_path / "counter"), str(loads))
    with pytest.raises(UnsafeModuleError):
        beam_hub.KerasLayer(path, audit="refuse")
    layer = beam_hub.KerasLayer(path, audit="refuse", allow_ops=["WriteFile"])
    assert layer.get_config()["allow_ops"] == ["WriteFile"] and len(os.listdir(loads)) == 1


def test_calls_nested_past_the_limit_are_reported_not_followed(crafted, tmp_path):
    """A hostile function library: 1,500 functions each calling the next (Python's recursion limit
    would end a naive walk), the last one writing a file."""
    import shutil

    from beam_hub.protos import read_saved_model
    from beam_hub.safety.scan import MAX_CALL_DEPTH

    path = shutil.copytree(crafted["writer"], tmp_path / "chain")
    saved = read_saved_model(str(path))
    library = saved.meta_graphs[0].graph_def.library
    for i in range(1500):
        f = library.function.add()
        f.signature.name = f"chain_{i}"
        f.node_def.add(name="next", op=f"chain_{i + 1}" if i < 1499 else "WriteFile")
    (path / "saved_model.pb").write_bytes(saved.SerializeToString())
    report = beam_hub.audit(str(path))
    deep = [f for f in report.findings if f.kind == "unscannable graph"]
    assert deep and all(f"nested more than {MAX_CALL_DEPTH} deep" in f.detail for f in deep)
    assert {f.op for f in report.findings} >= {"WriteFile"}  # the signature's own write is still found


@pytest.mark.parametrize("prefix", ["constant", "constant first"])
def test_a_saver_that_writes_elsewhere_is_not_the_checkpoint(modules_dir, tmp_path, prefix):
    """A TF1 module's restore op runs when it loads: a SaveV2 hung on it, writing a path of the
    module's choosing (alone, or with the real file name after it), is a file write, not the saver."""
    import shutil

    from beam_hub.protos import read_saved_model

    path = shutil.copytree(modules_dir["tf1"], tmp_path / "tf1")
    saved = read_saved_model(str(path))
    graph = saved.meta_graphs[0].graph_def
    const = graph.node.add(name="evil/path", op="Const")
    const.attr["value"].tensor.dtype = 7  # DT_STRING
    const.attr["value"].tensor.string_val.append(b"/tmp/evil/")
    target = "evil/path"
    if prefix == "constant first":
        join = graph.node.add(name="evil/join", op="StringJoin")
        join.input.extend(["evil/path", "save/Const"])
        target = "evil/join"
    save = graph.node.add(name="evil/SaveV2", op="SaveV2")
    save.input.extend(
        [target, "save/SaveV2/tensor_names", "save/SaveV2/shape_and_slices", "w/Read/ReadVariableOp"]
    )
    next(n for n in graph.node if n.name == "save/restore_all").input.append("^evil/SaveV2")
    (path / "saved_model.pb").write_bytes(saved.SerializeToString())
    report = beam_hub.audit(str(path))
    assert [(f.op, f.node, f.reachable_from) for f in report.findings] == [
        ("SaveV2", "evil/SaveV2", ("checkpoint saver",))
    ]


def test_an_audit_that_breaks_follows_the_policy(crafted, monkeypatch, caplog):
    """A protobuf the scan did not expect: warn loads the module unaudited and says so; refuse refuses."""

    def broken(path):
        raise KeyError("an unexpected field")

    monkeypatch.setattr("beam_hub.safety.scan.scan_saved_model", broken)
    monkeypatch.setattr(policy, "_memo", {})  # earlier tests audited this module in this process
    with pytest.raises(UnsafeModuleError, match="the audit could not read it"):
        beam_hub.load(crafted["vocab"], audit="refuse")
    with caplog.at_level(logging.WARNING, logger="beam_hub.audit"):
        module = beam_hub.load(crafted["vocab"])
    assert module(["cat"]).tolist() == [2]
    assert any("loading it unaudited" in r.getMessage() for r in caplog.records)
