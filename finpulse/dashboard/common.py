"""What every dashboard page shares: settings and paths, interactive charts with a CSV download,
empty states that name the command to run, and a guard that turns failures into messages.

Page contract: each page module under ``finpulse/dashboard/pages/`` defines ``render() -> None``;
``app.py`` registers it with ``st.navigation`` and calls it. A page wraps its body with :func:`safe`
(``@safe`` on ``render``), so a missing dataset or an unreachable service shows a message, never a
stack trace. Data a page reads goes through the package (catalog, tracking, the API); new pure
aggregations live in :mod:`finpulse.dashboard.queries`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from finpulse.config import Settings, get_settings
from finpulse.paths import DataPaths, data_paths

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

FILL_DATA = "make demo` (or `finpulse etl --embedded"  # shown inside backticks: `make demo` (or `finpulse etl ...`)


class Missing(Exception):
    """Raised by a loader when what a page shows does not exist yet; :func:`safe` shows it as an empty state."""

    def __init__(self, what: str, command: str = FILL_DATA) -> None:
        super().__init__(what)
        self.what, self.command = what, command


def settings() -> Settings:
    """The FinPulse settings (``FINPULSE_*``), cached by :func:`finpulse.config.get_settings`."""
    return get_settings()


def paths() -> DataPaths:
    """Where the datasets are, from :func:`settings` (cheap: derived from the cached settings)."""
    return data_paths(settings())


def chart(fig: Any, data: pd.DataFrame, key: str) -> None:
    """An interactive plotly chart (zoom, pan, hover) and a "Download CSV" button for the data it shows."""
    st.plotly_chart(fig, width="stretch", key=f"chart-{key}", config={"displaylogo": False, "scrollZoom": True})
    st.download_button("Download CSV", data.to_csv(index=False).encode(), file_name=f"{key}.csv", mime="text/csv",
                       key=f"csv-{key}")


def empty_state(what: str, command: str) -> None:
    """Say what is missing and which command fills it."""
    st.info(f"{what}. Run `{command}` to fill it.", icon=":material/info:")


def safe(fn: F) -> F:
    """Run ``fn`` so that failures become messages: :class:`Missing` and ``FileNotFoundError`` an empty
    state, an unreachable service a warning, anything else an error line (logged with its traceback,
    never shown). Streamlit's rerun/stop signals are BaseExceptions and pass through."""

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Missing as exc:
            empty_state(exc.what, exc.command)
        except FileNotFoundError as exc:
            empty_state(f"Not found: {exc}", FILL_DATA)
        except (ConnectionError, TimeoutError) as exc:
            st.warning(f"Service unreachable: {exc}", icon=":material/cloud_off:")
        except Exception as exc:
            if type(exc).__module__.startswith(("requests", "urllib3")):
                st.warning(f"Service unreachable: {exc}", icon=":material/cloud_off:")
            else:
                log.exception("dashboard: %s failed", getattr(fn, "__qualname__", fn))
                st.error(f"Could not show this part ({type(exc).__name__}: {exc}).", icon=":material/error:")
        return None

    return guarded  # type: ignore[return-value]


def fmt_p(p: float) -> str:
    """A p-value as people read it."""
    return "n/a" if p != p else (f"{p:.2g}" if p >= 1e-4 else "< 1e-4")
