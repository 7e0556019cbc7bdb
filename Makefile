# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both are idempotent: the venv is rebuilt only when setup.cfg or constraints.txt change.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-all lint demo debs bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all]"
	$(PY) -c "import torch, torchaudio, speechbrain, s3prl.hub, zrc_abx2, faiss, flashlight.lib.text.decoder, kenlm"
	touch $(STAMP)

# Debian packages for the demo corpus (speech synthesisers, sox, WordNet); needs root.
debs:
	bash scripts/install-demo-debs.sh

test: install debs
	$(VENV)/bin/pytest -q -m "not slow"

test-all: install debs
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check learn2diss tests bench scripts run_downstream.py
	$(VENV)/bin/mypy learn2diss

# The whole method on the demo corpus, CPU only, sized for 15 minutes on 2 idle cores (docs/demo.md): lambda = 0
# and lambda > 0 with seeds 0-2 each, Table 5 directions as paired differences with 95 % intervals. Reruns skip finished
# stages. Results in results/demo/ (summary.md, rows.csv), work files in runs/demo/.
demo: install debs
	$(VENV)/bin/learn2diss demo

clean:
	rm -rf $(VENV) build *.egg-info
