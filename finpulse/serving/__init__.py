"""Serving: a Ray Serve graph (Gateway -> SentimentModel / Forecaster, stable and canary) over a pure core.

- ``schemas``: request/response models and the deployments' user_configs;
- ``core``/``router``: routing, model slots, feature look-ups, the signal math (no Ray);
- ``api``: the FastAPI app over a backend; ``deployments``: the Serve shell; ``app``: ``build_app``;
- ``canary``: set/promote/rollback as user_config updates of a running application.
"""
