"""Data: canonical schemas, readers per source format, synthetic posts, calendar, features, ETL."""
