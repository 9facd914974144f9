# SORL Lab — every target bootstraps first (scripts/bootstrap.sh is a
# sub-second no-op once .venv is up to date).
#
#   make app     the Streamlit app on http://localhost:8501
#   make test    the whole test suite (this is what CI runs)
#   make lab     JupyterLab on notebooks/
#   make bench   the training/sampling benchmark, as JSON
#   make bench-app  the lab's slider-to-update time in a real browser
#   make bench-class  thirty simulated students (and ten pressing Run together) against one server
#   make gpu-check  on a CUDA machine: the cuda tests, the paper-size benchmark, a short
#                paper-size training (scripts/gpu_check.sh; says so and exits 0 without a GPU)
#   make setup   bootstrap only
#   make clean   caches and build output (make distclean also drops .venv)

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

# Bind to localhost only; override e.g. make app APP_PORT=8502
APP_HOST ?= localhost
APP_PORT ?= 8501
LAB_PORT ?= 8888
APP_WARM ?= 1
APP_ARENAS ?= 2
# (APP_HOST/APP_PORT, not HOST/PORT: some shells and platforms export those.)
# Extra pytest arguments, e.g. make test ARGS="-k shortcut -x"; ARGS="-n 0" runs the files one after the other
# (needed for -s, whose prints a worker process would swallow).
ARGS ?=
# One worker process per core (at most 4), each taking whole files so a file's shared fixtures are built once;
# tests/conftest.py splits the cores' threads between the workers.
PYTEST_FLAGS ?= -q --timeout=600 --durations=15 -n auto --maxprocesses 4 --dist loadfile
# A test skipped because something the set-up installs is missing (ogbench, streamlit, playwright, chromium, ray, ...)
# fails the run (tests/conftest.py); make test SORL_LAB_REQUIRE_ALL=0 accepts such skips on a partial install.
SORL_LAB_REQUIRE_ALL ?= 1

.PHONY: setup app test lab bench bench-app bench-class gpu-check clean distclean

setup:
	@bash scripts/bootstrap.sh

# The server as a class uses it (docs/CLASSROOM.md): settings in .streamlit/config.toml, at most APP_ARENAS glibc
# malloc arenas (memory goes back when students leave), and app/warm.py opening every page once in the background
# so the first students get pages from warm caches (APP_WARM=0 skips it).
app: setup
	@if [ "$(APP_WARM)" = 1 ]; then $(PY) -m app.warm --url http://127.0.0.1:$(APP_PORT) & fi; \
	MALLOC_ARENA_MAX=$(APP_ARENAS) exec $(PY) -m streamlit run app/Home.py \
		--server.headless true --browser.gatherUsageStats false \
		--server.address $(APP_HOST) --server.port $(APP_PORT)

# pytest exits 5 when it collects no test; make turns any non-zero exit
# into a failure, so an empty run fails CI.
test: setup
	SORL_LAB_REQUIRE_ALL=$(SORL_LAB_REQUIRE_ALL) $(PY) -m pytest $(PYTEST_FLAGS) $(ARGS)

# Jupyter refuses to run as root (containers, CI) unless told --allow-root.
lab: setup
	$(VENV)/bin/jupyter lab --no-browser --ip=$(APP_HOST) --port=$(LAB_PORT) \
		--ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(VENV)/bin/sorl-lab bench --json

# Needs Debian's chromium (bootstrap installs it); prints a table of per-move times.
bench-app: setup
	$(PY) benchmarks/app_latency.py

# Needs chromium for the two real tabs beside the simulated students; reports go to test-artifacts/classroom/.
bench-class: setup
	$(PY) benchmarks/classroom.py --students 30 --minutes 10
	$(PY) benchmarks/classroom.py --scenario rollouts --students 10 --browsers 0

gpu-check: setup
	bash scripts/gpu_check.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache test-artifacts
	find . -path ./$(VENV) -prune -o \
		\( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
