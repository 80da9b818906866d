# Herald. `make demo` and `make test` work on a fresh machine: they install what
# they need (the pinned Python tools of requirements-dev.txt; Rust crates via cargo; Debian's
# chromium and chromium-driver for the browser tests, with apt-get as root or through sudo).

CARGO ?= cargo
# A Python with moto and cfn-lint at the pinned versions (installs them into .venv if needed).
PYTHON = $(shell scripts/python.sh)
# Runs the command after it with Debian's Chromium and its chromedriver, installed by scripts/chromium.sh when
# missing; a failed install stops the recipe (the browser tests would fail anyway, less clearly).
WITH_CHROMIUM = chromium=$$(scripts/chromium.sh) && driver=$$(scripts/chromium.sh --driver) && \
	HERALD_CHROMIUM="$$chromium" HERALD_CHROMEDRIVER="$$driver"
# Where cargo builds: target/, unless CARGO_TARGET_DIR (or a cargo config) moves it. Asked of cargo.
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

.PHONY: demo local test fmt lint unit browser screenshots check-templates cfn-lint smoke-local deps clean build infra-test sam-validate chaos chaos-short

## demo: start moto on loopback, create the stack from template.yaml, run every function, send samples, print a
## report; fails when a row differs from what it should be (part of `make test`)
demo:
	HERALD_PYTHON=$(PYTHON) $(CARGO) run --quiet -p herald-cli --bin herald -- demo

## local: serve the same stack until Ctrl-C (PORT=4566 for a fixed port)
local:
	HERALD_PYTHON=$(PYTHON) HERALD_LOCAL_PORT=$(or $(PORT),0) $(CARGO) run --quiet -p herald-cli --bin herald -- local

## test: everything CI runs
test: fmt lint unit check-templates cfn-lint smoke-local demo infra-test chaos-short

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# make build and make bench name each function by its folder: that must be its package, and no other crate's.
	@for f in $(FUNCTIONS); do $(CARGO) pkgid -p $$f 2>/dev/null | grep -q "/functions/$$f#" \
	  || { echo "functions/$$f: cargo --package $$f does not name it alone (make build would fail)"; exit 1; }; done

## unit: every Rust test, the browser tests (tests/browser.rs) among them
unit:
	$(WITH_CHROMIUM) HERALD_PYTHON=$(PYTHON) $(CARGO) test --workspace

## browser: only the browser tests: the unsubscribe and preference pages in headless Chromium, keyboard only
browser:
	$(WITH_CHROMIUM) HERALD_PYTHON=$(PYTHON) $(CARGO) test --workspace --test herald -- browser::

## screenshots: the browser tests, saving the pages they see as docs/img/*.png (for the README)
screenshots:
	$(WITH_CHROMIUM) HERALD_SCREENSHOTS=$(CURDIR)/docs/img HERALD_PYTHON=$(PYTHON) \
	  $(CARGO) test --workspace --test herald -- browser::
	@ls -l docs/img/*.png

## check-templates: every template (and its use of the profile), campaign, segment, journey and the topics, with the code that uses them
check-templates:
	$(CARGO) run --quiet -p herald-cli --bin herald -- templates check --dir templates
	$(CARGO) run --quiet -p herald-cli --bin herald -- segments check --dir segments --profile profile.toml
	$(CARGO) run --quiet -p herald-cli --bin herald -- journeys check --dir journeys --templates templates --profile profile.toml
	$(CARGO) run --quiet -p herald-cli --bin herald -- topics check --file topics.toml

cfn-lint:
	$(PYTHON) -c "import sys; from cfnlint.runner import main; sys.exit(main())" template.yaml

## smoke-local: `herald local` serves a notification published with another language's SDK (boto3)
smoke-local:
	$(CARGO) build --quiet -p herald-cli --bin herald
	HERALD_PYTHON=$(PYTHON) $(PYTHON) scripts/local_smoke.py $(TARGET_DIR)/debug/herald

## chaos: the local stack behind a fault-injecting proxy (throttling, 5xx, a several-second outage of each
## service, DynamoDB writes and SQS sends applied then answered 500), 120 notifications on email, SMS, push and
## `mode: all` plus 30 poison messages, each sent twice, shuffled; prints one line with the faults and the outcome
## (lost, sent twice, poison rejected, dead-lettered, wrong status) and fails unless it is perfect. Not part of
## `make test`; CHAOS_ARGS="--seed 11" for another seed (`--help` lists the knobs). Debug build, as the tests.
chaos:
	HERALD_PYTHON=$(PYTHON) $(CARGO) run --quiet -p herald-chaos -- $(CHAOS_ARGS)

## chaos-short: the same with 30 notifications, 3 s outages and fewer faults (about 2 minutes); part of `make test`
chaos-short:
	HERALD_PYTHON=$(PYTHON) $(CARGO) run --quiet -p herald-chaos -- --short $(CHAOS_ARGS)

## build: the Lambda artifacts, target/lambda/<function>/bootstrap, one per crate under functions/
## (cargo-lambda and zig from requirements-build.txt, into .venv/build). SAM and the CDK construct deploy these.
## With CARGO_TARGET_DIR elsewhere, the artifacts are copied to target/lambda, where template.yaml's CodeUri looks.
FUNCTIONS = $(notdir $(patsubst %/Cargo.toml,%,$(wildcard functions/*/Cargo.toml)))
build:
	@set -e; tools=$$(scripts/tool_venv.sh build); target="$(TARGET_DIR)"; \
	for f in $(FUNCTIONS); do \
	  echo "cargo lambda build --release --arm64 --package $$f"; \
	  PATH="$$tools:$$PATH" $(CARGO) lambda build --release --arm64 --package $$f; \
	  if [ "$$target/lambda" -ef target/lambda ]; then :; else \
	    mkdir -p target/lambda/$$f && cp "$$target/lambda/$$f/bootstrap" target/lambda/$$f/; fi; \
	done
	@ls -l target/lambda/*/bootstrap

## bench: what a notification costs (AWS requests, DynamoDB units, $ per million), pipeline throughput
## against the endpoint's floor, hot paths (criterion), each function's size, start time and memory.
## Prints one table; writes bench/results/latest.{json,md} and docs/benchmarks.md's table. Not part of `make test`.
## Builds each function's x86_64 release binary first (BENCH_ARGS="--quick" for a short run).
.PHONY: bench
bench:
	@set -e; for f in $(FUNCTIONS); do echo "cargo build --release --package $$f"; $(CARGO) build --release --quiet --package $$f; done
	$(CARGO) bench --quiet -p herald-bench --bench hot_paths
	HERALD_PYTHON=$(PYTHON) $(CARGO) run --release --quiet -p herald-bench --bin herald-bench -- $(BENCH_ARGS)

## infra-test: the CDK construct (infra/): npm ci, offline synth with cdk-nag (tracing off and on), parity with
## template.yaml for both (and a self-test that one-sided changes fail it), cfn-lint over the synthesized templates
infra-test:
	cd infra && npm ci --no-audit --no-fund --loglevel=error
	HERALD_PYTHON=$(PYTHON) scripts/infra_test.sh

## sam-validate: `sam validate --lint` over template.yaml (aws-sam-cli from requirements-sam.txt, into .venv/sam)
sam-validate:
	tools=$$(scripts/tool_venv.sh sam) && \
	SAM_CLI_TELEMETRY=0 "$$tools/sam" validate --lint --region us-east-1 --template template.yaml

deps:
	@echo "python: $(PYTHON)"

clean:
	$(CARGO) clean
	rm -rf .venv
