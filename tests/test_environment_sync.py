"""The project's install paths must agree with each other.

pyproject.toml (pip, used by scripts/bootstrap.sh) and environment.yml (conda)
must list the same packages with the same version bounds, and the command CI
runs (.ci/run) must be the one the README tells people to run.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# conda-forge name -> PyPI name, for packages named differently on the two.
CONDA_TO_PYPI = {"pytorch": "torch"}
# environment.yml entries that are not project dependencies.
ENV_ONLY = {"python", "pip", "cxx-compiler"}  # cxx-compiler: what apt's g++ is in bootstrap.sh

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def normalise(name: str) -> str:
    """PEP 503 name normalisation, plus the conda->PyPI renames."""
    name = re.sub(r"[-_.]+", "-", name).lower()
    return CONDA_TO_PYPI.get(name, name)


def split_requirement(req: str) -> tuple[str, str]:
    """'streamlit >= 1.40' -> ('streamlit', '>=1.40'); markers are not used here."""
    match = _REQ.match(req.split(";")[0])
    assert match, f"cannot parse requirement {req!r}"
    return normalise(match.group(1)), match.group(3).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    """Every package pyproject.toml asks for (core and all extras) -> version spec."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra_reqs in project["optional-dependencies"].values():
        reqs += extra_reqs
    out: dict[str, str] = {}
    for req in reqs:
        name, spec = split_requirement(req)
        if name == normalise(project["name"]):  # the `all` extra's self-reference
            continue
        assert out.get(name, spec) == spec, f"{name} listed twice with different bounds"
        out[name] = spec
    return out


def environment_entries() -> list[str]:
    """The entries under `dependencies:` in environment.yml, pip section included.

    A tiny parser for this file's simple layout, so the test needs no PyYAML.
    """
    entries: list[str] = []
    in_deps = False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not line.startswith((" ", "-")):  # a top-level key
            in_deps = line.startswith("dependencies:")
            continue
        item = line.strip()
        if in_deps and item.startswith("- "):
            item = item[2:].strip()
            if item != "pip:":
                entries.append(item)
    return entries


def environment_requirements() -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in environment_entries():
        if entry.startswith("-e ") or entry.startswith("--"):  # `-e .`: the project itself
            continue
        # conda's `python=3.11` pins a version prefix; pip syntax is otherwise the same.
        name, spec = split_requirement(re.sub(r"^([^=<>!~]+)=(?!=)", r"\1==", entry))
        if name in ENV_ONLY:
            continue
        assert name not in out, f"{name} listed twice in environment.yml"
        out[name] = spec
    return out


def test_environment_yml_has_every_pyproject_package() -> None:
    missing = sorted(set(pyproject_requirements()) - set(environment_requirements()))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"


def test_environment_yml_has_nothing_extra() -> None:
    extra = sorted(set(environment_requirements()) - set(pyproject_requirements()))
    assert not extra, f"in environment.yml but not in pyproject.toml: {extra}"


def test_version_bounds_agree() -> None:
    py, env = pyproject_requirements(), environment_requirements()
    differ = {n: (py[n], env[n]) for n in py.keys() & env.keys() if py[n] != env[n]}
    assert not differ, f"(pyproject, environment.yml) bounds differ: {differ}"


def test_environment_yml_installs_the_project() -> None:
    entries = environment_entries()
    assert "-e ." in entries
    assert any(e.startswith("python=") for e in entries)


def test_all_extra_covers_every_other_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    (self_ref,) = extras["all"]
    listed = set(re.search(r"\[(.*)\]", self_ref).group(1).replace(" ", "").split(","))
    assert listed == set(extras) - {"all"}


def test_parser_reads_the_expected_entries() -> None:
    # Guards the hand-written YAML parser: a layout change must not make the
    # sync tests above pass vacuously.
    env = environment_requirements()
    assert env["torch"] == ">=2.4"  # from `pytorch>=2.4` in the conda section
    assert "ogbench" in env  # from the pip section
    assert len(env) == len(pyproject_requirements()) >= 10


def _commands_in_bash_blocks(markdown: str) -> set[str]:
    commands = set()
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", markdown, re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip().removeprefix("$ ").strip()
            if line:
                commands.add(line)
    return commands


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in ci
    code = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    make_lines = [ln.removeprefix("exec ").strip() for ln in code if re.match(r"(exec\s+)?make\b", ln)]
    assert make_lines == ["make test"], f".ci/run should run exactly `make test`, runs {make_lines}"

    readme_commands = _commands_in_bash_blocks((ROOT / "README.md").read_text())
    assert "make test" in readme_commands, "README.md must show `make test` in a ```bash block"
    assert "make app" in readme_commands, "README.md must show `make app` in a ```bash block"


def test_makefile_has_the_documented_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z_-]+):", makefile, re.M))
    assert {"setup", "app", "test", "lab", "bench", "clean"} <= targets
    assert "app/Home.py" in makefile
    # every user-facing target bootstraps first
    for target in ("app", "test", "lab", "bench"):
        assert re.search(rf"^{target}: setup\b", makefile, re.M), target
