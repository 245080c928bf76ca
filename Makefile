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
# README ("GPU install") for a CUDA machine.
TORCH  ?= torch==2.13.0

.PHONY: venv demo serve test lint system-deps clean

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
	$(call step,train,$(BIN)/nodule-index train --data $(DATA) --out $(MODEL))
	@# A new catalogue version (vectors of unchanged nodules are reused), then its check.
	$(call step,build,$(BIN)/nodule-index build --data $(DATA) --model $(MODEL) --index $(INDEX))
	$(call step,verify,$(BIN)/nodule-index verify --index $(INDEX))
	@# Leave-one-out retrieval vs the baselines; ends by printing the report's tables.
	$(call step,evaluate,$(BIN)/nodule-index evaluate --index $(INDEX) --out $(REPORT))
	@echo "[demo] step times (s): $$(tr '\n' ' ' < $(TIMES)| sed 's/\[demo\] //g')"
	@if [ "$(SERVE)" != 0 ]; then $(MAKE) --no-print-directory serve; fi

# The service on the demo catalogue: the viewer at /, the API at /docs; Ctrl-C stops it.
serve: venv
	@echo "[demo] nodule-search serves $(INDEX) at http://$(HOST):$(PORT)/ (viewer) and" \
		"http://$(HOST):$(PORT)/docs (API); Ctrl-C stops it"
	NODULE_INDEX_DIR=$(INDEX) NODULE_DATA_DIR=$(DATA) $(BIN)/nodule-api --host $(HOST) --port $(PORT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# System packages the tests drive for real: Debian's Chromium (the viewer's end-to-end test,
# through Playwright; nothing downloads a browser) and Orthanc with its DICOMweb plugin (the PACS
# tests). Installed when missing (root, or sudo).
SYSTEM_PACKAGES := chromium orthanc orthanc-dicomweb

system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -x /usr/sbin/Orthanc ] || missing="$$missing orthanc"; \
	[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing="$$missing orthanc-dicomweb"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: lint system-deps
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) data models index reports .mypy_cache .ruff_cache .pytest_cache
