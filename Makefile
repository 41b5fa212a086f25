PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: demo test check install clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,sweep]'
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

check: $(STAMP)
	$(BIN)/ruff check circuitspec tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out
