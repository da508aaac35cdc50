# `make demo` and `make test` build .venv from the exact pins in requirements.lock on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_ARGS ?= --quick

.PHONY: demo demo-full weights browser test venv bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/liftgs demo $(DEMO_ARGS)

demo-full: $(STAMP)
	$(VENV)/bin/liftgs demo

# The shipped weights (liftgs/weights): the full demo's models, copied into the package.
weights: $(STAMP)
	$(VENV)/bin/liftgs demo --export-weights liftgs/weights

# The viewer's browser test (tests/test_viewer_browser.py) drives Debian's chromium through
# playwright; as root (CI) this installs it when missing, otherwise that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium not found (as root: apt-get install chromium); the browser test will skip"; fi; }

# Two test processes on two cores: one BLAS/OpenMP thread each, or they oversubscribe the CPU.
test: $(STAMP) browser
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
