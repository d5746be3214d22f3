# Two set-up commands, both from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# Installed before everything else so that the other requirements find torch satisfied and never
# pull a second (CUDA) build; on a GPU machine the same pin installs the CUDA wheel from PyPI.
TORCH_VERSION ?= 2.13.0
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_TRIALS := results/demo/trials.parquet

.PHONY: install lock demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -c constraints.txt -e ".[offline,onnx,dashboard,tracking,serve,test]"
	$(PY) -m bistil_ray.data.quran
	touch $(STAMP)

# After a change of dependencies: the versions now installed become the ones every install gets.
lock: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(PIP) freeze --exclude-editable | grep -iv '^torch==\|^nvidia\|^triton\|^bistil'; } > constraints.new
	mv constraints.new constraints.txt

demo: $(STAMP)
	$(PY) -m bistil_ray.sweep sweeps/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Every benchmark, one after another, into bench/results (see bench/README.md); on a quiet machine.
# sweep_reuse reads the demo sweep's results, so the demo runs first unless it already has.
bench: $(STAMP) $(DEMO_TRIALS)
	$(PY) -m bench.student_speed
	$(PY) -m bench.loop_vs_bare
	$(PY) -m bench.ray_fixed_cost
	$(PY) -m bench.trial_overhead
	$(PY) -m bench.sweep_reuse $(dir $(DEMO_TRIALS))
	$(PY) -m bench.tracking_overhead
	for student in $(dir $(DEMO_TRIALS))students/*/; do $(PY) -m bistil_ray.export $$student --onnx --int8; done
	$(PY) -m bench.serve_load $(dir $(DEMO_TRIALS)) --onnx
	$(PY) -m bench.onnx_speed $(dir $(DEMO_TRIALS))
	$(PY) -m bench.cpu_numerics
	$(PY) -m bench.claims configs/demo_run.yaml --langs zh it ja
	$(PY) -m bench.claims configs/quran_run.yaml --langs zh ar es fr

$(DEMO_TRIALS): | $(STAMP)
	$(MAKE) demo

clean:
	rm -rf $(VENV) .pytest_cache
