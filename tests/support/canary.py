"""Canary test hooks: challengers that fail in the two ways a soak must catch, and live traffic.

- :func:`make_skewed_forecaster`: a real checkpoint trained on a feature serving does not have (a
  training/serving skew): it loads, then every forecast it makes fails (the Gateway answers 503).
- :func:`load_slow_forecaster`: a loader (configured as the canary slot's ``loader``, the slot's
  generic hook) that loads a real checkpoint and sleeps ``extra.fault_sleep_s`` seconds per batch.
- :class:`Traffic`: a few threads posting forecasts for varied tickers until stopped.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from tests.support.access import AUTH

SLOW_LOADER = "tests.support.canary:load_slow_forecaster"


def make_skewed_forecaster(src: str | Path, dst: str | Path, version: str = "fc-skewed") -> Path:
    """A copy of the forecaster at ``src`` whose first input column is one serving does not compute."""
    dst = Path(dst)
    shutil.copytree(src, dst)
    meta_file = next(p for p in dst.glob("*.json") if "scaler" in json.loads(p.read_text()))
    meta = json.loads(meta_file.read_text())
    renamed = f"{meta['scaler']['columns'][0]}_v2"
    meta["scaler"]["columns"][0] = renamed
    if "feature_columns" in meta:
        meta["feature_columns"][0] = renamed
    meta.setdefault("extra", {})["version"] = version
    meta_file.write_text(json.dumps(meta))
    return dst


def make_slow_forecaster(src: str | Path, dst: str | Path, sleep_s: float, version: str = "fc-slow") -> Path:
    """A copy of the forecaster at ``src`` that :func:`load_slow_forecaster` slows by ``sleep_s`` per batch."""
    dst = Path(dst)
    shutil.copytree(src, dst)
    meta_file = next(p for p in dst.glob("*.json") if "scaler" in json.loads(p.read_text()))
    meta = json.loads(meta_file.read_text())
    meta.setdefault("extra", {}).update({"version": version, "fault_sleep_s": sleep_s})
    meta_file.write_text(json.dumps(meta))
    return dst


class _Slow:
    """Delegates to a loaded forecaster; ``predict_windows`` sleeps first."""

    def __init__(self, model: Any, sleep_s: float):
        self._model, self._sleep_s = model, sleep_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict_windows(self, windows: Any) -> Any:
        time.sleep(self._sleep_s)
        return self._model.predict_windows(windows)


def load_slow_forecaster(spec: str) -> Any:
    """The real loader, then a sleep per batch when the checkpoint's meta asks for one."""
    from finpulse.forecast.model import load_forecaster

    model = load_forecaster(spec)
    sleep_s = float(model.meta.get("extra", {}).get("fault_sleep_s", 0.0))
    return _Slow(model, sleep_s) if sleep_s > 0 else model


class Traffic:
    """``threads`` clients posting /v1/forecast for varied tickers until :meth:`stop`; counts statuses."""

    def __init__(self, url: str, tickers: tuple[str, ...] = ("AAPL", "MSFT", "TSLA"), threads: int = 4):
        self.url, self.tickers = url, tickers
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        n = i
        with requests.Session() as s:
            while not self._stop.is_set():
                ticker = self.tickers[n % len(self.tickers)]
                n += 1
                try:
                    status = s.post(f"{self.url}/v1/forecast", json={"ticker": ticker}, headers=AUTH,
                                    timeout=30).status_code
                except requests.RequestException:
                    status = -1
                with self._lock:
                    self.statuses[status] += 1

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def __exit__(self, *exc: object) -> None:
        self.stop()
