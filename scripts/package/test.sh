#!/usr/bin/env bash
# `make test-package`: the .deb on a clean Debian 12, as an operator would install and start it.
#
#   scripts/package/test.sh ICMPWALL_DEB
#
# 1. A clean Debian 12: `debootstrap --variant=minbase bookworm` (cached as a tarball in BUILD_DIR/package-test for
#    30 days, unpacked fresh every run) into BUILD_DIR/package-test/root.
# 2. In a chroot there: `apt-get install --no-install-recommends ./icmpwall_*.deb` from the Debian mirror (as the
#    Dockerfile does). libbpf1, libelf1, libpcap0.8 and libyaml-0-2 are not in minbase, so apt must find them through the
#    package's Depends; then `icmpwall version`, `icmpwall check` on every shipped policy, conffiles registered.
#    lintian on the .deb (errors and warnings fail).
# 3. What every real Debian server has beside (systemd, kmod, iproute2, curl), `systemd-analyze verify` of the
#    installed unit, and the operator's steps: name the interface in /etc/icmpwall/agent.yaml, `systemctl enable
#    icmpwall`. The interface is a dummy created by a oneshot unit of the test's before icmpwall starts.
# 4. That root boots under QEMU/TCG with Debian 12's stock 6.1 kernel from the kernel matrix's cache
#    (scripts/kernels/lib.sh: same initramfs, kmatrix.init=systemd: systemd is PID 1), no network device at all.
#    A check unit in the guest (scripts/package/guest-check.sh) waits, bounded, until the unit is active and
#    enforcing with metrics, then tries reload, the upgrade path, remove and purge; it writes its findings to the
#    9p work folder and powers off. Anything else, or no report in time, fails the step, loudly.
#
# Environment: BUILD_DIR, KMATRIX_CACHE (the kernels, shared with make test-kernels), PACKAGE_TEST_MIRROR,
# PACKAGE_TEST_SECURITY_MIRROR, PACKAGE_TEST_GUEST_TIMEOUT (seconds, boot to power-off; default 420),
# KMATRIX_NO_UPDATE=1 (skip the host's apt-get update).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

say() { echo "package test: $*"; }
die() { echo "package test: error: $*" >&2; exit 1; }
# shellcheck source=scripts/kernels/lib.sh
. "$repo/scripts/kernels/lib.sh"

[ $# -eq 1 ] || die "usage: $0 ICMPWALL_DEB"
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, QEMU)"
deb=$(realpath "$1")
[ -f "$deb" ] || die "no package at $1 (make deb)"
BUILD_DIR=${BUILD_DIR:-.build}
ptdir=$(realpath -m "$BUILD_DIR/package-test")
cache=$(realpath -m "${KMATRIX_CACHE:-$BUILD_DIR/kernels}")
mirror=${PACKAGE_TEST_MIRROR:-http://deb.debian.org/debian}
security_mirror=${PACKAGE_TEST_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
guest_timeout=${PACKAGE_TEST_GUEST_TIMEOUT:-420}
root=$ptdir/root
base=$ptdir/bookworm-minbase.tar.zst
archives=$ptdir/apt-archives
# The interface the guest's agent protects: a dummy of the test's own (never a real interface).
test_if=icwpkg0

mkdir -p "$ptdir" "$archives/partial"
exec 8> "$ptdir/.lock"
flock -w 600 8 || die "another package test has held $ptdir/.lock for 10 minutes"
started=$(date +%s)
step() { say "+$(( $(date +%s) - started )) s: $*"; }

# --- mounts under the root: never rm -rf through one ------------------------------------------------------------
mounts_under() { awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r; }
unmount_under() {
	local m
	for m in $(mounts_under "$1"); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}
remove_tree() {
	unmount_under "$1"
	[ -z "$(mounts_under "$1")" ] || die "cannot unmount everything under $1: $(mounts_under "$1" | tr '\n' ' ')"
	rm -rf --one-file-system "$1"
}

work=$(mktemp -d "$ptdir/tmp.XXXXXX")
qemu_pid=
cleanup() {
	if [ -n "$qemu_pid" ]; then kill -TERM "$qemu_pid" 2>/dev/null || true; fi
	[ -f "$work/run/qemu.pid" ] && kill -9 "$(cat "$work/run/qemu.pid" 2>/dev/null)" 2>/dev/null || true
	unmount_under "$root"
	unmount_under "$ptdir/base.tmp"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for old in "$ptdir"/tmp.*; do [ "$old" = "$work" ] || rm -rf "$old"; done

# --- host tools --------------------------------------------------------------------------------------------------
kernel_apt_update
kernel_install_tools debootstrap lintian

# --- 1. a clean Debian 12 --------------------------------------------------------------------------------------
if [ -z "$(find "$base" -mtime -30 2>/dev/null)" ]; then
	step "debootstrap --variant=minbase bookworm $mirror (cached in $base for 30 days)"
	remove_tree "$ptdir/base.tmp"
	timeout -k 10 900 debootstrap --variant=minbase bookworm "$ptdir/base.tmp" "$mirror" > "$work/debootstrap.log" 2>&1 \
		|| { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
	unmount_under "$ptdir/base.tmp"
	tar -C "$ptdir/base.tmp" --numeric-owner -I 'zstd -T0 -3' -cf "$base.tmp" .
	mv "$base.tmp" "$base"
	remove_tree "$ptdir/base.tmp"
fi
step "unpacking a fresh Debian 12 minbase into $root"
remove_tree "$root"
mkdir -p "$root"
tar -C "$root" --numeric-owner -I zstd -xf "$base"

cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security_mirror bookworm-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Debian's way to say "no daemon starts in this chroot" (deb-systemd-invoke honours it); removed before the boot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mkdir -p "$root/var/cache/apt/archives"
mount --bind "$archives" "$root/var/cache/apt/archives"

in_root() {
	chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
apt_in_root() {
	in_root timeout -k 10 600 apt-get -o APT::Sandbox::User=root -o Acquire::Retries=3 "$@"
}
installed() { in_root dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- 2. the package, with apt resolving its Depends -------------------------------------------------------------
runtime_libs=(libbpf1 libelf1 libpcap0.8 libyaml-0-2)
for p in "${runtime_libs[@]}"; do
	! installed "$p" || die "$p is already in the minbase root: it would not prove the package's Depends"
done
step "apt-get update in the chroot"
apt_in_root update -qq > "$work/apt-update-root.log" 2>&1 || { cat "$work/apt-update-root.log" >&2; die "apt-get update in the chroot failed"; }
cp "$deb" "$root/tmp/"
step "apt-get install --no-install-recommends ./$(basename "$deb") (Depends: $(dpkg-deb -f "$deb" Depends))"
apt_in_root install -y --no-install-recommends "/tmp/$(basename "$deb")" > "$work/apt-install-deb.log" 2>&1 \
	|| { cat "$work/apt-install-deb.log" >&2; die "apt-get install of the package failed"; }
sed -n '/^The following NEW packages will be installed:/,/^[0-9]* upgraded/p' "$work/apt-install-deb.log" | sed 's/^/  | /'
grep '^icmpwall:' "$work/apt-install-deb.log" | sed 's/^/  | postinst: /' || true
installed icmpwall || die "dpkg does not list icmpwall as installed"
for p in "${runtime_libs[@]}"; do
	installed "$p" || die "apt did not install $p: the package's Depends miss it"
done
if in_root ldd /usr/bin/icmpwall | grep -q 'not found'; then
	die "the installed binary misses libraries: $(in_root ldd /usr/bin/icmpwall | grep 'not found' | tr -s ' \t' ' ')"
fi
version=$(in_root icmpwall version) || die "icmpwall version failed in the chroot"
say "$version"
shipped=$(ls "$repo"/Policies/*.yaml | wc -l)
checked=0
for p in "$root"/etc/icmpwall/policies/*.yaml; do
	line=$(in_root icmpwall check "/etc/icmpwall/policies/${p##*/}") || die "icmpwall check /etc/icmpwall/policies/${p##*/} failed: $line"
	say "  $line"
	checked=$((checked + 1))
done
[ "$checked" -eq "$shipped" ] || die "checked $checked policies in /etc/icmpwall/policies, the repository ships $shipped"
conffiles=$(in_root dpkg-query -W -f='${Conffiles}\n' icmpwall | awk 'NF { print $1 }')
for f in /etc/icmpwall/agent.yaml $(cd "$root" && ls etc/icmpwall/policies/*.yaml | sed 's|^|/|'); do
	grep -qxF "$f" <<<"$conffiles" || die "$f is not a conffile of the installed package"
done
say "conffiles: $(wc -l <<<"$conffiles") registered"

step "lintian $(basename "$deb")"
# Tags that do not apply to this package (one line each, with the reason):
#   no-manual-page: the command documents itself (--help on every subcommand) and in /usr/share/doc/icmpwall.
#   embedded-library: the Swift packages are linked statically by design (no Swift toolchain on edge servers).
#   initial-upload-closes-no-bugs: a native package built from the repository, not an upload to Debian.
lintian --fail-on error,warning --suppress-tags no-manual-page,embedded-library,initial-upload-closes-no-bugs \
	--tag-display-limit 0 "$deb" > "$work/lintian.log" 2>&1 || { cat "$work/lintian.log" >&2; die "lintian found errors or warnings"; }
sed 's/^/  | /' "$work/lintian.log"

# --- 3. the rest of a server, the unit, and the operator's steps -----------------------------------------------
step "apt-get install systemd kmod iproute2 curl (the rest of a Debian server)"
apt_in_root install -y --no-install-recommends systemd kmod iproute2 curl > "$work/apt-install-base.log" 2>&1 \
	|| { cat "$work/apt-install-base.log" >&2; die "apt-get install systemd kmod iproute2 curl failed"; }
verify=$(in_root systemd-analyze verify /lib/systemd/system/icmpwall.service 2>&1) \
	|| die "systemd-analyze verify icmpwall.service failed: $verify"
[ -z "$verify" ] || die "systemd-analyze verify icmpwall.service complained: $verify"
say "systemd-analyze verify icmpwall.service: clean"

# Installing neither enables nor starts the agent (postinst): the config must name the interfaces first.
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/icmpwall.service" ] || die "installing the package enabled the unit"
# The operator: the interface to protect, then `systemctl enable --now icmpwall` (now = at the boot below).
sed -i "s/^  - eth0\$/  - $test_if/" "$root/etc/icmpwall/agent.yaml"
grep -q "^  - $test_if\$" "$root/etc/icmpwall/agent.yaml" || die "cannot set the interface in /etc/icmpwall/agent.yaml"
cat > "$root/etc/systemd/system/icmpwall-test-link.service" <<EOF
[Unit]
Description=package test: the dummy interface the agent protects
Before=icmpwall.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip link add $test_if type dummy
ExecStart=/sbin/ip link set $test_if up
[Install]
WantedBy=multi-user.target
EOF
cat > "$root/etc/systemd/system/icmpwall-test-check.service" <<EOF
[Unit]
Description=package test: is icmpwall active, enforcing and serving metrics
After=icmpwall.service icmpwall-test-link.service
[Service]
Type=oneshot
TimeoutStartSec=360
ExecStart=/bin/bash /usr/local/sbin/icmpwall-test-check $test_if /var/cache/icmpwall-test/$(basename "$deb")
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
EOF
install -m 0755 "$here/guest-check.sh" "$root/usr/local/sbin/icmpwall-test-check"
install -D -m 0644 "$deb" "$root/var/cache/icmpwall-test/$(basename "$deb")"
in_root systemctl enable icmpwall.service icmpwall-test-link.service icmpwall-test-check.service > /dev/null 2>&1 \
	|| die "systemctl enable in the chroot failed"
[ -L "$root/etc/systemd/system/multi-user.target.wants/icmpwall.service" ] || die "systemctl enable icmpwall made no symlink"
# The guest has no udev: nothing would create the getty's tty device units (each would wait 90 s).
in_root systemctl mask getty@tty1.service serial-getty@ttyS0.service > /dev/null 2>&1 || true
echo icmpwall-package-test > "$root/etc/hostname"
rm -f "$root/usr/sbin/policy-rc.d" "$root/tmp/$(basename "$deb")"
unmount_under "$root"

# --- 4. boot it: systemd, the unit, enforcement ------------------------------------------------------------------
kernel_cache_lock
fetch_kernel 6.1
build_initramfs "$work/initramfs.gz"
run=$work/run
mkdir -p "$run"
step "booting the Debian 12 root under QEMU/TCG with $krel ($kpkg $kver), systemd as init (at most $guest_timeout s)"
t0=$(date +%s)
set +e
timeout -k 10 "$guest_timeout" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp 2 -m 1536 \
	-nodefaults -no-user-config -display none -no-reboot -pidfile "$run/qemu.pid" \
	-chardev "file,id=console,path=$run/console.log" -serial chardev:console \
	-kernel "$kdir/boot/vmlinuz-$krel" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0,115200 panic=-1 loglevel=4 mitigations=off quiet kmatrix.init=systemd" \
	-fsdev "local,id=hostroot,path=$root,security_model=none,readonly=on,multidevs=remap" \
	-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
	-fsdev "local,id=work,path=$run,security_model=none,multidevs=remap" \
	-device virtio-9p-pci,fsdev=work,mount_tag=work \
	-fsdev "local,id=modules,path=$kdir/lib/modules/$krel,security_model=none,readonly=on,multidevs=remap" \
	-device virtio-9p-pci,fsdev=modules,mount_tag=modules \
	< /dev/null > "$run/qemu.log" 2>&1 &
qemu_pid=$!
wait "$qemu_pid"
qemu_rc=$?
qemu_pid=
set -e
seconds=$(( $(date +%s) - t0 ))
cp "$run/console.log" "$ptdir/console.log" 2>/dev/null || true
for f in result systemctl-status.txt journal-icmpwall.txt journal-warnings.txt; do
	[ -f "$run/$f" ] && cp "$run/$f" "$ptdir/$f"
done

if [ -f "$run/result" ] && [ "$(tail -1 "$run/result")" = PASS ]; then
	sed 's/^/  | /' "$run/result"
	say "PASS: the .deb installs on a clean Debian 12 with apt, its binary checks every shipped policy, the enabled" \
		"unit starts at boot and enforces, and reload, upgrade, remove and purge behave ($seconds s in the guest," \
		"$(( $(date +%s) - started )) s in all)"
	remove_tree "$root"
	exit 0
fi

if [ ! -f "$run/result" ]; then
	if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
		say "FAIL: the guest did not report within $guest_timeout s"
	else
		say "FAIL: QEMU exited $qemu_rc after $seconds s without the guest reporting (boot failure or crash)"
	fi
else
	say "FAIL: the guest reported:"
	sed 's/^/  | /' "$run/result"
fi
for f in systemctl-status.txt journal-icmpwall.txt; do
	[ -s "$run/$f" ] && { echo "  | --- $f"; tail -40 "$run/$f" | sed 's/^/  | /'; }
done
echo "  | --- last console lines ($ptdir/console.log has all of it; the root is kept in $root):"
grep -v '^\s*$' "$run/console.log" 2>/dev/null | tail -25 | sed 's/^/  | /'
[ -s "$run/qemu.log" ] && sed 's/^/  | qemu: /' "$run/qemu.log" | tail -5
exit 1
