"""Starting worker processes safely from anywhere the lab runs (a script, a notebook, a Streamlit page).

Both the environment workers (ogbench.rollouts.EnvBatch) and dataset generation (ogbench.generation) spawn processes; this module
holds what they share, so neither imports the other for it.
"""

from __future__ import annotations

import os
import sys
import threading
import types
from contextlib import contextmanager

_MAIN_LOCK = threading.Lock()


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def spawn_safe_main():
    """Let spawned worker processes (EnvBatch, dataset generation) start from inside a Streamlit page.

    Streamlit executes a page as ``sys.modules["__main__"]`` (no ``__spec__``, ``__file__`` = the page), and
    multiprocessing's spawn re-runs the ``__main__`` file in every new process: each environment worker
    would execute the whole page (and crash on it). AppTest leaves such a module behind in a test process.
    While the workers start, ``__main__`` is a blank module; workers import what they need by name.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        yield
        return
    blank = types.ModuleType("__main__")
    with _MAIN_LOCK:
        sys.modules["__main__"] = blank
        try:
            yield
        finally:
            if sys.modules.get("__main__") is blank:  # a newer script run may have installed its own meanwhile
                sys.modules["__main__"] = main
