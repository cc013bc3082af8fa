# shift-airflow: the two commands are `make demo` and `make test`.
# Both bootstrap what they need (Debian packages, .venv with pinned packages).

VENV := .venv
PY := $(VENV)/bin/python
# Four pytest-xdist workers, whole files each (module fixtures and file-level state stay in one
# process; every worker starts its own MariaDB, API servers and Airflow home). Most of a test's
# time is spent waiting (on pt-osc, MariaDB, polls), so four keep two cores busy: with two, the
# suite used about half of the CPU. PYTEST_ARGS= runs serially.
PYTEST_ARGS ?= -n 4 --dist loadfile
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
	@$(PY) scripts/bench_waits.py

clean:
	rm -rf $(VENV) .demo
