# kubernary: everything is driven from here. `make help` lists the targets.

CARGO ?= cargo
# Where `make run` serves its local S3 and the daemon listens.
RUN_S3_ADDR ?= 127.0.0.1:9000
LISTEN ?= 127.0.0.1:10002
# Empty: no metrics. Set to host:port to send statsd metrics.
STATSD ?=

# The static binary: what the container image holds (Containerfile copies
# this path; tests/container.rs checks that the two agree) and what the
# empty-root test runs. glibc with crt-static, for the machine's own target.
STATIC_BIN := target/static/kubernary
STATIC_TARGET ?= $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
CARGO_OUT := $(or $(CARGO_TARGET_DIR),target)

# `make bench`: runs per figure (each figure is their median, min and max).
BENCH_RUNS ?= 5
# `make bench-soak`: how long, in seconds.
SOAK_SECONDS ?= 600
RELEASE_BIN := $(CARGO_OUT)/release/kubernary
# The side-by-side column of `make bench`; BLACKBOX=none leaves it out.
BLACKBOX ?= prometheus-blackbox-exporter
BENCH_DRIVER = $(CARGO) run --release --locked --quiet --example bench --

# The container image `make image` builds.
IMAGE ?= kubernary:latest
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

# As root, `make test` also builds the static binary and runs it in an
# empty root (chroot), as a FROM scratch container would; otherwise that
# test says it skips.
ifeq ($(shell id -u),0)
TEST_STATIC := static
TEST_ENV := KUBERNARY_STATIC_BIN=$(CURDIR)/$(STATIC_BIN)
endif

.PHONY: help build release static image run test test-deps soak load lint fmt clean bench bench-deps bench-soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

build: ## debug build
	$(CARGO) build

release: ## optimized build: target/release/kubernary
	$(CARGO) build --release

static: ## static, stripped, size-optimized binary: target/static/kubernary
	@test -n "$(STATIC_TARGET)" || { echo "make static: cannot tell the target triple (is rustc installed?)" >&2; exit 1; }
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --target $(STATIC_TARGET)
	@mkdir -p $(dir $(STATIC_BIN))
	cp $(CARGO_OUT)/$(STATIC_TARGET)/release/kubernary $(STATIC_BIN)
	@if ! command -v readelf >/dev/null; then \
		echo "make static: readelf not found, cannot verify that $(STATIC_BIN) is static" >&2; \
	elif readelf -l $(STATIC_BIN) | grep -q 'program interpreter'; then \
		echo "make static: $(STATIC_BIN) is dynamically linked" >&2; exit 1; \
	fi
	@echo "$(STATIC_BIN): static, $$(wc -c < $(STATIC_BIN)) bytes"

# podman builds OCI images by default, and the OCI format has no HEALTHCHECK.
# The context is make static's binary alone (IMAGE_CONTEXT), for the
# Containerfile's last stage: nothing is pulled or compiled in the build.
IMAGE_CONTEXT := target/image
image: static ## container image (IMAGE=kubernary:latest): make static's binary, FROM scratch, with podman or docker
	@if command -v podman >/dev/null 2>&1; then engine="podman"; format="--format docker"; \
	elif command -v docker >/dev/null 2>&1; then \
		if ! docker info >/dev/null 2>&1; then \
			echo "make image: docker is installed but no Docker engine answers (docker info fails); start one or install podman" >&2; exit 1; \
		fi; engine=docker; \
	else \
		echo "make image: neither podman nor docker is installed; install one to build the image (make static builds the binary alone)" >&2; exit 1; \
	fi; \
	rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT) && cp $(STATIC_BIN) $(IMAGE_CONTEXT)/kubernary; \
	echo "$$engine build -f Containerfile --target image -t $(IMAGE) $(IMAGE_CONTEXT)"; \
	$$engine build $$format -f Containerfile --target image -t $(IMAGE) \
		--build-arg KUBERNARY_COMMIT=$(COMMIT) \
		--build-arg VERSION=$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) $(IMAGE_CONTEXT)

run: build test-deps ## run the daemon against a local S3 server with a seeded object (no cloud account needed)
	CARGO="$(CARGO)" RUN_S3_ADDR="$(RUN_S3_ADDR)" LISTEN="$(LISTEN)" STATSD="$(STATSD)" scripts/run-local.sh

test-deps: ## install what the tests need into .tools/ (rclone, moto)
	scripts/test-deps.sh

test: test-deps $(TEST_STATIC) ## run every test (as root, also the static binary in an empty root)
	$(TEST_ENV) $(CARGO) test --all-targets

# The long versions of tests/faults.rs and tests/load.rs (#[ignore] there, so
# `make test` and CI skip them): every fault soaked for KUBERNARY_SOAK_SECS
# (default 60) with 16 probers, 30000 probes (KUBERNARY_SOAK_REQUESTS), and
# waves of idle connections. Each prints its figures as FIGURE lines.
soak: test-deps ## long fault soaks, load and connection floods (about 12 minutes; CI skips them)
	$(CARGO) test --no-fail-fast --test faults --test load -- --ignored --test-threads=1

# Extra arguments for examples/load.rs, e.g. LOAD_ARGS="--requests 10000 --backend-delay 20".
LOAD_ARGS ?=
load: ## load a release kubernary by hand and print the figures (examples/load.rs)
	$(CARGO) build --release --bin kubernary --example load
	$(CARGO_OUT)/release/examples/load $(LOAD_ARGS)

bench-deps: ## install what the benchmark needs (wrk, prometheus-blackbox-exporter, from Debian's packages)
	scripts/bench-deps.sh

bench: bench-deps release static ## build, then measure size, start-up, memory, CPU, /health load, beside blackbox_exporter; prints a table
	$(BENCH_DRIVER) --runs $(BENCH_RUNS) --blackbox $(BLACKBOX) --bin static=$(STATIC_BIN) --bin release=$(RELEASE_BIN)

bench-soak: static ## 10 minutes at one check and one /health per second; RSS at start and end
	$(BENCH_DRIVER) --soak $(SOAK_SECONDS) --bin static=$(STATIC_BIN)

lint: ## formatting and clippy, as CI checks them
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt

clean: ## remove build output and installed test tools
	$(CARGO) clean
	rm -rf .tools
