# kafka-backup developer entry points. Everything installs into git-ignored folders
# (.venv/ for Python, .cache/ for Kafka jars, LocalStack, Azurite, fake-gcs-server).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install services-install services-start services-stop demo test test-unit lint bench clean tools infra-check

help:
	@echo "make demo    - start a local Kafka broker, load sample data, back it up into ./demo-backup"
	@echo "make test    - lint, type-check and run every test against the real local services"
	@echo "make bench   - run the benchmarks in bench/ (prints figures)"
	@echo "make tools   - build OpenTofu, tflint, providers, the Lambda emulator, checkov (cached outside the repo)"
	@echo "make infra-check - fmt, tflint, checkov and validate every module in infra/terraform/"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[aws,azure,gcp,dev]'
	touch $@

install: $(VENV)/.installed

services-install: install
	$(BIN)/python -m dev.services install

services-start: services-install
	$(BIN)/python -m dev.services start

services-stop:
	$(BIN)/python -m dev.services stop

demo: install
	$(BIN)/python -m dev.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test-unit: install
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

# Built once per version into ${KAFKA_BACKUP_TOOLS_CACHE:-~/.cache/kafka-backup/tools} (~20 min cold on
# 2 cores, well under a second when cached); see dev/tools.py.
tools: install
	$(BIN)/python -m dev.tools install

infra-check: tools
	$(BIN)/python -m dev.terraform_check

# Services are started once per pytest session by fixtures (and reused if already running).
test: lint services-install tools
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The AWS Lambda deployment package, dist/kafka-backup-lambda-$(LAMBDA_ARCH).zip (functions/aws/build.py;
# pip fetches manylinux wheels for Python 3.11). LAMBDA_ARCH=arm64 for Graviton.
LAMBDA_ARCH ?= x86_64
.PHONY: lambda-package
lambda-package: install
	$(BIN)/python functions/aws/build.py --arch $(LAMBDA_ARCH)

bench: install services-install
	$(BIN)/python -m bench.backup_bench

clean:
	rm -rf $(VENV) .cache demo-backup .pytest_cache .mypy_cache .ruff_cache
