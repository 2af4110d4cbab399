# edgevla — one-command set-up. Every target installs what it needs first (idempotent, fast when done).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
EDGEVLA := $(VENV)/bin/edgevla
export MUJOCO_GL ?= egl
export HF_HUB_OFFLINE := 1
export HF_HOME := $(CURDIR)/.cache/hf
export HF_LEROBOT_HOME := $(CURDIR)/.cache/lerobot
PYTEST_ARGS ?=

.PHONY: install litert-env test test-under-load mutation demo compare-modes soak bench firmware train-default smolvla freeze clean help

help:
	@echo "make demo   - install, then run the sim profile (full actor graph, default model, M7 host firmware) and print a summary"
	@echo "make test   - install, then run the test suite"
	@echo "make soak   - the full reliability suite (10-minute soak included)"
	@echo "make mutation - mutation testing of the core modules (report: docs/mutation/REPORT.md)"
	@echo "make test-under-load - the timing-sensitive tests 10 times beside 2 CPU hogs (log: out/test-under-load.log)"
	@echo "make compare-modes - the sim demo in async and in sync mode: idle fraction, task time, success"
	@echo "make bench  - every benchmark, full size, JSON under out/bench/"
	@echo "make litert-env - the LiteRT conversion environment (~/.cache/edgevla/venv-litert; make test and make bench build it)"
	@echo "make train-default - record the dataset and train the shipped default ACT model"
	@echo "make smolvla - record a dataset and train the shipped small SmolVLA (models/smolvla: bench rtc, graphs/sim_rtc.yaml)"

install:
	@bash scripts/install.sh

# The LiteRT conversion environment (in the user cache, outside the checkout): its pins clash with the project's.
litert-env:
	@bash scripts/install_litert.sh

firmware: install
	@$(MAKE) -s -C mcu host

test: install litert-env
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Mutation testing of the core modules (cosmic-ray in its own environment; report in docs/mutation/).
MUTATION_MODULES ?=
mutation: install
	@[ -x .venv-mutation/bin/cosmic-ray ] || { python3 -m venv .venv-mutation && \
	  .venv-mutation/bin/python -m pip -q --disable-pip-version-check install cosmic-ray==8.4.6; }
	$(PY) scripts/mutation.py $(if $(MUTATION_MODULES),--modules $(MUTATION_MODULES))

# The tests marked `timing` (wall time, processes) 10 rounds in a row beside 2 busy loops.
test-under-load: install
	$(PY) scripts/test_under_load.py --rounds $${ROUNDS:-10} --hogs $${HOGS:-2}

# Both modes at a board-class inference latency (simulated: each chunk leaves the decoder 1.5 s
# after its capture, the i.MX 95 CPU's ACT latency range), 5 episodes each, side by side.
DEMO_LATENCY_MS ?= 1500
demo: install
	@$(MAKE) -s -C mcu host
	$(EDGEVLA) demo --mode both --episodes 5 --latency-ms $(DEMO_LATENCY_MS) --out out/demo

compare-modes: install
	@$(MAKE) -s -C mcu host
	$(EDGEVLA) demo --mode both --duration 240 --out out/compare

soak: install
	mkdir -p out
	EDGEVLA_SOAK_S=600 EDGEVLA_SOAK_REPORT=out/soak.json $(PY) -m pytest -q -s tests/system/test_reliability.py $(PYTEST_ARGS)
	@echo "RSS report: out/soak.json"

bench: install litert-env
	mkdir -p out/bench
	for b in bus link executor inference rtc; do $(EDGEVLA) bench $$b --json out/bench/$$b.json || exit 1; done

train-default: install
	$(EDGEVLA) train-default --out models/default

# The shipped small SmolVLA (tiny VLM, chunk 50 at 30 fps): 40 protocol episodes, 10000 steps at
# batch 16 (about 40 min on 2 cores; resumes from out/smolvla/run), exported to models/smolvla/bundle
# all fp32 by default (at this width int8 costs 3.7% of the joint range; the int8 variants are in
# the bundle too).
SMOLVLA_STEPS ?= 10000
smolvla: install
	[ -f out/smolvla/dataset/meta/info.json ] || $(EDGEVLA) dataset record --out out/smolvla/dataset \
	  --only-clusters 0,1,2,3,4,5,7,8,9,10 --per-cluster 4
	$(EDGEVLA) train --policy smolvla --dataset out/smolvla/dataset --out out/smolvla/run \
	  --steps $(SMOLVLA_STEPS) --batch-size 16 --save-every 1000 \
	  $$([ -d out/smolvla/run/checkpoints/last ] && echo --resume)
	$(EDGEVLA) export --policy out/smolvla/run/checkpoints/last/pretrained_model \
	  --out models/smolvla/bundle --dataset out/smolvla/dataset --no-litert --rtc-vjp \
	  --precision vision=fp32,prefill=fp32,denoise=fp32 --model-id edgevla-smolvla-small

freeze:
	@{ head -2 constraints.txt; echo "# Exact versions resolved on the reference machine (pip freeze), regenerate with: make freeze"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^-e' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | sort; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf out build dist *.egg-info .pytest_cache
	$(MAKE) -s -C mcu clean || true
