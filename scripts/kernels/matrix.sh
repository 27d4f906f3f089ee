#!/usr/bin/env bash
# Kernel matrix (`make test-kernels`): boots Debian 12's stock kernels under QEMU with TCG (KVM is not usable on
# these machines) and runs, inside each guest, the icmpwall binary and test bundle built on the host:
#
#   6.1  (linux-image-6.1.0-N-amd64, what most edge servers run): load of every program in the embedded datapath
#        (`icmpwall version --kernel`, the verifier's reason on a refusal), the BPF_PROG_TEST_RUN datapath suite
#        (IcmpwallDataplaneTests) and the end-to-end suite in namespaces (IcmpwallEndToEndTests: attach, ping and
#        ping -6, stats --json exact, apply under traffic, detach, refusals, replay, the lab);
#   6.12 (linux-image-6.12.N+deb12-amd64, bookworm-security): the load and the datapath suite.
#
# The host's own kernel is covered by `make test`. Usage:
#
#   scripts/kernels/matrix.sh [6.1] [6.12]        default: both
#
# Environment: BUILD_DIR (.build), ICMPWALL_BIN and TEST_BUNDLE (default: the debug build in BUILD_DIR),
# KMATRIX_CACHE (BUILD_DIR/kernels: extracted kernel packages, logs), KMATRIX_GUEST_TIMEOUT (seconds per
# guest), KMATRIX_NO_UPDATE=1 (skip apt-get update; for local re-runs with a fresh package list),
# KMATRIX_SUITES (run only these of "load datapath e2e pins" on every kernel; pins is opt-in), KMATRIX_COMMAND (debugging: run this
# shell command in each guest instead of the tests).
#
# Kernels are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into the cache: nothing is installed
# into /boot. Each guest boots a small busybox initramfs (scripts/kernels/init.sh) that loads 9p/virtio/overlay from
# the kernel's own package, mounts the host's root read-only over 9p under a RAM overlay and a per-run work folder
# read-write, and runs scripts/kernels/guest-run.sh. Each guest reports an exit code and a one-line summary; any
# failure fails the step and names the kernel.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

BUILD_DIR=${BUILD_DIR:-.build}
bin=${ICMPWALL_BIN:-$BUILD_DIR/debug/icmpwall}
bundle=${TEST_BUNDLE:-$BUILD_DIR/debug/icmpwallPackageTests.xctest}
cache=${KMATRIX_CACHE:-$BUILD_DIR/kernels}
guest_timeout=${KMATRIX_GUEST_TIMEOUT:-}
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)

# What runs where (which package is "the newest stock kernel" of each line: lib.sh).
declare -A suites=([6.1]="load datapath e2e" [6.12]="load datapath")
# Seconds each guest may take, boot to power-off (measured on a 2-core machine: 6.1 200 to 290, 6.12 60 to 90; a
# machine busy with other builds made 6.1 take 360; with the strict-verifier loads, which take about 60 s there
# under emulation, 6.1 took 303 s, and 454 on a busy machine).
declare -A timeout_of=([6.1]=600 [6.12]=300)

say() { echo "kernel matrix: $*"; }
die() { echo "kernel matrix: error: $*" >&2; exit 1; }
# shellcheck source=scripts/kernels/lib.sh
. "$here/lib.sh"

for k in "${kernels[@]}"; do
	[ -n "${suites[$k]:-}" ] || die "unknown kernel line '$k' (known: ${!suites[*]})"
	[ -z "${KMATRIX_SUITES:-}" ] || suites[$k]=$KMATRIX_SUITES
done
[ "$(id -u)" -eq 0 ] || die "needs root (apt-get, and the guests run privileged tests)"
[ -n "${KMATRIX_COMMAND:-}" ] || [ -x "$bin" ] || die "no icmpwall binary at $bin: run \`make build\` first (make test-kernels does)"
[ -n "${KMATRIX_COMMAND:-}" ] || [ -x "$bundle" ] || die "no test bundle at $bundle: run \`swift build --build-tests\` first (make test-kernels does)"
bin=$(realpath -m "$bin")
bundle=$(realpath -m "$bundle")
mkdir -p "$cache"
cache=$(realpath "$cache")
kernel_cache_lock

started=$(date +%s)
work=$(mktemp -d "$cache/tmp.XXXXXX")
qemu_pid=
cleanup() {
	# An interrupted run: stop the guest (timeout passes TERM on to QEMU; QEMU's own pid file for the rest).
	if [ -n "$qemu_pid" ]; then kill -TERM "$qemu_pid" 2>/dev/null || true; fi
	for f in "$work"/run-*/qemu.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f" 2>/dev/null)" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ------------------------------------------------------------------------------------------------------
kernel_apt_update
kernel_install_tools

# --- one guest ---------------------------------------------------------------------------------------------------
declare -A result_line=()
failed=()

run_guest() {
	local line=$1 run="$work/run-$1" t0 rc qemu_rc summary cmdline
	local guest_timeout=${guest_timeout:-${timeout_of[$line]}}
	fetch_kernel "$line"
	mkdir -p "$run" "$cache/logs"
	build_initramfs "$work/initramfs-$line.gz"
	cat > "$run/cmd.sh" <<-EOF
		export KMATRIX_KERNEL='$krel' KMATRIX_SUITES='${suites[$line]}' KMATRIX_OUT=/kmatrix
		export KMATRIX_MODULES='$kdir/lib/modules/$krel' ICMPWALL_BIN='$bin' TEST_BUNDLE='$bundle'
		export KMATRIX_BUDGET=$((guest_timeout - 40))
		exec /bin/bash '$here/guest-run.sh'
	EOF
	if [ -n "${KMATRIX_COMMAND:-}" ]; then
		printf 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nmkdir -p "/lib/modules/$(uname -r)" && mount --bind "%s" "/lib/modules/$(uname -r)"\nexec /bin/bash /kmatrix/command.sh\n' \
			"$kdir/lib/modules/$krel" > "$run/cmd.sh"
		printf '%s\n' "$KMATRIX_COMMAND" > "$run/command.sh"
	fi
	say "booting $krel ($kpkg $kver) under QEMU/TCG: ${suites[$line]}"
	# kmatrix.repo: the repository is also shared on its own (tag "repo"), since a checkout under /tmp or /run
	# would be hidden by the tmpfs the guest mounts there.
	cmdline="console=ttyS0,115200 panic=-1 loglevel=4 mitigations=off quiet kmatrix.repo=$repo"
	t0=$(date +%s)
	set +e
	timeout -k 10 "$guest_timeout" qemu-system-x86_64 \
		-accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
		-nodefaults -no-user-config -display none -no-reboot -pidfile "$run/qemu.pid" \
		-chardev "file,id=console,path=$run/console.log" -serial chardev:console \
		-kernel "$kdir/boot/vmlinuz-$krel" -initrd "$work/initramfs-$line.gz" -append "$cmdline" \
		-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
		-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
		-fsdev "local,id=work,path=$run,security_model=none,multidevs=remap" \
		-device virtio-9p-pci,fsdev=work,mount_tag=work \
		-fsdev "local,id=repo,path=$repo,security_model=none,readonly=on,multidevs=remap" \
		-device virtio-9p-pci,fsdev=repo,mount_tag=repo \
		< /dev/null > "$run/qemu.log" 2>&1 &
	qemu_pid=$!
	wait "$qemu_pid"
	qemu_rc=$?
	qemu_pid=
	set -e
	local seconds=$(( $(date +%s) - t0 ))
	cp "$run/console.log" "$cache/logs/$krel.console.log" 2>/dev/null || true

	rc=$(cat "$run/rc" 2>/dev/null || sed -n 's/.*KMATRIX-EXIT \([0-9]*\).*/\1/p' "$run/console.log" 2>/dev/null | tail -1)
	summary=$(cat "$run/summary" 2>/dev/null || true)
	if [ -z "$rc" ]; then
		if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
			summary="$krel: FAIL: no result: the guest did not finish within $guest_timeout s"
		else
			summary="$krel: FAIL: no result: QEMU exited $qemu_rc without the guest reporting (boot failure or crash)"
		fi
		rc=255
	elif [ -z "$summary" ]; then
		summary="$krel: FAIL: the guest exited $rc before writing its summary"
	fi
	result_line[$line]="$summary (${seconds} s)"
	if [ "$rc" != 0 ]; then
		failed+=("$line")
		say "FAILED on kernel $krel ($kpkg $kver), exit $rc: $summary"
		if [ -s "$run/failures" ]; then
			sed 's/^/  | /' "$run/failures"
		fi
		echo "  | last console lines ($cache/logs/$krel.console.log has all of it):"
		grep -v '^\s*$' "$run/console.log" 2>/dev/null | tail -15 | sed 's/^/  | /'
		[ -s "$run/qemu.log" ] && sed 's/^/  | qemu: /' "$run/qemu.log" | tail -5
	else
		say "$summary (${seconds} s)"
	fi
	rm -rf "$run" "$work/initramfs-$line.gz"
}

for line in "${kernels[@]}"; do
	run_guest "$line"
done

prune_kernel_cache

elapsed=$(( $(date +%s) - started ))
echo
say "summary (host kernel $(uname -r): covered by make test)"
for line in "${kernels[@]}"; do echo "  ${result_line[$line]}"; done
if [ ${#failed[@]} -gt 0 ]; then
	say "FAILED on ${failed[*]} after ${elapsed} s"
	exit 1
fi
say "all kernels passed in ${elapsed} s"
