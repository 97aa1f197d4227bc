# Two commands on a fresh machine:  `make book`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch that the project machines carry; a torch already in the venv is kept.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test book clean-book bench

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

test: install
	MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) -m pytest -q

book: install
	$(PY) -m pullback_utils.book run
	$(PY) -m pullback_utils.book build

bench: install
	MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) benchmarks/basis_solvers.py

clean-book:
	rm -rf _build book/generated
