"""Drive Debian's headless ``chromium`` over the DevTools protocol (a websocket, no WebDriver).

Streamlit renders after its websocket delivers the script's output, which ``--dump-dom`` and
``--virtual-time-budget`` do not wait for; here a page is loaded, polled until its elements stop
changing and the app is no longer running, then inspected and screenshotted.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from websockets.sync.client import connect

# What the page shows, by Streamlit's data-testid attributes.
PROBE = """JSON.stringify({
  exceptions: document.querySelectorAll('[data-testid="stException"]').length,
  errors: document.querySelectorAll('[data-testid="stAlertContentError"]').length,
  charts: document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot').length,
  metrics: document.querySelectorAll('[data-testid="stMetric"]').length,
  infos: document.querySelectorAll('[data-testid="stAlertContentInfo"]').length,
  downloads: document.querySelectorAll('[data-testid="stDownloadButton"]').length,
  not_found: document.body.innerText.includes('Page not found'),
  titles: Array.from(document.querySelectorAll('h1')).map(e => e.innerText),
  running: document.querySelector('[data-testid="stStatusWidget"]') !== null,
  text: (document.querySelector('[data-testid="stMain"]') || document.body).innerText.slice(0, 4000)
})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tab:
    """One page target of a headless chromium."""

    def __init__(self, ws_url: str) -> None:
        self._stack = ExitStack()
        self._ws = self._stack.enter_context(connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30))
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self._ids)
        self._ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=60))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def probe(self) -> dict[str, Any]:
        """What the page shows now (``{}`` while a navigation replaces the document)."""
        res = self.call("Runtime.evaluate", expression=PROBE, returnByValue=True)
        value = res.get("result", {}).get("value")
        return json.loads(value) if isinstance(value, str) else {}

    def load(self, url: str, timeout: float = 60.0, settle: float = 1.0) -> dict[str, Any]:
        """Navigate and wait until the app is idle and what it shows has not changed for ``settle`` seconds."""
        self.call("Page.navigate", url=url)
        deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            state = self.probe()
            key = {k: v for k, v in state.items() if k != "running"}
            if key != last:
                last, since = key, time.monotonic()
            elif state and not state["running"] and state["titles"] and time.monotonic() - since >= settle:
                return state
        raise TimeoutError(f"{url} did not settle in {timeout}s: {last}")

    def screenshot(self) -> bytes:
        res = self.call("Page.captureScreenshot", format="png")  # the window (beyond it, the layout reflows)
        return base64.b64decode(res["data"])

    def close(self) -> None:
        self._stack.close()


@contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator[Tab]:
    """A headless chromium with one tab; closed (and its profile removed) on exit."""
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium not on PATH (Debian package `chromium`; .ci/run installs it)")
    port, profile = _free_port(), tempfile.mkdtemp(prefix="finpulse-chromium-")
    proc = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                             f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tab = None
    try:
        deadline = time.monotonic() + 30
        while tab is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    tab = Tab(pages[0]["webSocketDebuggerUrl"])
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield tab
    finally:
        if tab is not None:
            tab.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        shutil.rmtree(profile, ignore_errors=True)
