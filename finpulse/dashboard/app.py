"""The dashboard app: ``st.navigation`` over the five pages. ``finpulse dashboard`` (``launch.start``) runs
it through ``server/main.py`` (see there why not this file directly).

Each page is a module under ``pages/`` whose ``render()`` Streamlit calls through ``st.navigation``;
``URL_PATHS`` (from the package, importable without Streamlit) are the pages' addresses.
"""

from __future__ import annotations

import streamlit as st

from finpulse.dashboard import PAGE_PATHS, URL_PATHS
from finpulse.dashboard.pages import live, models, posts, quality, signal

PAGES = [  # (module, title, url path, icon), in menu order
    (posts, "Posts and prices", "posts", ":material/forum:"),
    (signal, "Signal", "signal", ":material/show_chart:"),
    (models, "Models", "models", ":material/model_training:"),
    (live, "Live and health", "live", ":material/monitor_heart:"),
    (quality, "Data quality", "quality", ":material/fact_check:"),
]
if tuple(path for _, _, path, _ in PAGES) != PAGE_PATHS:
    raise RuntimeError("finpulse.dashboard.PAGE_PATHS must list PAGES' paths in order")
__all__ = ["PAGES", "URL_PATHS", "main"]


def main() -> None:
    st.set_page_config(page_title="FinPulse", page_icon=":material/insights:", layout="wide",
                       initial_sidebar_state="expanded")
    pages = [st.Page(mod.render, title=title, url_path=path, icon=icon, default=i == 0)
             for i, (mod, title, path, icon) in enumerate(PAGES)]
    st.navigation(pages).run()


if __name__ == "__main__":  # `streamlit run finpulse/dashboard/app.py` would run in v1 multipage mode: use server/main.py
    main()
