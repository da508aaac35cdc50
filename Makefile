# `make demo` and `make test` build .venv from the exact pins in requirements.lock on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_ARGS ?= --quick

.PHONY: demo demo-full weights browser java test venv bench clean

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

# The VQA caption metrics (pycocoevalcap's METEOR and PTB tokenizer, tests/test_vqa.py) run Java; as
# root (CI) this installs Debian's default-jre-headless when missing, otherwise those tests skip.
# (Slim Debian images lack the man1 folder the JRE's install script links into.)
java:
	@command -v java >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			mkdir -p /usr/share/man/man1 && apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; \
		else echo "java not found (as root: apt-get install default-jre-headless); the VQA metric tests will skip"; fi; }

# Two test processes on two cores: one BLAS/OpenMP thread each, or they oversubscribe the CPU.
test: $(STAMP) browser java
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
