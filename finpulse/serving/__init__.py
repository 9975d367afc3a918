"""Serving: a Ray Serve graph (Gateway -> SentimentModel / Forecaster, stable and canary) over a pure core.

- ``schemas``: request/response models and the deployments' user_configs;
- ``errors``: serving errors that carry their HTTP status across every hop;
- ``slots``: a model slot (load by spec, swap in place) and the sticky canary split;
- ``feature_store``: as-of feature look-ups and a request's overrides of the day (ETL feature code);
- ``services``: what a model replica does (score texts, forecast items), no Ray;
- ``router``: canary routing and the /v1/signal composition, shared by the Gateway and ``LocalBackend``;
- ``api``: the FastAPI app over a backend; ``deployments``: the Serve shell; ``app``: ``build_app``;
- ``access``: API keys (hashed, scoped) and per-key token buckets, as ASGI middleware, no Ray;
  ``api_keys``: the keys file, a home's first key, and the key clients send;
- ``canary``: set/promote/rollback as user_config updates of a running application; ``launch``/``run``: deploy;
- ``champion``: the registry side of promotion (``champion`` alias moved with serving, events recorded in MLflow);
- ``soak``/``soak_sources``: the canary soak (per-slot comparison, automatic rollback or promotion);
- ``gauges``: model age and the drift job's scores, exported by the model replicas.
"""
