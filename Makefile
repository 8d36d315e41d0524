# The two set-up commands of the README: `make run` and `make test`.
# Each creates .venv when missing and installs scorekit and every plugin under plugins/ (editable).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.scorekit-installed
#: the exact torch / torchvision pair for this project's machines; pyproject.toml declares ranges
CONSTRAINTS := constraints/local.txt
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
JOBS   ?= 2

.PHONY: run test install bench bench-quality docs clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) $(wildcard plugins/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[test,plot,metrics]' $(foreach p,$(PLUGINS),-e $(p))
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/scorekit run --preset ncsn-digits

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q

# every speed benchmark that needs nothing from outside the repository; REFERENCE=PATH (a checkout of
# github.com/ermongroup/ncsn) adds the authors' network to train_step.py. sampler_quality.py (a trained run),
# mnist_auto.py (MNIST's files) and seed_grid.py (bench-quality) are run by hand.
bench: $(STAMP)
	$(PY) benchmarks/estimators.py
	$(PY) benchmarks/samplers.py
	$(PY) benchmarks/update_step.py
	$(PY) benchmarks/ssm_modes.py --rounds 5
	$(PY) benchmarks/ssm_compile.py
	$(PY) benchmarks/conv_batching.py
	$(PY) benchmarks/train_step.py $(if $(REFERENCE),--reference $(REFERENCE))
	$(PY) benchmarks/sample_compile.py
	$(PY) benchmarks/sample_compile.py --grad-modes
	$(PY) benchmarks/toy_mixture_weights.py

# the quality of the embedded default over 3 training x 3 sampling seeds (about 35 minutes on 2 cores)
bench-quality: $(STAMP)
	$(PY) benchmarks/seed_grid.py --out runs/seed-grid

docs: $(STAMP)
	$(PY) -m pytest -q tests/test_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
