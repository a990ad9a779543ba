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
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m mnist_lessons.data
	touch $(STAMP)

clean:
	rm -rf _build
