"""`finpulse dashboard`: a Streamlit app over the curated data, the signal, the models and live health.

``app.py`` is the entry Streamlit runs; pages are modules under ``pages/`` with ``render() -> None``
(see :mod:`finpulse.dashboard.common`); :mod:`finpulse.dashboard.launch` starts and stops the server.
"""

# The pages' addresses in menu order (``http://host:port/<path>``); the first is the default page, served at "/".
PAGE_PATHS = ("posts", "signal", "models", "live", "quality")
URL_PATHS = ("", *PAGE_PATHS[1:])
