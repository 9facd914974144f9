"""Every teaching notebook (notebooks/*.ipynb) runs top to bottom in FAST mode, and is stored without outputs.

FAST mode is set the way papermill does it: a cell ``FAST = True`` is injected right after the cell tagged
``parameters``; the environment variable SORL_LAB_FAST=1 says the same to notebooks that read it. The kernel is
the python3 kernel of the running interpreter (jupyter_client swaps the kernelspec's ``python`` for
``sys.executable``, so it is this venv). A test fails on any error: a cell that raises, an error shown inside an
ipywidgets Output (``interact`` catches callback exceptions and only prints them there), a notebook without a
``parameters`` cell, or one whose FAST flag is no longer true at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from queue import Empty

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell; a FAST notebook takes well under a minute in all
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
POLL_SLICE = 1.0  # seconds; see _SlicedPollClient


class _SlicedPollClient(nbclient.NotebookClient):
    """NotebookClient whose channel reads wait in slices of POLL_SLICE seconds.

    pyzmq's asyncio poll can miss a message that is already there and report it only when the wait times out
    (zeromq/pyzmq#1558; jupyter/nbclient#312: cells with ipywidgets "sometimes block"). Seen here: the
    `interact` cell's execute_reply sat unread until the 900 s cell timeout, then the run went on as if nothing
    had happened. Waiting in short slices bounds that stall to POLL_SLICE; timeouts keep their meaning.
    """

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = _sliced(channel.get_msg)
        return kc


def _sliced(get_msg):
    async def get_msg_in_slices(timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=min(POLL_SLICE, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get_msg_in_slices


def _parameters_index(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    raise AssertionError("no code cell tagged `parameters` (it must define FAST = False)")


def _widget_errors(nb) -> list[str]:
    """Error outputs captured inside ipywidgets Output widgets (e.g. an `interact` callback that raised)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    errors = []
    for model in state.values():
        for out in model.get("state", {}).get("outputs", []) or []:
            if out.get("output_type") == "error":
                errors.append(f"{out.get('ename')}: {out.get('evalue')}")
    return errors


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebook in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path):
    """Committed without outputs and with a `parameters` cell that defines FAST."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `jupyter nbconvert --clear-output --inplace {path}`"
    assert "widgets" not in nb.metadata, (
        f"{path.name}: stored widget state (it can hold megabytes of figures): delete the notebook's "
        "metadata['widgets'] (JupyterLab: turn off Settings > Save Widget State Automatically, then save)")
    assert "FAST" in nb.cells[_parameters_index(nb)].source, f"{path.name}: the parameters cell must define FAST"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    index = _parameters_index(nb)
    injected = nbformat.v4.new_code_cell("# injected by tests/test_notebooks.py\nFAST = True")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    nb.cells.append(nbformat.v4.new_code_cell("assert FAST is True or FAST == 1, f'FAST was reset to {FAST!r}'"))
    monkeypatch.setenv("SORL_LAB_FAST", "1")  # the kernel inherits this process's environment

    client = _SlicedPollClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},  # run from notebooks/, as `make lab` does
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the traceback) when a cell fails
    seconds = time.perf_counter() - start

    errors = _widget_errors(nb)
    assert not errors, f"{path.name}: errors inside widgets: {errors}"
    print(f"{path.name}: {seconds:.0f} s in FAST mode")  # a figure for the log; tests never assert wall-clock times
