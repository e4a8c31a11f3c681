# Two commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check install bench soak deploy-check clean audit-tools browser

# constraints.txt pins the versions the suite was last run with, so a new release elsewhere cannot break a clone.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,devstack]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/erasure demo

test: $(STAMP) audit-tools browser
	$(BIN)/pytest

# Tests run each bundle's VERIFY.txt as an auditor would, with the system's unzip, jq and openssl (bash, coreutils
# and python3 are always there); the package names equal the commands' names.
AUDIT_TOOLS := unzip jq openssl
audit-tools:
	@missing=""; for tool in $(AUDIT_TOOLS); do command -v $$tool > /dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing from Debian's packages, for the tests of VERIFY.txt"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The dashboard's browser tests drive Debian's chromium through Playwright (which cannot download its own browsers
# here). As root it is installed when missing; otherwise the tests fail saying how to install it.
browser:
	@if ! command -v chromium > /dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing chromium from Debian's packages, for the dashboard's browser tests"; \
			apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
		else \
			echo "chromium is missing: the browser tests will fail; install it with: sudo apt-get install chromium"; \
		fi; \
	fi

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain evidence connectors stores erasure activities workflows emulators examples
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/evidence_log.py
	$(BIN)/python bench/requests.py

# Not part of `make test`: 1,000 requests through three workers that are killed and restarted, with the Temporal
# dev server and the ledger's Postgres restarted once each; figures in bench/README.md. SOAK_ARGS=--requests 200 ...
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# The Dockerfile, the compose file and the rendered Kubernetes overlays, validated offline (no container engine here).
deploy-check: $(STAMP)
	$(BIN)/python deploy/manifests.py check

clean:
	rm -rf $(VENV) .erasure .pytest_cache
