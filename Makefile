# asktable-feishu-gateway — see README.md.
CARGO ?= cargo

.PHONY: build test lint run bench fmt

build:
	$(CARGO) build --release --locked

## Builds and runs every test (unit, end-to-end against a real redis-server and the simulator).
test: lint
	@command -v redis-server >/dev/null || ./.ci/install-deps
	$(CARGO) test --workspace --all-targets --locked

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Runs the gateway with the environment of this shell.
run:
	$(CARGO) run --release --locked

## Benchmarks; writes docs/BENCHMARKS.md.
bench:
	@command -v redis-server >/dev/null || ./.ci/install-deps
	$(CARGO) build --release --locked --workspace
	./target/release/gateway-bench --out docs/BENCHMARKS.md
