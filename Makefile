# Two commands matter on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean dataset dataset-full extract-tools gpu-bundle eval-geometry geometry-classifier eval-material eval-modifier

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
	$(PY) -m tools.lint_addon

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

BENCHES += bench-extract-memory
bench-extract-memory: $(STAMP)
	$(PY) -m benchmarks.extract_memory

BENCHES += bench-faults
bench-faults: $(STAMP)
	$(PY) -m benchmarks.faults

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
# folder; empty uses synthetic primitives (eval-geometry: the dataset named full). GEOMETRY_CHECKPOINT:
# the models to evaluate side by side (space-separated; the first is the primary one: the served
# parts model, then parts-small and the flat one); bench-generate, bench-serving and bench-uv time the last named (a flat
# decoder, as their README numbers).
GEOMETRY_MESHES ?=
GEOMETRY_DATASET ?=
GEOMETRY_CHECKPOINT ?= models/geometry/parts-nearest/model.pt models/geometry/parts-small/model.pt models/geometry/tiny/model.pt

bench-tokenizer: $(STAMP)
	$(PY) -m benchmarks.tokenizer $(GEOMETRY_MESHES)

bench-generate: $(STAMP)
	$(PY) -m benchmarks.generate --checkpoint $(lastword $(GEOMETRY_CHECKPOINT)) $(if $(GEOMETRY_DATASET),--dataset $(GEOMETRY_DATASET))

# Triton under concurrent requests: dynamic batching against --max-batch 1.
bench-serving: $(STAMP)
	$(PY) -m benchmarks.serving --checkpoint $(lastword $(GEOMETRY_CHECKPOINT))

# Test split: every generator, retrieval and the real meshes judged by the committed shape classifier
# (models/geometry/classifier), set metrics, the prompt sheet; var/eval/geometry/metrics.json and PNGs.
# EVAL_LIMIT=N scores only the first N test items.
eval-geometry: $(STAMP)
	$(PY) -m services.trainer.evaluate_geometry $(foreach c,$(GEOMETRY_CHECKPOINT),--checkpoint $(c)) \
		--dataset $(or $(GEOMETRY_DATASET),full) $(if $(EVAL_LIMIT),--prompts $(EVAL_LIMIT))

# The shape classifier eval-geometry judges with, as committed (models/geometry/classifier/README.md):
# depth views and a multi-view CNN (the card measures the other inputs with --input features/points).
geometry-classifier: $(STAMP)
	$(PY) -m services.trainer geometry-classifier --dataset $(or $(GEOMETRY_DATASET),full) --threads 1 \
		--input views --epochs 30 --lr 0.005

# Material (issue 15). MATERIAL_DATASET: a material dataset name (full, after make dataset-full),
# manifest sha256 or folder. EVAL_LIMIT=N scores the first N test items.
MATERIAL_DATASET ?= full
MATERIAL_CHECKPOINT ?= models/material/tiny/model.pt

eval-material: $(STAMP)
	$(PY) -m services.trainer.evaluate_material --dataset $(MATERIAL_DATASET) --checkpoint $(MATERIAL_CHECKPOINT)

BENCHES += bench-material
bench-material: $(STAMP)
	$(PY) -m benchmarks.material --checkpoint $(MATERIAL_CHECKPOINT)
# Modifier stacks on held-out packs (derived pairs and artists' stacks) against majority,
# nearest-neighbour and rule baselines; every predicted stack applied in Blender. MODIFIER_DATASET:
# a name that `python -m services.labeler modifiers-derive --name NAME` built, or its folder.
# EVAL_LIMIT=N: the first N test items of each kind.
MODIFIER_DATASET ?= full
MODIFIER_CHECKPOINT ?= models/modifier/tiny/model.pt

eval-modifier: $(STAMP)
	$(PY) -m services.trainer.evaluate_modifier --dataset $(MODIFIER_DATASET) --checkpoint $(MODIFIER_CHECKPOINT)

# Animation (issue 17). ANIMATION_DATASET: a dataset name (full, after make dataset-full), manifest
# sha256 or folder; EVAL_LIMIT=N scores the first N test prompts. Writes var/eval/animation/.
ANIMATION_DATASET ?= full
ANIMATION_CHECKPOINT ?= models/animation/tiny/model.pt

eval-animation: $(STAMP)
	$(PY) -m services.trainer.evaluate_animation --dataset $(ANIMATION_DATASET) --checkpoint $(ANIMATION_CHECKPOINT)

BENCHES += bench-animation
bench-animation: $(STAMP)
	$(PY) -m benchmarks.animation --checkpoint $(ANIMATION_CHECKPOINT)

# What tools/gpu-runs.sh needs on a machine with PyTorch alone, in .gpu/bundle.txz (xz: the lent
# machine takes 64 MiB with the repository): the geometry dataset as a folder (its evaluation reads
# the train and val splits), every caption's and sheet prompt's embedding, and the parts
# decomposition (a local one is reused). Session 9's animation run also packed the animation
# dataset and its prompts (this target at 572d032).
gpu-bundle: $(STAMP)
	rm -rf .gpu && $(PY) -m services.labeler export $(or $(GEOMETRY_DATASET),full) --out .gpu/full
	BMT_DATA_DIR=.gpu/var $(PY) -m services.trainer embed-captions --dataset .gpu/full
	mkdir -p .gpu/var/cache && cp -r $${BMT_DATA_DIR:-var}/cache/parts .gpu/var/cache/ 2>/dev/null || true
	BMT_DATA_DIR=.gpu/var $(PY) -m services.trainer decompose --dataset .gpu/full --workers 2
	tar cf - -C .gpu full var | xz -9 -T2 > .gpu.txz && mv .gpu.txz .gpu/bundle.txz

# The Blender add-on as an installable extension zip: dist/<id>-<version>.zip.
.PHONY: addon
addon: $(STAMP)
	$(PY) -m tools.pack_addon

BENCHES += bench-addon
bench-addon: $(STAMP)
	$(PY) -m benchmarks.addon_inject

# UV maps for generated meshes: xatlas (gateway side) against Blender's Smart UV Project (injector).
# xatlas is not a dependency (the injector won): XATLAS_DIR holds `pip install --target DIR xatlas`.
XATLAS_DIR ?= var/xatlas
bench-uv: $(STAMP)
	test -d $(XATLAS_DIR)/xatlas || $(PY) -m pip install -q --target $(XATLAS_DIR) --no-deps xatlas==0.0.11
	PYTHONPATH=$(XATLAS_DIR) $(PY) -m benchmarks.uv_unwrap --checkpoint $(lastword $(GEOMETRY_CHECKPOINT))

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
