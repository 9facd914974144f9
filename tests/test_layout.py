"""The layout shows the architecture: the algorithm and the worlds in sorl_core/, the studies built on them in
sorl_core/studies/, and imports going one way (no module of the core imports a study, no import cycles). The app is
the package app/: page scripts over one logic module per page plus shared modules, none of which needs Streamlit
or imports a page's logic, and the core never imports the app."""

from __future__ import annotations

import ast
import re
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


def assert_no_cycles(graph: dict[str, set[str]]) -> None:
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


def test_no_import_cycles():
    assert_no_cycles(modules())


# --------------------------------------------------------------------------- the app
APP = PACKAGE.parent / "app"
PAGES = {"Home.py": "toy_page", "1_OGBench_rollouts.py": "rollouts_page", "2_Scaling_study.py": "scaling_page",
         "3_Training_runs.py": "runs_page", "4_Verifier.py": "verifier_page"}  # each page script and its logic


def absolute_imports(path: Path) -> set[str]:
    """Every module a file imports (anywhere in it), as dotted names; `from a import b` gives a and a.b."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def app_modules() -> dict[str, set[str]]:
    """The app package's modules (not the page scripts) and the app modules each imports."""
    names = {f"app.{p.stem}" for p in APP.glob("*.py") if p.name not in ("__init__.py", "Home.py")}
    return {f"app.{p.stem}": {i for i in absolute_imports(p) if i in names} - {f"app.{p.stem}"}
            for p in APP.glob("*.py") if f"app.{p.stem}" in names}


def test_the_core_never_imports_the_app():
    offenders = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                 if any(i == "app" or i.startswith("app.") for i in absolute_imports(p))}
    assert offenders == set()


def test_every_page_script_imports_its_own_logic_module_from_the_package():
    scripts = {p.name: p for p in [APP / "Home.py", *sorted((APP / "pages").glob("*.py"))]}
    assert set(scripts) == set(PAGES)
    for name, module in PAGES.items():
        imports = absolute_imports(scripts[name])
        assert f"app.{module}" in imports, f"{name} does not import app.{module}"
        loose = {i.split(".")[0] for i in imports} & {p.stem for p in APP.glob("*.py")}
        assert loose == set(), f"{name} imports {loose} as top-level modules, not from the package app"
    documented = ast.get_docstring(ast.parse((APP / "__init__.py").read_text()))
    assert all(f"`{m.removeprefix('app.')}`" in documented for m in app_modules()), "app/__init__.py lists every module"


def test_the_app_logic_needs_no_streamlit_and_has_no_import_cycles():
    graph = app_modules()
    assert {f"app.{m}" for m in PAGES.values()} | {"app.policies", "app.uploads", "app.paths", "app.notes"} <= set(graph)
    # The clients of a running server speak Streamlit's websocket protocol: its protobuf messages, nothing else.
    clients = {"app.session_client", "app.warm"}
    needs_streamlit = [m for m in graph if any(i.split(".")[0] == "streamlit"
                                               and not (m in clients and i.startswith("streamlit.proto"))
                                               for i in absolute_imports(APP / f"{m.removeprefix('app.')}.py"))]
    assert needs_streamlit == []  # the pages own everything Streamlit: tests call these modules directly
    pages = {f"app.{m}" for m in PAGES.values()}
    assert {m: sorted(d & pages) for m, d in graph.items() if d & pages} == {}  # no module leans on a page's logic
    assert_no_cycles(graph)


def test_tests_import_the_app_as_a_package():
    """pyproject.toml puts the repository root on pytest's path: no test reaches into app/ through sys.path."""
    offenders = [p.name for p in (PACKAGE.parent / "tests").glob("*.py")
                 if re.search(r"sys\.path\.(insert|append)\([^)\n]*app", p.read_text())]
    assert offenders == []


def test_the_ogbench_room_holds_everything_ogbench_and_leans_on_no_study():
    graph = modules()
    room = {"sorl_core.ogbench.environments", "sorl_core.ogbench.datasets", "sorl_core.ogbench.generation",
            "sorl_core.ogbench.rollouts", "sorl_core.ogbench.render", "sorl_core.ogbench.train"}
    assert room <= set(graph)
    for m in room:
        assert not any(d.startswith("sorl_core.studies") for d in graph[m]), m
    # the algorithm and the toy worlds do not need OGBench
    for m in ("sorl_core.agent", "sorl_core.networks", "sorl_core.verifiers", "sorl_core.budgets", "sorl_core.toy"):
        assert not any(d.startswith("sorl_core.ogbench") for d in graph[m]), m
