# Two entry points for a new user: `make demo` and `make test` (see README.md).
# Every target creates the virtual environment itself when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LIGHTONML_STAMP := $(VENV)/.lightonml

.PHONY: demo test bench lint clean venv mutation

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m host.demo

# lightonml 1.4.3 only installs with --no-deps (its numexpr==2.7 pin does not build on Python >= 3.10);
# its runtime needs come from the `lightonml` extra. The driver tests run lightonml:simulated.
$(LIGHTONML_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[lightonml]'
	$(PY) -m pip install --quiet --no-deps lightonml==1.4.3
	touch $(LIGHTONML_STAMP)

test: $(STAMP) $(LIGHTONML_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest --nbmake tests notebooks

bench: $(STAMP) $(LIGHTONML_STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m pip install --quiet --no-deps lightonml==1.4.3
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
		echo "Fashion-MNIST found in /usr/share/datasets/fashion-mnist"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) \
		|| echo "could not install dataset-fashion-mnist: bench/dfa.py will say what it skips"; \
	else \
		echo "skipped installing dataset-fashion-mnist (needs root and apt): bench/dfa.py will say what it skips"; \
	fi
	$(PY) bench/run_all.py

# Mutation testing (docs/testing.md): not part of `make test` or CI; tens of minutes per module.
mutation: $(STAMP)
	$(PY) -m pip install --quiet -e '.[mutation]'
	nice -n 10 $(PY) bench/mutation.py $(MUTATION_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) bench/results/*.json .pytest_cache
