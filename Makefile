# kubernary: everything is driven from here. `make help` lists the targets.

CARGO ?= cargo
# Where `make run` serves its local S3 and the daemon listens.
RUN_S3_ADDR ?= 127.0.0.1:9000
LISTEN ?= 127.0.0.1:10002
# Empty: no metrics. Set to host:port to send statsd metrics.
STATSD ?=

.PHONY: help build release run test test-deps lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

build: ## debug build
	$(CARGO) build

release: ## optimized build: target/release/kubernary
	$(CARGO) build --release

run: build test-deps ## run the daemon against a local S3 server with a seeded object (no cloud account needed)
	CARGO="$(CARGO)" RUN_S3_ADDR="$(RUN_S3_ADDR)" LISTEN="$(LISTEN)" STATSD="$(STATSD)" scripts/run-local.sh

test-deps: ## install what the tests need into .tools/ (rclone, moto)
	scripts/test-deps.sh

test: test-deps ## run every test
	$(CARGO) test --all-targets

lint: ## formatting and clippy, as CI checks them
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt

clean: ## remove build output and installed test tools
	$(CARGO) clean
	rm -rf .tools
