#!/usr/bin/env bash
# Runs inside a kernel-matrix guest, as root, with the host's root file system (read-only under a RAM overlay):
# the same icmpwall binary and test bundle the host built, against the guest's kernel.
#
# scripts/kernels/matrix.sh sets:
#   KMATRIX_KERNEL   label of the kernel (its release)       KMATRIX_SUITES  "load datapath e2e" or a subset
#   KMATRIX_MODULES  the kernel package's /lib/modules/REL    KMATRIX_OUT     the shared work folder (/kmatrix)
#   ICMPWALL_BIN     the icmpwall binary                      TEST_BUNDLE     the .xctest test bundle
#   KMATRIX_BUDGET   seconds the whole run may take (each suite gets what is left, so the guest reports in time)
# and reads back $KMATRIX_OUT/summary (one line), $KMATRIX_OUT/failures (what failed, with the verifier's reason
# when a program was refused) and the exit code (0 all passed, 1 something failed).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp CI=true LANG=C.UTF-8
out=${KMATRIX_OUT:-/kmatrix}
: > "$out/failures"
parts=()
status=0

fail() {
	printf '%s\n' "$*" >> "$out/failures"
	status=1
}

started=$(date +%s)
deadline=$((started + ${KMATRIX_BUDGET:-400}))
log() { echo "=== kmatrix [$KMATRIX_KERNEL] +$(( $(date +%s) - started )) s: $*"; }

# --- the guest's own kernel modules, on demand and up front --------------------------------------------------
krel=$(uname -r)
mkdir -p "/lib/modules/$krel" "$HOME"
mount --bind "$KMATRIX_MODULES" "/lib/modules/$krel"
# What the tests need beyond the built-ins: veth pairs, the clsact qdisc and tc BPF filters.
for m in veth sch_ingress cls_bpf; do
	modprobe -q "$m" || log "modprobe $m failed (continuing: the tests will say what is missing)"
done
ip link set lo up
hostname kmatrix 2>/dev/null
log "kernel $(uname -r), $(nproc) CPUs, suites: $KMATRIX_SUITES"

has() { [[ " $KMATRIX_SUITES " == *" $1 "* ]]; }

# --- 1. feature probe and the load of every program in the embedded datapath --------------------------------
if has load; then
	log "icmpwall version --kernel"
	"$ICMPWALL_BIN" version --kernel > "$out/features.txt" 2> "$out/features.err"
	rc=$?
	cat "$out/features.txt" "$out/features.err"
	if [ "$rc" -eq 0 ]; then
		# "  program icmpwall_xdp (xdp, production): loads, …" lines → "icmpwall_xdp"
		loaded=$(sed -n 's/^ *program \([a-z0-9_]*\) .*: loads.*/\1/p' "$out/features.txt" | sort -u | paste -sd, -)
		parts+=("load ok (${loaded:-?})")
	else
		reason=$(sed -n 's/^  - //p' "$out/features.txt" | head -1)
		parts+=("load FAILED${reason:+: $reason}")
		fail "icmpwall version --kernel exited $rc on $KMATRIX_KERNEL:"
		# The datapath section (with the verifier's reason for a refused program) and what attach lacks.
		while IFS= read -r line; do fail "  $line"; done < <({ sed -n '/^datapath:/,$p' "$out/features.txt"
			grep -E ' no +[0-9.]+ +attach' "$out/features.txt"; cat "$out/features.err"; } | grep -v '^\s*$' | head -60)
	fi
fi

# --- 2./3. test suites from the host-built bundle (Swift Testing) --------------------------------------------
run_suite() {
	local name=$1 filter=$2 logfile="$out/$1.log" rc line step_timeout=$((deadline - $(date +%s)))
	if [ "$step_timeout" -lt 10 ]; then
		parts+=("$name: NOT RUN (no time left)")
		fail "$name was not run on $KMATRIX_KERNEL: the guest's time budget was used up"
		return
	fi
	log "$name: $TEST_BUNDLE --testing-library swift-testing --filter $filter"
	NO_COLOR=1 timeout -k 10 "$step_timeout" "$TEST_BUNDLE" --testing-library swift-testing --filter "$filter" ${SKIP:+--skip "$SKIP"} 2>&1 \
		| sed 's/\x1b\[[0-9;]*m//g' > "$logfile"
	rc=${PIPESTATUS[0]}
	cat "$logfile"
	line=$(grep -E 'Test run with [0-9]+ test' "$logfile" | tail -1 | sed 's/^[^T]*Test run/Test run/')
	if [ "$rc" -eq 0 ] && [ -n "$line" ] && ! grep -q 'Test run with 0 tests' <<<"$line"; then
		parts+=("$name: $(sed -E 's/^Test run with ([0-9]+) tests?( in [0-9]+ suites?)? passed after ([0-9.]+) seconds.*/\1 passed in \3 s/' <<<"$line")")
		return
	fi
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		parts+=("$name: TIMED OUT after ${step_timeout} s")
		fail "$name timed out after $step_timeout s on $KMATRIX_KERNEL"
	else
		parts+=("$name: FAILED (exit $rc${line:+: $line})")
		fail "$name failed on $KMATRIX_KERNEL (exit $rc):"
	fi
	# The failing tests and their issues (file:line and the expectation, with verifier reasons quoted by BPFError).
	while IFS= read -r l; do fail "  $l"; done < <(grep -E '✘|verifier|Expectation failed|Caught error' "$logfile" | grep -v 'Test run with' | head -60)
}

has datapath && run_suite datapath IcmpwallDataplaneTests
# killDuringApply (100 killed applies of 1,500-rule policies) and the fault-injection suite (a 100,000-frame spoofed
# flood, six interface deletions) would take minutes under emulation, over the guest's budget: the host runs them.
has e2e && SKIP='killDuringApply|FaultInjectionTests' run_suite end-to-end IcmpwallEndToEndTests
# Opt-in (KMATRIX_SUITES="pins"): in-place upgrade of older pins, pins removed under an agent, pin modes. Kept out of
# the default run for the guest's time budget; the host runs it in make test.
has pins && run_suite pins PinSafetyTests

# --- leftovers: the suites clean up after themselves ----------------------------------------------------------
if has e2e || has pins; then
	left=$(ip netns list 2>/dev/null | wc -l)
	if [ "$left" -ne 0 ]; then
		fail "namespaces left behind on $KMATRIX_KERNEL: $(ip netns list | tr '\n' ' ')"
	fi
fi

summary="$KMATRIX_KERNEL: $([ $status -eq 0 ] && echo PASS || echo FAIL): $(IFS=';'; echo "${parts[*]}" | sed 's/;/; /g')"
echo "$summary" > "$out/summary"
log "$summary"
exit $status
