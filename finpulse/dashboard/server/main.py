"""The script ``streamlit run`` executes (``launch.APP``): the app is :func:`finpulse.dashboard.app.main`.

It lives in its own folder on purpose: Streamlit treats a ``pages/`` folder beside the script it runs
as a v1 multipage app and never runs the script, so the entry cannot sit next to ``dashboard/pages/``.
"""

from finpulse.dashboard.app import main

main()
