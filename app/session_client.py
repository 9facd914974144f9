"""A browser tab without the browser: one lab session driven over Streamlit's own websocket protocol.

The protobuf messages that ship with streamlit (BackMsg up, ForwardMsg down) are all a tab exchanges with the server:
open a page, set a widget, press a button, and wait until the page's script run has finished. Dozens of these fit
on two cores, so the classroom harness (benchmarks/classroom.py) simulates a class with them, and `make app` uses
one to warm a freshly started server (app/warm.py). Only 127.0.0.1 and localhost addresses are accepted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

LOCAL_HOSTS = ("127.0.0.1", "localhost")
# Element types that are widgets, and the WidgetState field the browser fills for each (streamlit 1.67).
WIDGET_VALUE = {"slider": "double_array_value", "select_slider": "string_array_value", "selectbox": "string_value",
                "radio": "string_value", "number_input": "double_value", "checkbox": "bool_value",
                "button": "trigger_value", "text_input": "string_value"}


@dataclass
class Widget:
    id: str
    kind: str
    label: str
    options: list[str]


@dataclass
class RunResult:
    """One interaction: from the message leaving the client to the page's script run finishing."""

    seconds: float
    outcome: str  # "ok", "exception" (an exception box on the page), "timeout" or "disconnected"
    exceptions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # st.error boxes: shown to the student, not failures
    bytes_received: int = 0
    texts: list[str] = field(default_factory=list)  # progress and status texts, in order (queue places, progress)
    text_times: list[float] = field(default_factory=list)  # seconds after the start at which each text arrived


class SessionClient:
    """One student's tab. `await open()`, then `set(label, value)` / `press(label)`; each returns a RunResult."""

    def __init__(self, url: str, timeout: float = 300.0):
        host = urlparse(url).hostname
        if host not in LOCAL_HOSTS:
            raise ValueError(f"{url} is not on this machine: the simulated sessions only talk to 127.0.0.1.")
        self.ws_url = url.rstrip("/").replace("http://", "ws://", 1) + "/_stcore/stream"
        self.timeout = timeout
        self.ws = None
        self.session_id = ""
        self.pages: dict[str, str] = {}  # url path name -> page script hash
        self.page_hash = ""
        self.query = ""
        self.widgets: dict[str, Widget] = {}  # label -> widget of the last run
        self.states: dict[str, WidgetState] = {}  # widget id -> value this tab has set

    async def connect(self) -> None:
        self.ws = await connect(self.ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=self.timeout,
                                ping_interval=None)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def open(self, page: str = "", query: str = "") -> RunResult:
        """Open a page by its address (``""`` for the front page, e.g. ``"Verifier"``), as following a link does."""
        if self.ws is None:
            await self.connect()
        self.query, self.states, self.widgets = query, {}, {}
        self.page_hash = self.pages.get(page, "")
        return await self._rerun(page_name=page if not self.page_hash else "")

    async def set(self, label: str, value) -> RunResult:
        """Move the widget whose label starts with `label` to `value` (an option's text for choice widgets)."""
        widget = self.widget(label)
        state = WidgetState(id=widget.id)
        kind = WIDGET_VALUE[widget.kind]
        if kind == "double_array_value":
            state.double_array_value.data.extend([float(value)])
        elif kind == "string_array_value":
            state.string_array_value.data.extend([str(value)])
        elif kind == "bool_value":
            state.bool_value = bool(value)
        elif kind == "double_value":
            state.double_value = float(value)
        else:
            state.string_value = str(value)
        self.states[widget.id] = state
        return await self._rerun()

    async def press(self, label: str) -> RunResult:
        widget = self.widget(label)
        trigger = WidgetState(id=widget.id, trigger_value=True)
        return await self._rerun(extra=[trigger])

    def widget(self, label: str) -> Widget:
        for name, widget in self.widgets.items():
            if name.startswith(label):
                return widget
        raise KeyError(f"no widget labelled {label!r} on this page (seen: {', '.join(self.widgets) or 'none'})")

    async def _rerun(self, page_name: str = "", extra: list[WidgetState] = ()) -> RunResult:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_script_hash = self.page_hash
        state.page_name = page_name
        state.widget_states.widgets.extend([*self.states.values(), *extra])
        started = time.perf_counter()
        result = RunResult(0.0, "ok")
        try:
            await self.ws.send(msg.SerializeToString())
            await asyncio.wait_for(self._until_finished(result, started), self.timeout)
        except asyncio.TimeoutError:
            result.outcome = "timeout"
        except (ConnectionClosed, OSError):
            result.outcome = "disconnected"
        result.seconds = time.perf_counter() - started
        if result.exceptions and result.outcome == "ok":
            result.outcome = "exception"
        return result

    async def _until_finished(self, result: RunResult, started: float) -> None:
        seen: dict[str, Widget] = {}
        while True:
            raw = await self.ws.recv()
            result.bytes_received += len(raw)
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                self.session_id = fwd.new_session.initialize.session_id or self.session_id
                self.page_hash = fwd.new_session.page_script_hash or self.page_hash
                seen = {}
            elif kind == "navigation":  # the pages of the app and the one this run shows
                self.pages = {p.url_pathname: p.page_script_hash for p in fwd.navigation.app_pages}
                self.page_hash = fwd.navigation.page_script_hash or self.page_hash
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                self._read_element(fwd.delta.new_element, seen, result, started)
            elif kind == "page_info_changed":
                self.query = fwd.page_info_changed.query_string
            elif kind == "script_finished":
                if fwd.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    seen = {}
                    continue  # the server started another run at once (st.rerun, a newer message)
                if seen:
                    self.widgets = seen
                    self.states = {i: s for i, s in self.states.items() if any(w.id == i for w in seen.values())}
                return

    @staticmethod
    def _read_element(element, seen: dict, result: RunResult, started: float) -> None:
        kind = element.WhichOneof("type")
        if kind == "exception":
            result.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        elif kind == "alert" and element.alert.format == element.alert.ERROR:
            result.errors.append(element.alert.body)
        elif kind in ("progress", "text", "markdown"):
            result.texts.append(element.progress.text if kind == "progress" else getattr(element, kind).body)
            result.text_times.append(time.perf_counter() - started)
        proto = getattr(element, kind) if kind else None
        if kind == "slider" and proto.options:
            kind = "select_slider"  # a select_slider travels as a Slider with option texts
        if kind == "checkbox" or kind in WIDGET_VALUE:
            seen[proto.label] = Widget(proto.id, kind, proto.label, list(getattr(proto, "options", [])))
