# The two commands the README opens with: `make demo` and `make test`.
# Both create their own virtualenv (.venv, override with VENV=...) and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-fast install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,test,data,eval,demo,litert]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m massivetext_tf demo --export-dir saved_models $(DEMO_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile --timeout 1200 $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
