# Herald. `make demo` and `make test` work on a fresh machine: they install what
# they need (the pinned Python tools of requirements-dev.txt; Rust crates via cargo).

CARGO ?= cargo
# A Python with moto and cfn-lint at the pinned versions (installs them into .venv if needed).
PYTHON = $(shell scripts/python.sh)

.PHONY: demo local test fmt lint unit check-templates cfn-lint smoke-local deps clean

## demo: start moto on loopback, create the stack from template.yaml, run every function, send samples, print a report
demo:
	HERALD_PYTHON=$(PYTHON) $(CARGO) run --quiet -p herald-cli --bin herald -- demo

## local: serve the same stack until Ctrl-C (PORT=4566 for a fixed port)
local:
	HERALD_PYTHON=$(PYTHON) HERALD_LOCAL_PORT=$(or $(PORT),0) $(CARGO) run --quiet -p herald-cli --bin herald -- local

## test: everything CI runs
test: fmt lint unit check-templates cfn-lint smoke-local

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	HERALD_PYTHON=$(PYTHON) $(CARGO) test --workspace

check-templates:
	$(CARGO) run --quiet -p herald-cli --bin herald -- templates check --dir templates

cfn-lint:
	$(PYTHON) -c "import sys; from cfnlint.runner import main; sys.exit(main())" template.yaml

## smoke-local: `herald local` serves a notification published with another language's SDK (boto3)
smoke-local:
	$(CARGO) build --quiet -p herald-cli --bin herald
	HERALD_PYTHON=$(PYTHON) $(PYTHON) scripts/local_smoke.py target/debug/herald

deps:
	@echo "python: $(PYTHON)"

clean:
	$(CARGO) clean
	rm -rf .venv
