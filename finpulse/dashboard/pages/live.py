"""Page 4, Live and health (placeholder: the lead keeps the other helper's module at merge)."""

from __future__ import annotations

import streamlit as st

from finpulse.dashboard.common import empty_state, safe

TITLE = "Live and health"


@safe
def render() -> None:
    st.title(TITLE)
    empty_state("No live views yet", "make demo")
