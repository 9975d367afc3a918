"""Streaming sources (issue 10): polling clients for Alpha Vantage prices and X recent search.

They return (or hand to a ``sink``) raw frames in the batch readers' layouts, so the ETL's own
normalisation validates live data; they know nothing about the broker.
"""
