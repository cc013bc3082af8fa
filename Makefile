# shift-airflow: the two commands are `make demo` and `make test`.
# Both bootstrap what they need (Debian packages, .venv with pinned packages).

VENV := .venv
PY := $(VENV)/bin/python
# Four pytest-xdist workers on CI's two cores, whole files each (module fixtures and file-level state
# stay in one process; every worker starts its own MariaDB, API servers and Airflow home). Much of a
# test is waiting (pt-osc's throttled chunks, polls, lock bounds), so four workers keep both cores
# busy; every timing bound in the tests is a generous liveness bound, marked as such. Files start
# longest first (tests/conftest.py LONGEST_FIRST, kept in that order by --no-loadscope-reorder).
# PYTEST_ARGS= runs serially.
PYTEST_ARGS ?= -n 4 --dist loadfile --no-loadscope-reorder
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
