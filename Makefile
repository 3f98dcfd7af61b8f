# The whole set-up on a fresh machine is one of these two commands; each installs what it needs.
#   make app    start the playground on the demo pair (http://localhost:8501)
#   make test   run the test suite (CPU, no network)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: app test bench
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

app: $(VENV)/.installed
	$(PY) -m streamlit run app.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m pip install -q nnsight
	$(PY) -m bench.foundation
