# Developer entry points. `make test` is what CI runs (via .ci/run).
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
# Stamp: reinstall only when the package metadata changes.
INSTALLED := $(VENV)/.installed

.PHONY: install broker run test validate compose-check clean

install: $(INSTALLED)

$(INSTALLED): setup.cfg setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e '.[postgres,gateway,test]'
	touch $@

# Starts the local broker only when AMQP_URI is unset or points at localhost (see the script).
broker:
	scripts/ensure-rabbitmq.sh

# The whole pipeline in the foreground; Ctrl-C stops it. Reads PORT, AMQP_URI, DATA_DIR (logs go
# to DATA_DIR/logs unless LOG_DIR is set).
run: install broker
	$(VENV)/bin/python -m scripts.stack

test: install broker
	$(VENV)/bin/pytest

validate: install
	$(VENV)/bin/nameko-topology validate topology.yaml

compose-check:
	docker-compose config -q

clean:
	rm -rf data logs run build dist .pytest_cache *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
