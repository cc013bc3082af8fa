# shift-airflow: the two commands are `make demo` and `make test`.
# Both bootstrap what they need (Debian packages, .venv with pinned packages).

VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
ROWS ?= 1000000

.PHONY: bootstrap test demo demo-stop bench clean

bootstrap:
	@bash scripts/bootstrap.sh

test: bootstrap
	@$(PY) -m pytest $(PYTEST_ARGS)

demo: bootstrap
	@bash scripts/demo.sh

demo-stop:
	@bash scripts/demo.sh stop

bench: bootstrap
	@$(PY) scripts/bench.py --rows $(ROWS)

clean:
	rm -rf $(VENV) .demo
