PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: demo test test-fast check install clean browser

# pyproject.toml declares lower bounds; constraints.txt holds the exact versions CI tests with.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,sweep]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/circuitspec fetch smollm2-135m-instruct
	$(BIN)/circuitspec verify hypotheses/ioi_smollm2_135m.yaml --out out/ioi_smollm2_135m \
	  --n-prompts 32; \
	  status=$$?; test $$status -le 1 || exit $$status
	@echo "report: out/ioi_smollm2_135m/report.md  diagram: out/ioi_smollm2_135m/circuit.svg"

# The browser test opens report.html in Debian's chromium, driven by Playwright's Python
# package (its own browser downloads cannot be fetched here; `playwright install` is never
# run). Installed once, only where missing; without it the browser test is skipped.
$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "could not install chromium: the browser test will be skipped"; \
	else echo "no apt-get here: the browser test will be skipped"; fi

browser: $(CHROMIUM)

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q --durations=25

# The inner loop: everything but the real-model tests (CI runs `make test`, all of them).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not real"

check: $(STAMP)
	$(BIN)/ruff check circuitspec tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out
