"""Scan a SavedModel's protobufs for ops that act outside their tensors, without loading it.

What is read: every meta graph of ``saved_model.pb`` (a TF1 Hub module keeps its graphs there
too; ``tfhub_module.pb`` holds only its format version), each graph's nodes and its function
library, recursively through function-valued attributes (calls, tf.data ``map`` functions,
``while`` bodies) and through graphs serialized into string attributes (``DatasetFromGraph``,
any ``graph_def``). Entry points, each labelled in the findings:

  signature 'NAME'            a signature's outputs, walked back through the graph
  init op                     what runs when the module loads (``__saved_model_init_op``, TF1 main ops)
  checkpoint saver            the saver's save and restore: its Save/Restore ops are expected
  OBJECT.PATH                 functions saved on the object graph (``__call__``, resources' ``_initialize``)
  no entry point              anything left over, so that nothing goes unread

A file read is not flagged when its file name is one of the module's own assets (a vocabulary
table initialised from ``assets/vocab.txt``, as text modules do): an asset bound to a saved
function, or an asset tensor of the graph, followed through Identity ops and function calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from beam_hub.files import join_inside
from beam_hub.protos import message_class, read_saved_model
from beam_hub.safety.ops import (
    ASSET_READERS,
    CALL_OPS,
    CUSTOM_OP,
    FILE_WRITE,
    OP_KIND,
    SAVER_OPS,
    SAVER_PATH_OPS,
    SEVERITY,
    UNSCANNABLE,
    custom_op_package,
)
from beam_hub.safety.registry import registered_ops
from beam_hub.safety.report import AuditReport, Finding

MAX_GRAPH_DEPTH = 8  # graphs serialized inside graphs, nested deeper than this, are not read
MAX_CALL_DEPTH = 64  # function calls nested deeper than this are not followed (TF's own nest a few)
_PASS_THROUGH = frozenset({"Identity", "StopGradient", "Snapshot", "PreventGradient"})
_INIT_COLLECTIONS = ("saved_model_main_op", "legacy_init_op", "table_initializer", "init_op", "local_init_op")
_INIT_SIGNATURE = "__saved_model_init_op"
_TRACE_ID = re.compile(r"_\d+$")


def scan_saved_model(path: str) -> AuditReport:
    """Audit the SavedModel in the directory ``path``: every graph and function, nothing run."""
    registry = registered_ops()
    scanner = _Scanner(registry.known, os.path.join(path, "assets"))
    for index, meta_graph in enumerate(read_saved_model(path).meta_graphs):
        scanner.meta_graph(meta_graph, index)
    return scanner.report(path, registry.source)


@dataclass
class _Graph:
    """One graph (a meta graph's, or one serialized in an attribute) and its function library."""

    label: str
    depth: int
    nodes: dict[str, Any]
    functions: dict[str, Any]
    asset_tensors: frozenset[str] = frozenset()
    saver_filename: str = ""  # the node the checkpoint saver's file name is fed to

    @classmethod
    def of(cls, graph_def: Any, label: str, depth: int, assets: Iterable[str] = ()) -> _Graph:
        return cls(
            label=label,
            depth=depth,
            nodes={n.name: n for n in graph_def.node},
            functions={f.signature.name: f for f in graph_def.library.function},
            asset_tensors=frozenset(assets),
        )

    def is_asset(self, tensor: str) -> bool:
        """Whether the top-level ``tensor`` is one of the graph's asset file names."""
        return tensor in self.asset_tensors or f"{tensor}:0" in self.asset_tensors


@dataclass
class _Visit:
    """Where the walk is: the entry point, the functions called on the way, the asset arguments."""

    root: str
    chain: tuple[str, ...] = ()
    saver: bool = False
    asset_args: frozenset[int] = frozenset()
    filename_args: frozenset[int] = frozenset()  # in the saver: arguments that carry its file name

    def reach(self) -> str:
        return " -> ".join((self.root, *self.chain))


@dataclass
class _Scanner:
    known: Any  # op name -> bool: registered in the installed TensorFlow (None: not checked)
    assets_dir: str  # where the loader puts the module's assets
    findings: dict[tuple[str, str | None, str], Finding] = field(default_factory=dict)
    visits: set[tuple] = field(default_factory=set)  # (graph, function, entry point, saver, asset args)
    top_level: set[tuple[str, str]] = field(default_factory=set)  # (graph, node) walked
    functions: set[tuple[str, str]] = field(default_factory=set)  # (graph, function) walked
    graphs: int = 0
    nodes: int = 0
    asset_files: list[bool] = field(default_factory=list)  # per asset_file_def: a name under assets/
    node_maps: dict[int, dict[str, Any]] = field(default_factory=dict)  # id(function) -> its nodes by name

    def _node_map(self, function: Any) -> dict[str, Any]:
        """A function's nodes by name, built once per scan (the protos live as long as the scan)."""
        found = self.node_maps.get(id(function))
        if found is None:
            found = self.node_maps[id(function)] = {n.name: n for n in function.node_def}
        return found

    def report(self, path: str, op_registry: str) -> AuditReport:
        order = {"high": 0, "medium": 1}
        merged: dict[tuple, Finding] = {}
        for (graph, function, _node), f in self.findings.items():
            # TF traces one Python function into several copies (`__inference_f_12`, `__inference_f_40`):
            # one finding for the copies of a node, reachable from all their entry points
            key = (graph, f.op, f.node, _TRACE_ID.sub("", function or ""))
            old = merged.get(key)
            merged[key] = (
                f
                if old is None
                else Finding(
                    old.op,
                    old.kind,
                    old.severity,
                    old.node,
                    old.function,
                    old.reachable_from + tuple(r for r in f.reachable_from if r not in old.reachable_from),
                    old.detail,
                )
            )
        findings = sorted(merged.values(), key=lambda f: (order.get(f.severity, 2), f.op, f.node))
        return AuditReport(
            path=path,
            findings=findings,
            graphs=self.graphs,
            functions=len(self.functions),
            nodes=self.nodes,
            op_registry=op_registry,
        )

    # -- entry points ---------------------------------------------------------------------------

    def meta_graph(self, meta_graph: Any, index: int) -> None:
        tags = ",".join(meta_graph.meta_info_def.tags) or "no tags"
        self.asset_files = [self._inside_assets(a.filename) for a in meta_graph.asset_file_def]
        graph = _Graph.of(
            meta_graph.graph_def, f"meta graph {index} ({tags})", 0, self._asset_tensors(meta_graph)
        )
        self._count(graph)
        for name, signature in sorted(meta_graph.signature_def.items()):
            root = "init op" if name == _INIT_SIGNATURE else f"signature {name!r}"
            self._walk_back(graph, [t.name for t in signature.outputs.values()], _Visit(root))
        for key in _INIT_COLLECTIONS:
            if key in meta_graph.collection_def:
                self._walk_back(
                    graph, list(meta_graph.collection_def[key].node_list.value), _Visit("init op")
                )
        saver = meta_graph.saver_def
        graph.saver_filename = _node_name(saver.filename_tensor_name)
        saver_roots = [name for name in (saver.save_tensor_name, saver.restore_op_name) if name]
        self._walk_back(graph, saver_roots, _Visit("checkpoint saver", saver=True))
        if meta_graph.HasField("object_graph_def"):
            self._object_graph(graph, meta_graph.object_graph_def)
        self._leftovers(graph)

    def _object_graph(self, graph: _Graph, object_graph: Any) -> None:
        nodes = object_graph.nodes
        paths = {0: ""}
        queue = [0]
        while queue:  # breadth first: each object named by its shortest path from the root
            current = queue.pop(0)
            for child in nodes[current].children:
                if child.node_id not in paths and 0 <= child.node_id < len(nodes):
                    paths[child.node_id] = f"{paths[current]}.{child.local_name}".lstrip(".")
                    queue.append(child.node_id)
        entered: set[str] = set()  # a function saved under several paths is named by the shortest
        for node_id, path in sorted(paths.items(), key=lambda item: (item[1].count("."), item[1])):
            obj = nodes[node_id]
            kind = obj.WhichOneof("kind")
            if kind == "function":
                names = list(obj.function.concrete_functions)
            elif kind == "bare_concrete_function":
                names = [obj.bare_concrete_function.concrete_function_name]
            else:
                continue
            for name in names:
                if name in entered:
                    continue
                entered.add(name)
                bound = list(object_graph.concrete_functions[name].bound_inputs)
                self._enter_function(
                    graph,
                    name,
                    _Visit(path or "root", asset_args=self._bound_assets(graph, name, bound, nodes)),
                )

    def _bound_assets(self, graph: _Graph, name: str, bound: list[int], nodes: Any) -> frozenset[int]:
        """Argument positions of ``name`` that receive one of the module's assets (captures come last)."""
        function = graph.functions.get(name)
        if function is None:
            return frozenset()
        first = len(function.signature.input_arg) - len(bound)
        return frozenset(
            first + i
            for i, node_id in enumerate(bound)
            if 0 <= node_id < len(nodes)
            and nodes[node_id].WhichOneof("kind") == "asset"
            and 0 <= nodes[node_id].asset.asset_file_def_index < len(self.asset_files)
            and self.asset_files[nodes[node_id].asset.asset_file_def_index]
        )

    def _inside_assets(self, filename: str) -> bool:
        """An asset's file name must name a file under assets/: the loader joins it to that
        directory, so ``../`` or an absolute name would make an "asset" read of any file."""
        try:
            join_inside(self.assets_dir, filename)
        except ValueError:
            return False
        return True

    def _asset_tensors(self, meta_graph: Any) -> list[str]:
        """The graph's asset file name tensors (asset_file_def, and the TF1 builder's collection),
        those whose file name stays under assets/."""
        assets = list(meta_graph.asset_file_def)
        if "saved_model_assets" in meta_graph.collection_def:
            for packed in meta_graph.collection_def["saved_model_assets"].any_list.value:
                asset = message_class("AssetFileDef")()
                if packed.Unpack(asset):
                    assets.append(asset)
        return [a.tensor_info.name for a in assets if self._inside_assets(a.filename)]

    def _leftovers(self, graph: _Graph) -> None:
        visit = _Visit("no entry point")
        for name in graph.nodes:
            if (graph.label, name) not in self.top_level:
                self._node(graph, graph.nodes[name], None, visit)
        for name in graph.functions:
            if (graph.label, name) not in self.functions:
                self._enter_function(graph, name, visit)

    # -- walking --------------------------------------------------------------------------------

    def _walk_back(self, graph: _Graph, tensors: Iterable[str], visit: _Visit) -> None:
        """Every top-level node the given tensors depend on (data and control inputs)."""
        stack = [_node_name(t) for t in tensors]
        done: set[str] = set()
        while stack:
            name = stack.pop()
            if name in done or name not in graph.nodes:
                continue
            done.add(name)
            node = graph.nodes[name]
            self._node(graph, node, None, visit)
            stack.extend(_node_name(i) for i in node.input)

    def _enter_function(self, graph: _Graph, name: str, visit: _Visit) -> None:
        function = graph.functions.get(name)
        if function is None:
            return
        key = (graph.label, name, visit.root, visit.saver, visit.asset_args, visit.filename_args)
        if key in self.visits:
            return
        self.visits.add(key)
        if (graph.label, name) not in self.functions:
            self.functions.add((graph.label, name))
            self.nodes += len(function.node_def)
        for node in function.node_def:
            self._node(graph, node, function, visit)

    def _node(self, graph: _Graph, node: Any, function: Any, visit: _Visit) -> None:
        fname = function.signature.name if function is not None else None
        if function is None:
            self.top_level.add((graph.label, node.name))
        op = node.op
        self._classify(graph, node, function, visit)
        callees = [op] if op in graph.functions else []
        for attr in node.attr.values():
            kind = attr.WhichOneof("value")
            if kind == "func":
                callees.append(attr.func.name)
            elif kind == "list":
                callees.extend(f.name for f in attr.list.func)
        if callees and len(visit.chain) >= MAX_CALL_DEPTH:
            self._add(
                graph,
                node,
                fname,
                visit,
                UNSCANNABLE,
                f"function calls nested more than {MAX_CALL_DEPTH} deep",
            )
            callees = []
        for callee in callees:
            args: frozenset[int] = frozenset()
            files: frozenset[int] = frozenset()
            if op in CALL_OPS or op == callee:  # inputs map one to one onto the callee's arguments
                inputs = [i for i in node.input if not i.startswith("^")]
                args = frozenset(j for j, i in enumerate(inputs) if self._is_asset(graph, function, i, visit))
                if visit.saver:
                    files = frozenset(
                        j for j, i in enumerate(inputs) if self._is_saver_path(graph, function, i, visit)
                    )
            self._enter_function(
                graph, callee, _Visit(visit.root, visit.chain + (callee,), visit.saver, args, files)
            )
        for attr_name, attr in node.attr.items():
            if attr.WhichOneof("value") == "s" and attr_name == "graph_def":
                self._serialized_graph(graph, node, fname, attr.s, visit)
        if op == "DatasetFromGraph" and node.input:  # the graph is its input: a string constant
            value = self._constant_string(graph, function, node.input[0])
            if value is None:
                self._add(graph, node, fname, visit, UNSCANNABLE, "its graph is computed when it runs")
            else:
                self._serialized_graph(graph, node, fname, value, visit)

    def _serialized_graph(
        self, graph: _Graph, node: Any, fname: str | None, data: bytes, visit: _Visit
    ) -> None:
        where = f"{node.name} ({node.op})"
        if graph.depth >= MAX_GRAPH_DEPTH:
            self._add(
                graph, node, fname, visit, UNSCANNABLE, f"graphs nested more than {MAX_GRAPH_DEPTH} deep"
            )
            return
        inner_def = message_class("GraphDef")()
        try:
            inner_def.ParseFromString(data)
        except (DecodeError, ValueError, RuntimeError):
            self._add(graph, node, fname, visit, UNSCANNABLE, "its serialized graph does not parse")
            return
        inner = _Graph.of(inner_def, f"{graph.label} / {where}", graph.depth + 1)
        self._count(inner)
        inside = _Visit(visit.root, visit.chain + (f"graph in {where}",), visit.saver)
        for name in inner.nodes:
            self._node(inner, inner.nodes[name], None, inside)
        for name in inner.functions:
            self._enter_function(inner, name, inside)

    def _count(self, graph: _Graph) -> None:
        self.graphs += 1
        self.nodes += len(graph.nodes)

    # -- judging one node -----------------------------------------------------------------------

    def _classify(self, graph: _Graph, node: Any, function: Any, visit: _Visit) -> None:
        op = node.op
        fname = function.signature.name if function is not None else None
        kind, detail = OP_KIND.get(op), ""
        if op == "PrintV2":
            stream = (
                node.attr["output_stream"].s.decode("utf-8", "replace")
                if "output_stream" in node.attr
                else ""
            )
            if stream.startswith("file://"):
                kind, detail = FILE_WRITE, f"prints to {stream}"
        elif kind is None and op not in graph.functions and self.known is not None and not self.known(op):
            package = custom_op_package(op)
            kind = CUSTOM_OP
            detail = "not registered in this TensorFlow" + (
                f"; probably from the package {package.replace('_', '-')}" if package else ""
            )
        if kind is None:
            return
        if visit.saver and op in SAVER_OPS:
            paths = [node.input[k] for k in SAVER_OPS[op] if k < len(node.input)]
            if paths and all(self._is_saver_path(graph, function, p, visit) for p in paths):
                return  # the checkpoint's own save and restore, at the path the loader gives it
        filename = ASSET_READERS.get(op)
        if filename is not None and len(node.input) > filename:
            if self._is_asset(graph, function, node.input[filename], visit):
                return  # reads one of the module's own assets
        self._add(graph, node, fname, visit, kind, detail)

    def _add(
        self, graph: _Graph, node: Any, fname: str | None, visit: _Visit, kind: str, detail: str
    ) -> None:
        key = (graph.label, fname, node.name)
        reach = visit.reach()
        old = self.findings.get(key)
        if old is None:
            node_name = node.name if graph.depth == 0 else f"{graph.label.split(' / ', 1)[-1]} / {node.name}"
            self.findings[key] = Finding(node.op, kind, SEVERITY[kind], node_name, fname, (reach,), detail)
        elif reach not in old.reachable_from:
            self.findings[key] = Finding(
                old.op,
                old.kind,
                old.severity,
                old.node,
                old.function,
                old.reachable_from + (reach,),
                old.detail,
            )

    def _is_saver_path(
        self, graph: _Graph, function: Any, tensor: str, visit: _Visit, depth: int = 0
    ) -> bool:
        """Whether ``tensor`` is the saver's file name, or a path built from it (the name first)."""
        if depth > 32 or tensor.startswith("^"):
            return False
        name = tensor.split(":", 1)[0]
        if function is not None:
            args = [a.name for a in function.signature.input_arg]
            if name in args and ":" not in tensor:
                return args.index(name) in visit.filename_args
            nodes = self._node_map(function)
        else:
            if name == graph.saver_filename:
                return True
            nodes = graph.nodes
        node = nodes.get(name)
        if node is None or node.op not in SAVER_PATH_OPS:
            return False
        inputs = [i for i in node.input if not i.startswith("^")]
        if node.op == "Pack":
            return bool(inputs) and all(
                self._is_saver_path(graph, function, i, visit, depth + 1) for i in inputs
            )
        return bool(inputs) and self._is_saver_path(graph, function, inputs[0], visit, depth + 1)

    def _constant_string(self, graph: _Graph, function: Any, tensor: str) -> bytes | None:
        """The value of a scalar string constant ``tensor`` (through Identity ops), else None."""
        nodes = self._node_map(function) if function is not None else graph.nodes
        for _ in range(32):
            node = nodes.get(tensor.lstrip("^").split(":", 1)[0])
            if node is None:
                return None
            if node.op == "Const":
                values = node.attr["value"].tensor.string_val
                return values[0] if len(values) == 1 else None
            if node.op not in _PASS_THROUGH or not node.input:
                return None
            tensor = node.input[0]
        return None

    def _is_asset(self, graph: _Graph, function: Any, tensor: str, visit: _Visit) -> bool:
        """Whether ``tensor`` (an input name) is one of the module's asset file names."""
        nodes = self._node_map(function) if function is not None else graph.nodes
        args = [a.name for a in function.signature.input_arg] if function is not None else []
        for _ in range(32):  # through a chain of Identity ops, not around a cycle
            if tensor.startswith("^"):
                return False
            name = tensor.split(":", 1)[0]
            if function is not None and name in args and ":" not in tensor:
                return args.index(name) in visit.asset_args
            if function is None and graph.is_asset(tensor):
                return True
            node = nodes.get(name)
            if node is not None and function is None and node.op == "ReadVariableOp" and node.input:
                return self._asset_variable(graph, _node_name(node.input[0]), visit)
            if node is None or node.op not in _PASS_THROUGH or not node.input:
                return False
            tensor = node.input[0]
        return False

    def _asset_variable(self, graph: _Graph, variable: str, visit: _Visit) -> bool:
        """A TF2 graph keeps each asset path in a variable assigned from the asset tensor: true
        when every assignment to ``variable`` is one."""
        values = [
            n.input[1]
            for n in graph.nodes.values()
            if n.op == "AssignVariableOp" and len(n.input) > 1 and _node_name(n.input[0]) == variable
        ]
        return bool(values) and all(not v.startswith("^") and graph.is_asset(v) for v in values)


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":", 1)[0]
