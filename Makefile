# The two commands of the README's quick start. Each creates the environment first if needed.
#   make book   build the HTML book, executing every chapter, warnings as errors
#   make test   run every test: pytest unit tests and nbval over every notebook in book/
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test env clean

book: $(STAMP)
	$(BIN)/jupyter-book build . --all -W -n --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest

env: $(STAMP)

# Create the virtual environment, install the exact pins and the package, check the
# environment is consistent, and prepare the offline MNIST cache (fetch, verify, convert).
# The browser tests drive Debian's Chromium: installed here when missing and we are root
# (CI); elsewhere they are skipped with a message saying how to install it.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m mnist_lessons.data
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: Chromium is not installed; the browser tests will be skipped"
	touch $(STAMP)

clean:
	rm -rf _build
