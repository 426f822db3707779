# ledgerstream — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

install: ## create .venv and install the project with its test dependencies (idempotent)
	@PYTHON=$(PYTHON) scripts/bootstrap

demo: install ## the main job: a merchant month through the local stack, every payout reconciled, report.html
	$(BIN)/ledgerstream demo

test: install ## run every test (starts the local stack for the integration tests, stops it after)
	scripts/browser
	$(BIN)/pytest

test-unit: install ## unit and contract tests only (no servers)
	$(BIN)/pytest tests/unit tests/contract

lint: install ## ruff, mypy and the import contracts (pyproject.toml, [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ledgerstream benchmarks
	$(BIN)/lint-imports

bench: install ## print benchmark figures (docs/benchmarks.md): webhook, backfill, processor, sink, end to end, 100k events, generator
	$(BIN)/python -m benchmarks.webhook_bench
	$(BIN)/python -m benchmarks.backfill_bench
	$(BIN)/python -m benchmarks.processor_bench --memory 1000,4000
	$(BIN)/python -m benchmarks.processor_bench --rounds 0 --scale 2 --customers 400
	$(BIN)/python -m benchmarks.processor_bench --timeline 10000
	$(BIN)/python -m benchmarks.sink_bench --customers 60 --modes single,batch,auto
	$(BIN)/python -m benchmarks.sink_bench --customers 60 --latency-sigma 0.5
	$(BIN)/python -m benchmarks.sink_bench --customers 60 --errors 429=0.05
	$(BIN)/python -m benchmarks.sink_index_bench
	$(BIN)/python -m benchmarks.e2e_bench
	$(BIN)/python -m benchmarks.scale_bench
	$(BIN)/python scripts/generator_bench.py

chaos: install ## the chaos suite, full size: 20 rounds of kills and NetSuite faults vs an undisturbed run
	$(BIN)/python -m ledgerstream.testing.chaos --rounds 20

stack-up: install ## start Kafka, Apicurio Registry and stripe-mock (fetched and cached on first use)
	$(BIN)/ledgerstream stack up

stack-down: install ## stop what stack-up started
	$(BIN)/ledgerstream stack down

stack-status: install ## each server of the stack and its version
	$(BIN)/ledgerstream stack status

docker-up: ## the same stack with Docker (where a Docker engine exists)
	docker compose -f docker-compose.kafka.yml up -d --wait

docker-down: ## stop the Docker stack
	docker compose -f docker-compose.kafka.yml down -v

clean: ## remove the virtualenv and the stack's state (not the download cache)
	-$(BIN)/ledgerstream stack down --wipe
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: help install demo test test-unit lint bench chaos stack-up stack-down stack-status docker-up docker-down clean
