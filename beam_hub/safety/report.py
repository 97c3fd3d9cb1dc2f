"""What an audit found: findings (op, kind, severity, where it is reachable from) and the report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from beam_hub.safety.ops import HIGH


@dataclass(frozen=True)
class Finding:
    """One op that can act outside its tensors.

    ``node`` is the node's name, ``function`` the library function holding it (None for the
    module's top-level graph), ``reachable_from`` each entry point that runs it, written
    ``"signature 'serving_default' -> f1 -> f2"`` (the functions on the way to the node's function).
    """

    op: str
    kind: str
    severity: str
    node: str
    function: str | None
    reachable_from: tuple[str, ...]
    detail: str = ""

    def describe(self) -> str:
        where = f"in {self.function}" if self.function else "in the top-level graph"
        reach = "; ".join(self.reachable_from[:3]) + (" ..." if len(self.reachable_from) > 3 else "")
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.severity}: {self.kind}: {self.op}{detail}, node {self.node!r} {where}, reachable from {reach}"


@dataclass
class AuditReport:
    """Findings of :func:`beam_hub.audit` over every graph and function of a module."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    graphs: int = 0  # meta graphs and serialized graphs scanned
    functions: int = 0
    nodes: int = 0
    allowed: tuple[str, ...] = ()  # ops accepted by allow_ops, left out of ``findings``
    op_registry: str = ""  # what told TensorFlow's own ops from unknown ones ("": nothing did)

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def high(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == HIGH]

    def allowing(self, ops: Iterable[str]) -> AuditReport:
        """This report without findings for ``ops`` (accepted by the caller)."""
        ops = frozenset(ops)
        if not ops:
            return self
        kept = [f for f in self.findings if f.op not in ops]
        allowed = tuple(sorted({f.op for f in self.findings if f.op in ops}))
        return replace(self, findings=kept, allowed=allowed)

    @property
    def scanned(self) -> str:
        """What was read, e.g. "1 graph, 73 functions, 6242 nodes"."""
        return ", ".join(
            [_count(self.graphs, "graph"), _count(self.functions, "function"), _count(self.nodes, "node")]
        )

    def summary(self) -> str:
        scanned = self.scanned
        notes = f"; allowed: {', '.join(self.allowed)}" if self.allowed else ""
        if not self.op_registry:
            notes += "; unknown ops not checked: no TensorFlow here to ask"
        if self.clean:
            return f"audit: clean ({scanned}{notes})"
        ops = sorted({f.op for f in self.findings})
        return (
            f"audit: {_count(len(self.findings), 'finding')} ({len(self.high)} high) in {scanned}: "
            f"{', '.join(ops)}{notes}"
        )

    def lines(self) -> list[str]:
        return [self.summary()] + [f"  {f.describe()}" for f in self.findings]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditReport:
        findings = [Finding(**{**f, "reachable_from": tuple(f["reachable_from"])}) for f in data["findings"]]
        return cls(
            path=data["path"],
            findings=findings,
            graphs=data["graphs"],
            functions=data["functions"],
            nodes=data["nodes"],
            allowed=tuple(data.get("allowed", ())),
            op_registry=str(data.get("op_registry", "")),
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
