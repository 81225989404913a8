# asktable-feishu-gateway — see README.md.
CARGO ?= cargo

.PHONY: build test lint run bench fmt demo static install fuzz soak image image-tar container-test systemd-test

build:
	$(CARGO) build --release --locked

## Builds and runs every test (unit, end-to-end against a real redis-server and the simulator).
test: lint
	@./.ci/install-deps >/dev/null
	$(CARGO) test --workspace --all-targets --locked

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## The newcomer's first command: a question travels simulator → gateway → Redis → responder → back.
demo:
	@./.ci/install-deps --demo >/dev/null
	$(CARGO) build --locked --workspace --bins
	./target/debug/demo

## Chaos soak: two replicas, three apps, random faults for SOAK_SECONDS (default 600), then checks.
soak:
	@./.ci/install-deps >/dev/null
	$(CARGO) build --release --locked --workspace
	SOAK_SECONDS=$${SOAK_SECONDS:-600} ./target/release/soak

## Fuzzes every parser of untrusted input for FUZZ_SECONDS (default 60) each.
fuzz:
	./.ci/fuzz

## A fully static x86_64 binary in target/static/ (musl, else glibc +crt-static).
static:
	./.ci/build-static

## The FROM-scratch image (podman or docker), asktable-feishu-gateway:<version> and :latest.
image:
	./.ci/image

## The image saved to target/asktable-feishu-gateway-<version>.tar, for `docker load -i`.
image-tar:
	./.ci/image --tar

## The image under podman-compose with the guide's compose file (dist/compose.yaml).
container-test:
	./.ci/container-test

## The unit under a real systemd in a podman container (Debian rootfs by debootstrap).
systemd-test:
	./.ci/systemd-test

PREFIX ?= /usr/local
DESTDIR ?=
## Installs the binary, the systemd unit and an example env file (PREFIX, DESTDIR).
install:
	@test -x target/static/asktable-feishu-gateway || test -x target/release/asktable-feishu-gateway || $(CARGO) build --release --locked
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/asktable-feishu-gateway
	install -m 0755 $$(test -x target/static/asktable-feishu-gateway && echo target/static/asktable-feishu-gateway || echo target/release/asktable-feishu-gateway) $(DESTDIR)$(PREFIX)/bin/asktable-feishu-gateway
	install -d $(DESTDIR)$(PREFIX)/share/doc/asktable-feishu-gateway
	install -m 0644 README.md docs/PROTOCOL.md $(DESTDIR)$(PREFIX)/share/doc/asktable-feishu-gateway/
	sed -e 's#^ExecStart=/usr/local/bin/#ExecStart=$(PREFIX)/bin/#' -e 's#^Documentation=file:/usr/local/#Documentation=file:$(PREFIX)/#' asktable-feishu-gateway.service > $(DESTDIR)/etc/systemd/system/asktable-feishu-gateway.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/asktable-feishu-gateway.service
	test -e $(DESTDIR)/etc/asktable-feishu-gateway/env || install -m 0600 dist/env.example $(DESTDIR)/etc/asktable-feishu-gateway/env
	install -m 0644 dist/env.example $(DESTDIR)/etc/asktable-feishu-gateway/env.example

## Runs the gateway with the environment of this shell.
run:
	$(CARGO) run --release --locked

## Benchmarks (the gateway, its static build, the Node and Python SDK bridges, the floor); writes docs/BENCHMARKS.md.
bench:
	@./.ci/install-deps >/dev/null
	$(CARGO) build --release --locked --workspace
	./.ci/build-static >/dev/null
	./target/release/gateway-bench --out docs/BENCHMARKS.md
