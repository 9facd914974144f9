"""The repository root, and which server folders a page may read when a user types a path.

A lab served to a class must not become a file browser for the server: a typed path is resolved
(symlinks and `..` included) and accepted only inside an allow-listed folder. The allow-list is the
repository's `runs/` and `assets/`, plus any folders named in the environment variable
`SORL_LAB_PATHS` (separated like PATH, by `:` on Linux and macOS, `;` on Windows).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # where `make app` runs; assets/ and runs/ are in it
ENV_VAR = "SORL_LAB_PATHS"


class PathNotAllowed(ValueError):
    """A typed path outside the allow-listed folders; the message says which folders are allowed."""


def allowed_roots() -> list[Path]:
    """The folders a typed path may lie in, resolved: runs/, assets/ and those in SORL_LAB_PATHS."""
    roots = [REPO_ROOT / "runs", REPO_ROOT / "assets"]
    roots += [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    return [r.resolve() for r in roots]


def _shown(root: Path) -> str:
    try:
        return str(root.relative_to(REPO_ROOT)) + "/"
    except ValueError:
        return str(root)


def resolve_allowed(text: str) -> Path:
    """The resolved path of what a user typed, if it lies in an allowed folder; else PathNotAllowed.

    Relative paths start at the repository root (where `make app` runs). Whether the path exists is
    left to the caller, so a refusal never tells whether a file outside the allow-list exists.
    """
    raw = Path(text.strip()).expanduser()
    path = (raw if raw.is_absolute() else REPO_ROOT / raw).resolve()
    roots = allowed_roots()
    if any(path == root or root in path.parents for root in roots):
        return path
    shown = [_shown(r) for r in roots]
    folders = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    raise PathNotAllowed(
        f"This lab only reads inside {folders}: move what you need there, or ask whoever runs the lab to add "
        f"its folder to {ENV_VAR}."
    )


# --------------------------------------------------------------------------- pages a teacher turns off
PAGES_OFF_VAR = "SORL_LAB_PAGES_OFF"
PAGE_NAMES = {"rollouts": "OGBench rollouts", "scaling": "Scaling study", "runs": "Training runs",
              "verifier": "Verifier"}


def pages_off() -> set[str]:
    """Pages the server's owner turned off: SORL_LAB_PAGES_OFF=rollouts,verifier (names of PAGE_NAMES)."""
    return {p.strip().lower() for p in os.environ.get(PAGES_OFF_VAR, "").split(",") if p.strip()}


def page_off_message(page: str) -> str | None:
    """The sentence a page shows instead of itself when its teacher turned it off on this server, else None."""
    if page not in pages_off():
        return None
    return (f"The {PAGE_NAMES[page]} page is turned off on this server (its teacher set {PAGES_OFF_VAR}); the other "
            "pages work as usual.")
