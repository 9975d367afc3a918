"""Placeholder for the shared page helpers (the wt-dash1 helper owns the real module; the lead keeps theirs).

Only the names the pages are written against: ``chart``, ``empty_state``, ``safe``, ``paths``, ``settings``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from finpulse.config import Settings, get_settings
from finpulse.paths import DataPaths, data_paths


def chart(fig: Any, data: pd.DataFrame, key: str) -> None:
    """An interactive plotly chart and a button that downloads the data behind it as CSV."""
    st.plotly_chart(fig, key=key)
    st.download_button("Download CSV", data.to_csv(index=False), file_name=f"{key}.csv", mime="text/csv",
                       key=f"{key}-csv")


def empty_state(what: str, command: str) -> None:
    """Say what is missing and what to run to fill it."""
    st.info(f"{what}. Run `{command}` to fill it.")


def safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A missing dataset or an unreachable service shows one message, never a stack trace."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # the page must keep rendering
            st.warning(f"{fn.__name__.replace('_', ' ')}: {type(exc).__name__}: {exc}")
            return None
    return wrapper


def settings() -> Settings:
    return get_settings()


def paths() -> DataPaths:
    return data_paths(settings())
