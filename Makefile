# icmpwall: the two set-up commands are `make lab` and `make test` (as root, on Debian 12 with Swift).
SHELL := /bin/bash
SWIFT ?= swift
BUILD_DIR ?= .build
# SwiftPM leaves a temporary folder per invocation: keep them inside the build folder.
export TMPDIR := $(CURDIR)/$(BUILD_DIR)/tmp
SWIFT_FLAGS := --scratch-path $(BUILD_DIR)
BIN := $(BUILD_DIR)/debug/icmpwall

# Debian packages the build, the tests and the lab need (prometheus: promtool, for the agent's metrics tests).
APT_PACKAGES := libbpf-dev libelf-dev zlib1g-dev libpcap-dev pkg-config iproute2 iputils-ping tcpdump \
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
# Release builds (the control-plane figures are the release binary's); gnuplot draws docs/bench.png from the run.
BENCH_PACKAGES := gnuplot-nox
bench: deps | $(TMPDIR)
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(BENCH_PACKAGES)"
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product icmpwall
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product icmpwall-bench
	$(BUILD_DIR)/release/icmpwall-bench --icmpwall $(CURDIR)/$(BUILD_DIR)/release/icmpwall --output BENCHMARKS.md --chart docs/bench.png

# Differential fuzzing (docs/reliability.md): FRAMES generated frames under generated policies through the real
# datapath (BPF_PROG_TEST_RUN) and the reference model, then policy fuzzing. Release build; the differential part
# takes about 40 s per million frames, policy fuzzing one to two minutes. A failure writes a minimal reproducer
# (pcap + policy YAML + report) under FUZZ_OUT and exits 1. SEED=random for a new seed.
FRAMES ?= 1000000
SEED ?= 20261123
FUZZ_OUT ?= $(BUILD_DIR)/fuzz-out
fuzz: deps | $(TMPDIR)
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product icmpwall-fuzz
	$(BUILD_DIR)/release/icmpwall-fuzz --frames $(FRAMES) --seed $(SEED) --out $(FUZZ_OUT)
