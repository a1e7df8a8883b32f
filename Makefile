# The two quick-start commands: `make run` (the main job) and `make test`.
# Both need only Python 3.11+ and make: uv is bootstrapped into .tools/ when it
# is not already on PATH, and uv installs the locked dependencies (uv.lock).
# uv is called by an absolute path: a relative one means nothing in another folder
# (a Ray worker's, a test's), and Ray's `uv run` hook would hand it to every worker.

UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
STUDY ?= studies/loss_ablation.yaml

.PHONY: run test lint

run: $(UV)
	$(UV) run --locked ablate run $(STUDY)

test: $(UV)
	$(UV) run --locked pytest

lint: $(UV)
	$(UV) run --locked ruff check ablate tests

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools || (python3 -m pip install --user --quiet virtualenv && python3 -m virtualenv .tools)
	.tools/bin/python -m pip install --quiet uv
