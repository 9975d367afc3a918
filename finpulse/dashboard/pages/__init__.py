"""The dashboard's pages: each module defines ``render() -> None`` (registered in ``app.py``)."""
