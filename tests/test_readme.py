"""The README and the docs it links: every relative link and image resolves inside the repository, screenshots
stay small, and every command-line example runs as written from a fresh shell (the environment activated first, or
the command called through .venv/bin/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IMAGE_MAX_BYTES = 200_000
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"```[^\n]*\n.*?```", re.S)


def links(doc: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8")))


def inside_repo(doc: Path, target: str) -> Path:
    path = (doc.parent / target.split("#")[0]).resolve()
    assert path == ROOT or ROOT in path.parents, f"{doc.name} links outside the repository: {target}"
    return path


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_relative_links_resolve_to_files_in_the_repository(doc):
    relative = [t for t in links(doc) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]
    if doc.name == "README.md":
        assert len(relative) >= 5, f"README.md has {len(relative)} relative links: the pattern is broken"
    missing = [t for t in relative if not inside_repo(doc, t).exists()]
    assert missing == [], f"{doc.name}: links to missing files {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_no_pointers_outside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text and "shared/" not in text, f"{doc.name} points outside the repository"
    for target in links(doc):
        if target.startswith("http"):
            assert target.startswith("https://arxiv.org/"), f"{doc.name}: external link {target}"


def test_readme_shows_one_small_screenshot_per_page():
    images = [t for t in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", (ROOT / "README.md").read_text(encoding="utf-8"))]
    assert len(images) == 5, images  # Home, OGBench rollouts, Scaling study, Training runs, Verifier
    for target in images:
        path = inside_repo(ROOT / "README.md", target)
        assert path.suffix in (".png", ".jpg", ".jpeg") and path.is_file(), target
        assert path.stat().st_size <= IMAGE_MAX_BYTES, f"{target}: {path.stat().st_size} bytes"


def test_readme_links_the_performance_notes():
    assert "(docs/PERFORMANCE.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_command_line_examples_work_from_a_fresh_shell(doc):
    """`sorl-lab`, `python` and `jupyter` live in .venv: a bash block that calls them bare activates it first."""
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
        activated = False
        for line in block.splitlines():
            command = line.split("#")[0].strip().removeprefix("$ ")
            if command in ("source .venv/bin/activate", ". .venv/bin/activate"):
                activated = True
            words = [w for w in command.split() if "=" not in w]  # skip VAR=value prefixes
            if words and words[0] in ("sorl-lab", "python", "python3", "jupyter", "streamlit", "pytest"):
                assert activated, f"{doc.name}: `{command}` runs before .venv is activated"


def test_code_and_notebooks_point_only_inside_the_repository():
    """Docstrings, comments and notebook text cite docs/ (a clone has no folder beside the repository)."""
    files = [p for folder in ("sorl_core", "app", "scripts", "benchmarks", "notebooks", "tests")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".ipynb", ".md") and p.name != "test_readme.py"]
    offenders = [str(p.relative_to(ROOT)) for p in files if "../shared" in p.read_text() or "SORL-SPEC" in p.read_text()]
    assert offenders == []
