# Developer entry points. `make test` is what CI runs (via .ci/run). On Debian and Ubuntu they set
# up what is missing (scripts/ensure-*.sh): with apt-get as root or with passwordless sudo, else
# they stop printing the command to run.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
# Stamp: reinstall only when the package metadata changes.
INSTALLED := $(VENV)/.installed
# Debian keeps rabbitmq-server in /usr/sbin, which is not on a normal user's PATH
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: install broker postgres docker-compose graphviz run test validate compose-check clean

install: $(INSTALLED)

$(INSTALLED): setup.cfg setup.py
	scripts/ensure-venv.sh $(PYTHON) $(VENV)
	$(PIP) install -q -e '.[postgres,gateway,test,bench]'
	touch $@

# Installs and starts the local broker only when AMQP_URI is unset or points at localhost (see
# the script).
broker:
	scripts/ensure-rabbitmq.sh

# The tests' PostgreSQL (POSTGRES_URL, default postgres@127.0.0.1:5432), installed and started
# when it is the default and does not answer.
postgres:
	scripts/ensure-postgres.sh

# Optional: without it tests/test_compose.py skips the `docker-compose config -q` check.
docker-compose:
	scripts/ensure-docker-compose.sh

# Graphviz's dot, for `nameko-topology export --format svg` and its test.
graphviz:
	scripts/ensure-graphviz.sh

# The whole pipeline in the foreground; Ctrl-C stops it. Reads PORT, AMQP_URI, DATA_DIR (logs go
# to DATA_DIR/logs unless LOG_DIR is set). Needs only the broker: SQLite is the default database.
run: install broker
	$(VENV)/bin/python -m scripts.stack

test: install broker postgres docker-compose graphviz
	$(VENV)/bin/pytest

validate: install
	$(VENV)/bin/nameko-topology validate topology.yaml

compose-check:
	docker-compose config -q

clean:
	rm -rf data logs run build dist .pytest_cache *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
