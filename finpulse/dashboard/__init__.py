"""`finpulse dashboard`: a Streamlit app over the curated data, the signal, the models and live health.

``app.py`` is the entry Streamlit runs; pages are modules under ``pages/`` with ``render() -> None``
(see :mod:`finpulse.dashboard.common`); :mod:`finpulse.dashboard.launch` starts and stops the server.
"""
