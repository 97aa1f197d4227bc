# Two commands on a fresh machine:  `make book`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch that the project machines carry; a torch already in the venv is kept.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# what the book needs (no test tools, no Ray): `make book` on a fresh clone installs only this
BOOK_STAMP := $(VENV)/.installed-book

.PHONY: install install-book test book book-quick book-check clean-book bench bench-scaling

$(BOOK_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[book,zoo]"
	@# the `python3` kernel that papermill and Jupyter use runs this venv's interpreter
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pullback-book)"
	@touch $(BOOK_STAMP)

$(STAMP): $(BOOK_STAMP)
	$(PY) -m pip install -e ".[test,book,zoo,distributed]"
	@touch $(STAMP)

install-book: $(BOOK_STAMP)

install: $(STAMP)

test: install
	MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) -m pytest -q

# Run the chapters (papermill; unchanged ones are skipped), then build _build/html with execution off.
# A failing chapter does not stop the build (its previous good output, if any, is shown); `make book`
# still exits non-zero. BOOK_ARGS passes options to the runner, e.g. BOOK_ARGS="--params book/params/paper.yaml".
BOOK_ARGS ?=
book: install-book
	@status=0; $(PY) -m pullback_utils.book run $(BOOK_ARGS) || status=$$?; \
	$(PY) -m pullback_utils.book build && exit $$status

# Checks of the built pages: the paper cited, no stderr/warnings in chapters, captioned figures that fit.
book-check:
	$(PY) -m pullback_utils.book check

# The same with the tiny parameters of book/params/quick.yaml (seconds per chapter).
book-quick:
	$(MAKE) book BOOK_ARGS="--quick $(BOOK_ARGS)"

bench: install
	MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) benchmarks/basis_solvers.py

# Time and products per basis at the google/ddpm and SD-2.1 sizes (random weights); the quick path here.
bench-scaling: install
	MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) benchmarks/scaling.py --sizes 32 64

clean-book:
	rm -rf _build book/generated
