"""The layout shows the architecture: the algorithm and the worlds in sorl_core/, the studies built on them in
sorl_core/studies/, and imports going one way (no module of the core imports a study, no import cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sorl_core"


def imports_of(path: Path) -> set[str]:
    """sorl_core modules a file imports (anywhere in it, lazy imports included), as dotted names."""
    package = "sorl_core" + ("." + path.parent.name if path.parent != PACKAGE else "")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if module.startswith("sorl_core"):
                out.add(module)
                out.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("sorl_core"))
    return out


def modules() -> dict[str, set[str]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = "sorl_core." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = imports_of(path)
    return {m: {i for i in deps if i in found} - {m} for m, deps in found.items()}


def test_the_core_never_imports_a_study():
    graph = modules()
    core = [m for m in graph if not m.startswith("sorl_core.studies") and m != "sorl_core.cli"]
    offenders = {m: sorted(d for d in graph[m] if d.startswith("sorl_core.studies")) for m in core}
    assert {m: d for m, d in offenders.items() if d} == {}
    assert {"sorl_core.studies.evaluate", "sorl_core.studies.verifier_study", "sorl_core.studies.adaptive",
            "sorl_core.studies.toy_scaling", "sorl_core.studies.bench"} <= set(graph)


def test_no_import_cycles():
    graph = modules()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, " -> ".join(path + [m, d])
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
