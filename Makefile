# The whole set-up on a fresh machine is one of these two commands; each installs what it needs.
#   make app    start the playground on the demo pair (http://localhost:8501)
#   make test   run the test suite (CPU, no network)
#   make dev    the playground with the file watcher on (pages reload when edited)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: app dev test test-one-thread bench
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# the file watcher is off (a long session otherwise floods the terminal with "Inotify queue overflowed");
# `make dev` keeps it on, so an edited page reloads
app: $(VENV)/.installed
	$(PY) -m streamlit run app.py --server.fileWatcherType none

dev: $(VENV)/.installed
	$(PY) -m streamlit run app.py --server.fileWatcherType auto --server.runOnSave true

# the browser test drives Debian's chromium (installed here when missing; needs root or sudo)
/usr/bin/chromium:
	(command -v apt-get >/dev/null && (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium))) \
	  || echo "chromium not installed: the browser test will be skipped"

test: $(VENV)/.installed /usr/bin/chromium
	$(PY) -m pytest -q --durations=20

# the float comparisons again on one thread: another reduction order, as another processor would give (CI runs it)
test-one-thread: $(VENV)/.installed
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -m numeric --durations=10

bench: $(VENV)/.installed
	$(PY) -m pip install -q nnsight
	$(PY) -m bench  # the foundation, the playground, then one benchmark per study of analyses.STUDIES
