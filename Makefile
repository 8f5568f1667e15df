# Two commands matter on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean dataset dataset-full extract-tools gpu-bundle

venv: $(STAMP)

# Pinned by constraints.txt (regenerate with `$(PY) -m pip freeze`); torch resolves to the CPU wheel on disk.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

demo: $(STAMP) extract-tools
	$(PY) -m services.demo

test: $(STAMP) extract-tools
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared
	$(PY) -m tools.lint_deploy

bench: $(STAMP)
	@echo "benchmarks: $(BENCHES)"
	@for b in $(BENCHES); do $(MAKE) --no-print-directory $$b || exit 1; done

BENCHES := bench-blobs bench-extract bench-tokenizer bench-generate bench-serving

bench-blobs: $(STAMP)
	$(PY) -m benchmarks.blobs

# Debian's assimp converts ASCII FBX files, which Blender's importer refuses.
extract-tools:
	command -v assimp >/dev/null || (apt-get update -qq && apt-get install -y -qq assimp-utils)

bench-extract: $(STAMP) extract-tools
	$(PY) -m benchmarks.extract --workers 2

clean:
	rm -rf $(VENV) var dist

# Labels, quality filter, dedup and datasets on a corpus sample (5 files of every .blend and .glb
# pack, about 340 files), embedded default under var/: reports and plots in var/datasets/sample/*/.
dataset: $(STAMP)
	$(PY) -m services.labeler run --per-pack 5 --name sample

# Every corpus file (blend, glb and fbx; about 8 minutes): the dataset the geometry checkpoint is trained on.
dataset-full: $(STAMP) extract-tools
	$(PY) -m services.labeler run --per-pack 0 --formats blend,glb,fbx --name full

# Geometry (issue 7). GEOMETRY_MESHES: a folder of extracted scene documents or a geometry dataset
# manifest. GEOMETRY_DATASET: a dataset name (full, after make dataset-full), manifest sha256 or
# folder; empty uses synthetic primitives. GEOMETRY_CHECKPOINT: the model to evaluate/benchmark.
GEOMETRY_MESHES ?=
GEOMETRY_DATASET ?=
GEOMETRY_CHECKPOINT ?= models/geometry/tiny/model.pt

bench-tokenizer: $(STAMP)
	$(PY) -m benchmarks.tokenizer $(GEOMETRY_MESHES)

bench-generate: $(STAMP)
	$(PY) -m benchmarks.generate --checkpoint $(GEOMETRY_CHECKPOINT) $(if $(GEOMETRY_DATASET),--dataset $(GEOMETRY_DATASET))

# Triton under concurrent requests: dynamic batching against --max-batch 1.
bench-serving: $(STAMP)
	$(PY) -m benchmarks.serving --checkpoint $(GEOMETRY_CHECKPOINT)

eval-geometry: $(STAMP)
	$(PY) -m services.trainer.evaluate geometry --checkpoint $(GEOMETRY_CHECKPOINT) $(if $(GEOMETRY_DATASET),--dataset $(GEOMETRY_DATASET))

# Animation (issue 17). ANIMATION_DATASET: a dataset name (full, after make dataset-full), manifest
# sha256 or folder; EVAL_LIMIT=N scores the first N test prompts. Writes var/eval/animation/.
ANIMATION_DATASET ?= full
ANIMATION_CHECKPOINT ?= models/animation/tiny/model.pt

eval-animation: $(STAMP)
	$(PY) -m services.trainer.evaluate_animation --dataset $(ANIMATION_DATASET) --checkpoint $(ANIMATION_CHECKPOINT)

BENCHES += bench-animation
bench-animation: $(STAMP)
	$(PY) -m benchmarks.animation --checkpoint $(ANIMATION_CHECKPOINT)

# What models/geometry/gpu-runs.sh needs on a machine with PyTorch alone: the dataset as a folder and
# the caption embeddings, packed into .gpu/bundle.tgz (carry it, unpack it into .gpu there).
gpu-bundle: $(STAMP)
	rm -rf .gpu && $(PY) -m services.labeler export $(or $(GEOMETRY_DATASET),full) --out .gpu/full
	BMT_DATA_DIR=.gpu/var $(PY) -m services.trainer embed-captions --dataset .gpu/full
	tar czf .gpu.tgz -C .gpu full var && mv .gpu.tgz .gpu/bundle.tgz

# The Blender add-on as an installable extension zip: dist/<id>-<version>.zip.
.PHONY: addon
addon: $(STAMP)
	$(PY) -m tools.pack_addon

BENCHES += bench-addon
bench-addon: $(STAMP)
	$(PY) -m benchmarks.addon_inject

# --- scraper (services/scraper) ---
.PHONY: scrape-all bench-scrape
BENCHES += bench-scrape

# Every source in turn: local always; web sources only with BMT_SCRAPER_CRAWL_WEB=true and their tokens.
scrape-all: $(STAMP)
	$(PY) -m services.scraper all

bench-scrape: $(STAMP)
	$(PY) -m benchmarks.scrape

BENCHES += bench-labeler
bench-labeler: $(STAMP)
	$(PY) -m benchmarks.labeler
