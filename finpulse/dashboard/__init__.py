"""The Streamlit dashboard (``finpulse dashboard``): pages that read through the project's own modules."""
