#!/bin/bash
# Runs inside the package test's guest (scripts/package/test.sh), as a oneshot unit after icmpwall.service, on the
# Debian 12 that booted with the .deb installed and the unit enabled:
#   icmpwall-test-check IF
# 1. within 150 s: `systemctl is-active icmpwall` is active, `icmpwall status` shows IF enforcing with its egress
#    filter, /metrics has icmpwall_interface_enforcing{interface="IF"} 1, /healthz answers 200;
# 2. `systemctl reload icmpwall` (the unit's ExecReload: SIGHUP) counts a reload in /metrics within 30 s;
# 3. `systemctl stop icmpwall`: the unit is inactive and IF still enforcing (fail-static).
# Findings go to /kmatrix/result (the host's 9p work folder), last line PASS or FAIL; then the unit powers off.
interface=$1
out=/kmatrix/result
: > "$out"
failed=0
report() { echo "$*" >> "$out"; echo "icmpwall-test-check: $*"; }
fail() { report "FAILED: $*"; failed=1; }
metrics() { curl -fsS --max-time 10 http://127.0.0.1:9464/metrics 2>&1; }

# --- 1. started at boot, enforcing, serving -----------------------------------------------------------------------
ok=0
for i in $(seq 1 150); do
	active=$(systemctl is-active icmpwall)
	status=$(timeout 20 icmpwall status --interface "$interface" 2>&1)
	m=$(metrics)
	health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:9464/healthz 2>&1)
	if [ "$active" = active ] && grep -q "^$interface: enforcing" <<<"$status" \
		&& grep -q 'egress error limiter: tc clsact egress filter' <<<"$status" \
		&& grep -qxF "icmpwall_interface_enforcing{interface=\"$interface\"} 1" <<<"$m" && [ "$health" = 200 ]; then
		ok=1
		break
	fi
	sleep 1
done
report "after $i polls: systemctl is-active icmpwall: $active; GET /healthz: $health"
report "icmpwall status --interface $interface:"
sed 's/^/    /' <<<"$status" >> "$out"
report "GET /metrics: $(grep -c . <<<"$m") lines, of which:"
grep -E '^icmpwall_(interface_enforcing|build_info|policy_info)' <<<"$m" | sed 's/^/    /' >> "$out"
[ "$ok" = 1 ] || fail "the unit did not become active and enforcing with metrics within 150 s"

# --- 2. systemctl reload: SIGHUP, a reload counted ------------------------------------------------------------------
if [ "$failed" = 0 ]; then
	reloads() {
		metrics | awk -v i="interface=\"$interface\"" '/^icmpwall_policy_reloads_total\{/ && index($0, i) && index($0, "result=\"ok\"") { v = $NF }
			END { print v + 0 }'
	}
	more() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
	before=$(reloads)
	if systemctl reload icmpwall; then
		after=$before
		for i in $(seq 1 30); do
			after=$(reloads)
			more "$after" "$before" && break
			sleep 1
		done
		report "systemctl reload icmpwall: icmpwall_policy_reloads_total{result=\"ok\"} $before -> $after"
		more "$after" "$before" || fail "systemctl reload counted no policy reload within 30 s"
	else
		fail "systemctl reload icmpwall failed"
	fi
fi

# --- 3. systemctl stop: fail-static ----------------------------------------------------------------------------------
if [ "$failed" = 0 ]; then
	systemctl stop icmpwall
	state=$(systemctl is-active icmpwall)
	status=$(timeout 20 icmpwall status --interface "$interface" 2>&1)
	report "systemctl stop icmpwall: $state; then icmpwall status: $(head -1 <<<"$status")"
	[ "$state" = inactive ] || fail "the unit is $state after systemctl stop"
	grep -q "^$interface: enforcing" <<<"$status" || fail "$interface is not enforcing after the agent stopped (fail-static)"
fi

report "kernel $(uname -r), $(systemctl --version | head -1)"
systemctl status --no-pager icmpwall > /kmatrix/systemctl-status.txt 2>&1
journalctl -b --no-pager -u icmpwall > /kmatrix/journal-icmpwall.txt 2>&1
journalctl -b --no-pager -p warning > /kmatrix/journal-warnings.txt 2>&1
if [ "$failed" = 0 ]; then report PASS; else report FAIL; fi
