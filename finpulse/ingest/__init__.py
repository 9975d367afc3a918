"""The live path (issue 10): streaming sources (Alpha Vantage, X recent search, replay), the NATS
JetStream feed, and the stream processor that turns the feed into stored history and fresh features.

Sources return raw frames in the batch readers' layouts, so the ETL's own normalisation validates
live data; they know nothing about the broker.
"""
