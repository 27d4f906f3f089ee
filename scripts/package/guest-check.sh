#!/bin/bash
# Runs inside the package test's guest (scripts/package/test.sh), as a oneshot unit after icmpwall.service, on the
# Debian 12 that booted with the .deb installed and the unit enabled:
#   icmpwall-test-check IF DEB
# 1. within 150 s: `systemctl is-active icmpwall` is active, `icmpwall status` shows IF enforcing with its egress
#    filter, /metrics has icmpwall_interface_enforcing{interface="IF"} 1, /healthz answers 200;
# 2. `systemctl reload icmpwall` (the unit's ExecReload: SIGHUP) counts a reload in /metrics within 30 s;
# 3. `dpkg -i DEB` (the same package again: the upgrade path) restarts the running agent, which adopts the pins
#    (same program id: enforcement never stopped);
# 4. `apt-get remove icmpwall` stops the agent and IF stays enforcing (fail-static), `apt-get purge` removes the
#    config, and removing the pins and the egress filter by hand (README) lifts enforcement.
# Findings go to /kmatrix/result (the host's 9p work folder), last line PASS or FAIL; then the unit powers off.
interface=$1
deb=$2
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

# --- 3. upgrade path: the package installed again while the agent runs -----------------------------------------------
program_id() { sed -n "s/^$interface: enforcing .*program id \([0-9]*\).*/\1/p" <<<"$1"; }
if [ "$failed" = 0 ]; then
	pid_before=$(systemctl show -p MainPID --value icmpwall)
	program_before=$(program_id "$status")
	if dpkg -i "$deb" > /kmatrix/dpkg-upgrade.log 2>&1; then
		for i in $(seq 1 60); do
			pid_after=$(systemctl show -p MainPID --value icmpwall)
			status=$(timeout 20 icmpwall status --interface "$interface" 2>&1)
			[ "$(systemctl is-active icmpwall)" = active ] && [ "$pid_after" != "$pid_before" ] && [ "$pid_after" != 0 ] \
				&& grep -q "^$interface: enforcing" <<<"$status" && break
			sleep 1
		done
		program_after=$(program_id "$status")
		report "dpkg -i (upgrade path, agent running): agent pid $pid_before -> $pid_after, $(systemctl is-active icmpwall), program id $program_before -> $program_after"
		[ "$pid_after" != "$pid_before" ] && [ "$pid_after" != 0 ] || fail "postinst did not restart the running agent"
		[ -n "$program_before" ] && [ "$program_after" = "$program_before" ] \
			|| fail "the restarted agent did not adopt the pinned program (id $program_before -> ${program_after:-none})"
	else
		fail "dpkg -i $deb failed: $(tail -3 /kmatrix/dpkg-upgrade.log)"
	fi
fi

# --- 4. apt-get remove: the agent stops, enforcement stays (fail-static) ----------------------------------------------
xdp_attached() { ip link show dev "$interface" | grep -q 'prog/xdp'; }
egress_attached() { [ -n "$(tc filter show dev "$interface" egress)" ]; }
if [ "$failed" = 0 ]; then
	if apt-get remove -y icmpwall > /kmatrix/apt-remove.log 2>&1; then
		state=$(systemctl is-active icmpwall)
		report "apt-get remove icmpwall: unit $state; $(grep -m1 'stays protected' /kmatrix/apt-remove.log)"
		[ "$state" != active ] || fail "the agent still runs after apt-get remove"
		xdp_attached && egress_attached && [ -d "/sys/fs/bpf/icmpwall/$interface" ] \
			|| fail "$interface lost its XDP program, egress filter or pins when the package was removed (fail-static)"
		grep -q "stays protected" /kmatrix/apt-remove.log || fail "prerm did not say that $interface stays protected"
		[ "$(readlink /etc/systemd/system/icmpwall.service)" = /dev/null ] || fail "postrm remove did not mask the unit"
	else
		fail "apt-get remove icmpwall failed: $(tail -3 /kmatrix/apt-remove.log)"
	fi
	apt-get purge -y icmpwall > /kmatrix/apt-purge.log 2>&1 || fail "apt-get purge icmpwall failed: $(tail -3 /kmatrix/apt-purge.log)"
	[ ! -e /etc/icmpwall/agent.yaml ] || fail "apt-get purge left /etc/icmpwall/agent.yaml"
	[ ! -L /etc/systemd/system/icmpwall.service ] && [ ! -L /etc/systemd/system/multi-user.target.wants/icmpwall.service ] \
		|| fail "apt-get purge left the unit masked or enabled"
	xdp_attached || fail "$interface stopped enforcing at purge"
	report "apt-get purge icmpwall: /etc/icmpwall $([ -e /etc/icmpwall ] && echo remains || echo removed), unit unmasked, $interface $(xdp_attached && echo still enforcing)"
	# Lifting enforcement without the binary, as the README and prerm say: the pins (the XDP link goes with its
	# last reference), then icmpwall's own egress filter (ICW_TC_PRIORITY 0xc3d = 3133, ICW_TC_HANDLE 0x1c3d).
	rm -rf "/sys/fs/bpf/icmpwall/$interface"
	rmdir /sys/fs/bpf/icmpwall 2>/dev/null
	tc filter del dev "$interface" egress pref 3133 handle 0x1c3d bpf
	if xdp_attached || egress_attached; then
		fail "removing the pins and the egress filter did not lift enforcement: $(ip link show dev "$interface" | tr '\n' ' ')"
	else
		report "rm -rf /sys/fs/bpf/icmpwall/$interface; tc filter del dev $interface egress pref 3133 handle 0x1c3d bpf: no XDP program, no egress filter"
	fi
fi

report "kernel $(uname -r), $(systemctl --version | head -1)"
systemctl status --no-pager icmpwall > /kmatrix/systemctl-status.txt 2>&1
journalctl -b --no-pager -u icmpwall > /kmatrix/journal-icmpwall.txt 2>&1
journalctl -b --no-pager -p warning > /kmatrix/journal-warnings.txt 2>&1
if [ "$failed" = 0 ]; then report PASS; else report FAIL; fi
