# Two commands matter on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean dataset extract-tools

venv: $(STAMP)

# Pinned by constraints.txt (regenerate with `$(PY) -m pip freeze`); torch resolves to the CPU wheel on disk.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m services.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared
	$(PY) -m tools.lint_deploy

bench: $(STAMP)
	@echo "benchmarks: $(BENCHES)"
	@for b in $(BENCHES); do $(MAKE) --no-print-directory $$b || exit 1; done

BENCHES := bench-blobs bench-extract

bench-blobs: $(STAMP)
	$(PY) -m benchmarks.blobs

# Debian's assimp converts the ASCII FBX files Blender's importer refuses (blender_worker.loader).
extract-tools:
	command -v assimp >/dev/null || (apt-get update -qq && apt-get install -y -qq assimp-utils)

bench-extract: $(STAMP) extract-tools
	$(PY) -m benchmarks.extract --workers 2

clean:
	rm -rf $(VENV) var dist

# Labels, quality filter, dedup and datasets on a corpus sample (about 300 .blend files, every
# pack), embedded default under var/: reports and plots in var/datasets/sample/<specialist>/.
dataset: $(STAMP)
	$(PY) -m services.labeler run --per-pack 5 --name sample
