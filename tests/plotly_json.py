"""Reading Plotly figures back from Streamlit's AppTest: `at.get("plotly_chart")[i].proto.spec` is the figure JSON.

Plotly 6+ writes numpy arrays as {"dtype", "bdata"(base64)[, "shape"]}; lists may hold None for NaN.
"""

from __future__ import annotations

import base64
import json

import numpy as np


def arr(v) -> np.ndarray:
    """A Plotly JSON array: a (nested) list with None for NaN, or {"dtype", "bdata"[, "shape"]}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            a = a.reshape([int(s) for s in str(v["shape"]).split(",")])
        return a.astype(float)
    if isinstance(v, list) and v and isinstance(v[0], (list, dict)):
        return np.array([arr(row) for row in v], dtype=float)
    return np.array([np.nan if x is None else x for x in v], dtype=float)


def specs(at) -> list[dict]:
    """The figure JSON of every Plotly chart on the page, in page order."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
