# icmpwall: the two set-up commands are `make lab` and `make test` (as root, on Debian 12 with Swift).
SHELL := /bin/bash
SWIFT ?= swift
BUILD_DIR ?= .build
# SwiftPM leaves a temporary folder per invocation: keep them inside the build folder.
export TMPDIR := $(CURDIR)/$(BUILD_DIR)/tmp
SWIFT_FLAGS := --scratch-path $(BUILD_DIR)
# Optimized, the Swift runtime linked statically, no $$ORIGIN run path, relocations resolved at start and then
# read-only (-z now, with the default RELRO), as Debian builds its own binaries: what `make release` packages.
RELEASE_FLAGS := -c release --static-swift-stdlib --disable-local-rpath -Xlinker -z -Xlinker now
BIN := $(BUILD_DIR)/debug/icmpwall

# Debian packages the build, the tests and the lab need (prometheus: promtool, for the agent's metrics tests).
APT_PACKAGES := libbpf-dev libelf-dev zlib1g-dev libpcap-dev libyaml-dev pkg-config iproute2 iputils-ping tcpdump \
	nftables util-linux bpftool prometheus

.PHONY: all deps build test lab bench clean fuzz test-kernels

all: build

# Installs only what is missing (apt-get update first, as a fresh machine needs).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(TMPDIR):
	@mkdir -p $(TMPDIR)

build: deps | $(TMPDIR)
	$(SWIFT) build $(SWIFT_FLAGS)

# The whole suite: unit tests, datapath tests through BPF_PROG_TEST_RUN, end-to-end tests in namespaces.
test: build
	ICMPWALL_BIN=$(CURDIR)/$(BIN) $(SWIFT) test $(SWIFT_FLAGS)

# Kernel matrix: Debian 12's stock 6.1 and 6.12 kernels under QEMU (TCG), the same binary and test bundle inside
# each guest (load of every program, the datapath suite; on 6.1 also the end-to-end suite). scripts/kernels/matrix.sh.
test-kernels: build
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests
	BUILD_DIR=$(BUILD_DIR) ICMPWALL_BIN=$(CURDIR)/$(BIN) bash scripts/kernels/matrix.sh

# Builds namespaces of its own, attaches edge-default to the "server", sends a realistic mix, reports.
lab: build
	$(BIN) lab

clean:
	rm -rf $(BUILD_DIR)

# Benchmarks (BENCHMARKS.md has the method): datapath cost against a parse-only baseline, limit accuracy, floods over
# veth against a minimal XDP drop program and nftables, the control plane; ratios from one run, a few minutes.
# The bench is built with the release flags too, so the two share every module instead of rebuilding each other's.
# The control-plane figures are those of `make release`'s binary, the one that is packaged and deployed (Swift runtime
# linked statically); gnuplot draws docs/bench.png from the run.
BENCH_PACKAGES := gnuplot-nox
bench: deps | $(TMPDIR)
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(BENCH_PACKAGES)"
	@$(MAKE) --no-print-directory release
	$(SWIFT) build $(RELEASE_FLAGS) $(SWIFT_FLAGS) --product icmpwall-bench
	$(BUILD_DIR)/release/icmpwall-bench --icmpwall $(CURDIR)/$(BUILD_DIR)/release/icmpwall --output BENCHMARKS.md --chart docs/bench.png

# Differential fuzzing (docs/reliability.md): FRAMES generated frames under generated policies through the real
# datapath (BPF_PROG_TEST_RUN; XDP and tc egress) and the reference model, then policy fuzzing. Release build; the
# differential part takes about a minute per million frames, policy fuzzing one to two minutes. A failure writes a minimal reproducer
# (pcap + policy YAML + report) under FUZZ_OUT and exits 1. SEED=random for a new seed.
FRAMES ?= 1000000
SEED ?= 20261123
FUZZ_OUT ?= $(BUILD_DIR)/fuzz-out
fuzz: deps | $(TMPDIR)
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product icmpwall-fuzz
	$(BUILD_DIR)/release/icmpwall-fuzz --frames $(FRAMES) --seed $(SEED) --out $(FUZZ_OUT)

# --- Install, Debian package, package test, container image (README "Deploy the agent") --------------------------
# The release binary links the Swift runtime and Foundation statically: edge servers need no Swift toolchain, only
# libbpf1, libelf1, zlib1g, libyaml-0-2 and libc (the .deb's Depends, derived by dpkg-shlibdeps), and libpcap0.8,
# which it opens only for capture files (added to Depends by scripts/package/build-deb.sh).
PREFIX ?= /usr
DESTDIR ?=
UNIT_DIR ?= /lib/systemd/system
RELEASE_BIN := $(BUILD_DIR)/release/icmpwall
DEB_DIR := $(BUILD_DIR)/deb
IMAGE ?= icmpwall:latest
DOC_DIR = $(DESTDIR)$(PREFIX)/share/doc/icmpwall

.PHONY: release install uninstall deb test-package image

# RELEASE_FLAGS (top): no $$ORIGIN run path, since the binary loads only system libraries.
release: deps | $(TMPDIR)
	$(SWIFT) build $(RELEASE_FLAGS) $(SWIFT_FLAGS) --product icmpwall

# Files under /etc/icmpwall are the operator's (conffiles in the .deb): an existing one is never overwritten.
install: release
	install -D -m 0755 $(RELEASE_BIN) $(DESTDIR)$(PREFIX)/bin/icmpwall
	install -d -m 0755 $(DESTDIR)/etc/icmpwall/policies $(DESTDIR)$(UNIT_DIR) $(DOC_DIR)/docs
	@for f in Policies/*.yaml deploy/systemd/agent.yaml; do \
		case $$f in Policies/*) to=$(DESTDIR)/etc/icmpwall/policies/$${f#Policies/} ;; *) to=$(DESTDIR)/etc/icmpwall/agent.yaml ;; esac; \
		if [ -e "$$to" ]; then echo "keeping $$to (the new default is $$f)"; else echo "install $$f $$to"; install -m 0644 "$$f" "$$to"; fi; \
	done
	sed 's|/usr/bin/icmpwall|$(PREFIX)/bin/icmpwall|g; s|/usr/share/doc/icmpwall|$(PREFIX)/share/doc/icmpwall|g' \
		deploy/systemd/icmpwall.service > $(DESTDIR)$(UNIT_DIR)/icmpwall.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/icmpwall.service
	install -m 0644 README.md $(DOC_DIR)/
	install -m 0644 docs/*.md $(DOC_DIR)/docs/
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Removes what install put outside /etc (the config and policies stay, like a removed but not purged .deb). Stops
# the agent; enforcement stays pinned (fail-static): `icmpwall detach --interface IF` first to lift it.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now icmpwall.service 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/icmpwall $(DESTDIR)$(UNIT_DIR)/icmpwall.service
	rm -rf $(DOC_DIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@if [ -z "$(DESTDIR)" ] && [ -n "$$(ls -A /sys/fs/bpf/icmpwall 2>/dev/null)" ]; then \
		echo "still enforcing (pinned in /sys/fs/bpf/icmpwall): $$(ls /sys/fs/bpf/icmpwall | tr '\n' ' ')"; fi

# The .deb from the install tree: scripts/package/build-deb.sh (Depends from dpkg-shlibdeps, conffiles, deploy/debian/
# maintainer scripts); writes $(DEB_DIR)/icmpwall_VERSION_ARCH.deb.
deb: release
	rm -rf $(DEB_DIR)/debian
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_DIR))/debian/icmpwall PREFIX=/usr UNIT_DIR=/lib/systemd/system
	BUILD_DIR=$(BUILD_DIR) bash scripts/package/build-deb.sh $(DEB_DIR)/debian/icmpwall $(DEB_DIR)

# The .deb on a clean Debian 12 (debootstrap minbase): apt resolves its Depends, the binary runs `check` on every
# shipped policy, lintian, systemd-analyze verify; then that system boots under QEMU (Debian 12's 6.1 kernel from
# the kernel matrix's cache) with systemd, and the enabled unit must be active, enforcing and serving /metrics.
test-package: deb
	BUILD_DIR=$(BUILD_DIR) bash scripts/package/test.sh "$$(cat $(DEB_DIR)/latest)"

# The DaemonSet's image (deploy/kubernetes/Dockerfile: debian:12-slim plus the .deb, installed by apt as
# test-package does in its chroot). Needs docker or podman, which CI does not have.
image: deb
	rm -rf $(BUILD_DIR)/image && mkdir -p $(BUILD_DIR)/image
	cp "$$(cat $(DEB_DIR)/latest)" deploy/kubernetes/Dockerfile $(BUILD_DIR)/image/
	@engine=$$(command -v docker || command -v podman || true); \
	if [ -z "$$engine" ]; then echo "make image: no docker or podman here; the context is $(BUILD_DIR)/image" >&2; exit 1; fi; \
	"$$engine" build -t $(IMAGE) $(BUILD_DIR)/image
