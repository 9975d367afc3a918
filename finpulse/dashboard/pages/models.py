"""Page 3, Models (placeholder: the lead keeps the other helper's module at merge)."""

from __future__ import annotations

import streamlit as st

from finpulse.dashboard.common import empty_state, safe

TITLE = "Models"


@safe
def render() -> None:
    st.title(TITLE)
    empty_state("No model views yet", "make demo")
