PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,sweep]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/circuitspec fetch smollm2-135m-instruct
	$(BIN)/circuitspec verify hypotheses/ioi_smollm2_135m.yaml --out out/ioi_smollm2_135m \
	  --n-prompts 32; \
	  status=$$?; test $$status -le 1 || exit $$status
	@echo "report: out/ioi_smollm2_135m/report.md  diagram: out/ioi_smollm2_135m/circuit.svg"

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25

check: $(STAMP)
	$(BIN)/ruff check circuitspec tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out
