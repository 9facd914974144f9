"""Exception messages for people: what a page shows when something it tried failed."""

from __future__ import annotations

import re


def plain_message(exc: BaseException) -> str:
    """An exception's message for people: no exception class names or numpy reprs, first line only."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "an unexpected problem"
    text = re.sub(r"\bnp\.(?:float|int|uint|bool_?)\w*\(([^()]*)\)", r"\1", text)  # np.float64(0.5) -> 0.5
    text = re.sub(r"^(?:[A-Za-z_.]*(?:Error|Exception|Warning):\s*)+", "", text)  # RuntimeError: ... -> ...
    text = re.sub(r"[:,]?\s*\b[A-Z]\w*(?:Error|Exception)\b", "", text)  # (…: UnpicklingError) -> (…)
    return text[:400].rstrip(" :;,") or "an unexpected problem"
