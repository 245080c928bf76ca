# Set-up and the two README commands. `make demo` runs the main job on the built-in synthetic
# data; `make test` runs lint, types and the test suite (what CI runs through .ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= data/synth
MODEL  ?= models/demo
INDEX  ?= index/demo
REPORT ?= reports/demo
# On these machines `pip install torch==2.13.0` takes the CPU wheel that lies on disk; see the
# docs/deployment.md ("GPU install") for a CUDA machine.
TORCH  ?= torch==2.13.0
# The network's mask branch (issue 28): its loss beside FP reduction, on the nodules' masks
# (synthetic outlines; VOI masks and inserted shapes for the real model). The service sizes a
# queried nodule with it; 0 trains no branch (region growing sizes then).
SEG    ?= --segmentation-weight 0.5

# The real-data model (`make real-model`, issue #15): the synthetic pretraining above, then
# fine-tuning on the real LIDC VOIs (positives) and real non-nodule crops of the four whole
# real CTs (negatives), from ../shared/data or $NODULE_SHARED_DATA. The recipe is the one the
# patient-grouped cross-validation chose (bench/results/real_cv.md).
SHARED      ?= $(or $(NODULE_SHARED_DATA),../shared/data)
REAL_DATA   ?= data/real-ins
# The catalogue of real nodules: the VOIs alone (no negatives, no inserted shapes).
REAL_VOIS   ?= data/vois
REAL_MODEL  ?= models/real
REAL_INDEX  ?= index/real
REAL_REPORT ?= reports/real
# Real LIDC shapes rendered into the real CTs too: the best recipe with the edge policy.
REAL_SET    ?= --negatives-per-scan 250 --inserted-per-scan 75
REAL_TRAIN  ?= --init $(MODEL) --outside edge --lr 5e-4 --epochs 5 --intensity-jitter 0.02 \
	--scale-jitter 0.1 --select last $(SEG)
# The held-out subset the card's validation numbers come from: the CPTAC patient's (another
# scanner and kernel than the LIDC scans trained on) with its VOI-less negatives.
REAL_VAL    ?= subset7

.PHONY: compose-test test-fast venv demo serve test lint system-deps clean real-model real-eval \
	ohif serve-ohif ohif-demo

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# pip >= 25.1 understands [dependency-groups] (--group dev).
	$(BIN)/pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/pip install --quiet "$(TORCH)"
	# The ray extra too: its executor is tested for real (the core install stays without it).
	$(BIN)/pip install --quiet -e ".[ray]" --group dev
	touch $@

venv: $(BIN)/.installed

# `make demo` ends by serving the catalogue it built; `make demo SERVE=0` stops after the
# evaluation (scripts, CI). A re-run reuses the synthetic set, the trained model and the
# vectors of unchanged nodules, so it costs a build and an evaluation.
SERVE  ?= 1
HOST   ?= 127.0.0.1
PORT   ?= 8000
TIMES  := $(REPORT)/demo-times.txt
SHELL  := /bin/bash

# $(call step,NAME,COMMAND): run one demo step and record how long it took.
define step
	@echo "[demo] $(1)"; SECONDS=0; $(2) && echo "[demo] $(1): $${SECONDS} s" | tee -a $(TIMES)
endef

demo: venv
	@mkdir -p $(REPORT) && : > $(TIMES)
	$(call step,synth,$(BIN)/nodule-index synth --out $(DATA) --reuse)
	$(call step,labels,$(BIN)/nodule-index labels --annotations $(DATA)/annotations.csv \
		--synthetic $(DATA) --out $(DATA)/labels.csv)
	$(call step,describe,$(BIN)/nodule-index describe --data $(DATA))
	@# Trains the FP-reduction network, or reuses the one trained before on the same data.
	$(call step,train,$(BIN)/nodule-index train --data $(DATA) --out $(MODEL) $(SEG))
	@# A new catalogue version (vectors of unchanged nodules are reused), then its check.
	$(call step,build,$(BIN)/nodule-index build --data $(DATA) --model $(MODEL) --index $(INDEX))
	$(call step,verify,$(BIN)/nodule-index verify --index $(INDEX))
	@# Leave-one-out retrieval vs the baselines; ends by printing the report's tables.
	$(call step,evaluate,$(BIN)/nodule-index evaluate --index $(INDEX) --out $(REPORT))
	@echo "[demo] step times (s): $$(tr '\n' ' ' < $(TIMES)| sed 's/\[demo\] //g')"
	@if [ "$(SERVE)" != 0 ]; then $(MAKE) --no-print-directory serve; fi

real-model: venv
	@test -d "$(SHARED)/lidc_vois" || { echo "real-model needs $(SHARED)/lidc_vois (set NODULE_SHARED_DATA)"; exit 2; }
	$(BIN)/nodule-index synth --out $(DATA) --reuse
	$(BIN)/nodule-index train --data $(DATA) --out $(MODEL) $(SEG)
	$(BIN)/nodule-index real-set --shared $(SHARED) --out $(REAL_DATA) $(REAL_SET)
	$(BIN)/nodule-index train --data $(REAL_DATA) --out $(REAL_MODEL) --val-subset $(REAL_VAL) \
		$(REAL_TRAIN)
	@# The recipe cross-validated by patient (the honest numbers; reports/real/cv). The folds
	@# choose the search vector's blocks by nested CV (issue 29) and the mask policy; both go
	@# into the real model's card, the blocks fitted on every rated VOI with its features.
	$(BIN)/nodule-index crossval --data $(REAL_DATA) --out $(REAL_REPORT)/cv --search-blocks \
		--set-search $(REAL_MODEL) --set-mask-policy $(REAL_MODEL) -- $(REAL_TRAIN)

# The real VOIs indexed with the real model and evaluated (leave-one-out: optimistic, the model
# and its search space were fitted on most of them; reports/real/cv has the honest numbers).
real-eval: real-model
	$(BIN)/nodule-index import-crops --csv $(SHARED)/lidc_vois/nodules.csv --out $(REAL_VOIS) \
		--on-error skip
	$(BIN)/nodule-index build --data $(REAL_VOIS) --model $(REAL_MODEL) --index $(REAL_INDEX) \
		--labels $(REAL_VOIS)/labels.csv
	$(BIN)/nodule-index evaluate --index $(REAL_INDEX) --out $(REAL_REPORT) --exclude-same-patient

# OHIF (issue 30, docs/ohif.md): the pinned @ohif/app bundle from the npm registry, checked
# against its pinned SHA-512 and unpacked into build/ohif/<version> (never in git).
OHIF_DIR   ?= build/ohif
OHIF_PORT  ?= 3000

ohif: venv
	$(BIN)/nodule-ohif fetch --out $(OHIF_DIR)

# OHIF with the panel over NODULE_DICOMWEB_URL's PACS, forwarding the panel's calls to the
# service of `make serve` (the same HOST and PORT); Ctrl-C stops it.
serve-ohif: ohif
	NODULE_OHIF_API_URL=http://$(HOST):$(PORT) $(BIN)/nodule-ohif serve --host $(HOST) \
		--port $(OHIF_PORT)

# The whole round on this machine: Debian's Orthanc holding the real LIDC series of
# ../shared/data, the service on the demo catalogue (`make demo` first) reading from it, and
# OHIF with the panel at http://127.0.0.1:$(OHIF_PORT)/; Ctrl-C stops all three.
ohif-demo: ohif system-deps
	$(BIN)/python -m scripts.ohif_demo --shared $(SHARED) --index $(INDEX) --api-port $(PORT) \
		--ohif-port $(OHIF_PORT) --ohif-dist $(OHIF_DIR)

# The service on the demo catalogue: the viewer at /, the API at /docs; Ctrl-C stops it.
serve: venv
	@echo "[demo] nodule-search serves $(INDEX) at http://$(HOST):$(PORT)/ (viewer) and" \
		"http://$(HOST):$(PORT)/docs (API); Ctrl-C stops it"
	NODULE_INDEX_DIR=$(INDEX) NODULE_DATA_DIR=$(DATA) $(BIN)/nodule-api --host $(HOST) --port $(PORT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile .ci/standin.Dockerfile

# System packages the tests drive for real: Debian's Chromium (the viewer's end-to-end test,
# through Playwright; nothing downloads a browser) and Orthanc with its DICOMweb plugin (the PACS
# tests), and dicom3tools (dciodvfy validates the DICOM SR a search writes). Installed when
# missing (root, or sudo).
SYSTEM_PACKAGES := chromium orthanc orthanc-dicomweb dicom3tools

system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -x /usr/sbin/Orthanc ] || missing="$$missing orthanc"; \
	[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing="$$missing orthanc-dicomweb"; \
	command -v dciodvfy >/dev/null 2>&1 || missing="$$missing dicom3tools"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# `ohif`: the OHIF round's browser tests need the bundle (fetched once, then reused).
test: lint system-deps ohif
	$(BIN)/python -m pytest

# The inner loop: lint and every test not marked slow (no browser, Ray cluster, killed builds,
# real-CT set or schemathesis run); about 1.5 minutes on 2 cores. CI runs `make test`.
test-fast: lint
	$(BIN)/python -m pytest -m "not slow" -q

# The Docker image and the compose stack, built and run for real (docs/docker.md): installs
# Docker from Debian when missing, starts (and stops) dockerd, builds the image, runs
# `docker-compose up` on a small synthetic catalogue, a search, a restart, `down -v`. Root only.
# CI runs it after `make test`.
compose-test:
	.ci/compose-test

clean:
	rm -rf $(VENV) data models index reports build .mypy_cache .ruff_cache .pytest_cache
