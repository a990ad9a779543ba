# The two commands of the README's quick start. Each creates the environment first if needed.
#   make book   build the HTML book, executing every chapter, warnings as errors
#   make test   run every test: unit tests, the warning-free book build, the browser tests, every
#               page in a Colab-like environment and as a student notebook
# And the one that writes the lock file:
#   make lock   regenerate requirements.txt (every pin, with hashes) from requirements.in
# After `make book`, the notebooks for Colab and Jupyter:
#   make editions   write editions/reader, editions/student, editions/instructor from the pages the
#                   build executed, their set-up cell pinned to COMMIT (default: git HEAD)
# After `make test` (its browser tests photograph the live page in artifacts/screenshots/):
#   make readme-picture   copy the live panel, mid-drawing, to docs/live-panel.png (the README's
#                         picture); the tests themselves never write into the repository
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
UV     := $(BIN)/python -m uv

# The Python that creates .venv: PYTHON if given (make PYTHON=/path/to/python3.12 ...), else the
# first supported one of these on PATH. Supported: 3.11 to 3.13 (numpy 2.4, Keras 3.15 and
# Matplotlib 3.11 need 3.11 or newer; TensorFlow 2.21 has no wheels past 3.13). Colab runs 3.12.
PYTHONS   := python3.12 python3.13 python3.11 python3 python
PY_CHECK  := import sys; print("Python %d.%d.%d" % sys.version_info[:3]); sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
ifndef PYTHON
ifeq ($(wildcard $(BIN)/python),)
PYTHON := $(or $(firstword $(foreach p,$(PYTHONS),$(shell $(p) -c '$(PY_CHECK)' >/dev/null 2>&1 && echo $(p)))),python3)
endif
endif

.PHONY: book test env lock editions readme-picture check-python clean

book: $(STAMP)
	$(BIN)/jupyter-book build . --all -W -n --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest

env: $(STAMP)

# One line, and a non-zero exit, when the Python at hand (that of .venv if it exists) is not
# a supported one.
PY_AT_HAND = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
PY_ADVICE  = $(if $(wildcard $(BIN)/python),remove $(VENV) and run make again,install one or run make PYTHON=/path/to/python3.12 $(or $(MAKECMDGOALS),book))
check-python:
	@found=$$("$(PY_AT_HAND)" -c '$(PY_CHECK)' 2>/dev/null) || { \
	  echo "MNIST Lessons needs Python 3.11 to 3.13; found $${found:-no Python} ($(PY_AT_HAND)): $(PY_ADVICE)" >&2; \
	  exit 1; }

# uv, which installs and writes the lock, bootstrapped into .venv by pip at the lock's own
# version and hashes (the lock's uv entry, cut out of it).
$(BIN)/uv: requirements.txt | check-python
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	awk '/^uv==/ {on = 1} on {print} on && !/\\$$/ {exit}' requirements.txt > $(VENV)/uv-requirement.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r $(VENV)/uv-requirement.txt
	touch $(BIN)/uv

# Make .venv exactly the lock (every package hash-checked; anything else removed; compiled to
# bytecode, as pip does by default and uv only when asked: without it, where
# PYTHONDONTWRITEBYTECODE is set, every kernel compiles TensorFlow's Python again), install the
# package on its own (`pip install -e .` without dependencies, from the lock's setuptools), check
# the environment is consistent, and prepare the offline MNIST cache (fetch, verify, convert).
# The browser tests drive Debian's Chromium: installed here when missing and we are root
# (CI); elsewhere they are skipped with a message saying how to install it.
$(STAMP): requirements.txt pyproject.toml $(BIN)/uv
	$(UV) pip sync --quiet --python $(BIN)/python --compile-bytecode --require-hashes requirements.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m mnist_lessons.data
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: Chromium is not installed; the browser tests will be skipped"
	command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } || \
	  echo "note: bubblewrap is not installed; the grader (mnist_lessons.tools.grade) needs it"
	touch $(STAMP)

# The lock file: every package for every platform and for Python 3.11 to 3.13 (universal
# resolution: tensorflow-cpu and tensorflow each under its platform marker), with the hashes of
# all their files. Versions already in requirements.txt are kept unless requirements.in changes
# them. Then `make test` installs the new lock.
lock: $(BIN)/uv
	$(UV) pip compile requirements.in --universal --python-version 3.11 --generate-hashes \
	  --custom-compile-command "make lock" --quiet --output-file requirements.txt

editions: $(STAMP)
	$(BIN)/python -m mnist_lessons.tools.editions --executed _build/jupyter_execute/book --out editions \
	  $(if $(COMMIT),--commit $(COMMIT))

readme-picture:
	@test -f artifacts/screenshots/live-panel-drawing.png || { \
	  echo "no artifacts/screenshots/live-panel-drawing.png: run make test first (with Chromium)" >&2; exit 1; }
	cp artifacts/screenshots/live-panel-drawing.png docs/live-panel.png

clean:
	rm -rf _build
