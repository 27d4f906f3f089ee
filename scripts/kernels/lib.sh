# Sourced (not run) by scripts/kernels/matrix.sh and scripts/package/test.sh: Debian 12's stock kernels fetched
# into a cache and unpacked (never installed), and the busybox initramfs (scripts/kernels/init.sh) that boots them
# under QEMU with a root shared over 9p.
#
# The caller sets `cache` (the kernel cache folder) and `work` (a scratch folder inside it, removed by the caller),
# defines say and die, and holds `$cache/.lock` (kernel_cache_lock) while it uses the cache.

kernels_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
busybox=/bin/busybox  # busybox-static's: the initramfs has no libc

# Which package is "the newest stock kernel" of each line.
declare -A package_pattern=([6.1]='^linux-image-6\.1\.0-[0-9]+-amd64$' [6.12]='^linux-image-6\.12\.[0-9]+\+deb12-amd64$')

apt_get() { timeout -k 10 300 apt-get -o DPkg::Lock::Timeout=120 -o APT::Sandbox::User=root "$@"; }

# One user of the cache at a time (kernels are fetched into it); then what a killed run left behind can go.
kernel_cache_lock() {
	mkdir -p "$cache"
	exec 9> "$cache/.lock"
	flock -w 900 9 || die "another kernel matrix or package test has held $cache/.lock for 15 minutes"
	rm -rf "$cache"/tmp.* "$cache"/linux-image-*.tmp
}

# The kernel packages are resolved from the package lists: they must be fresh (old security builds leave the
# mirror). Another apt may hold the lists lock for a moment: retry a few times. KMATRIX_NO_UPDATE=1 skips it.
kernel_apt_update() {
	[ "${KMATRIX_NO_UPDATE:-0}" != 1 ] || return 0
	local attempt
	for attempt in 1 2 3; do
		if timeout -k 10 120 apt-get update -qq > "$work/apt-update.log" 2>&1; then return 0; fi
		[ "$attempt" -lt 3 ] || { cat "$work/apt-update.log" >&2; die "apt-get update failed"; }
		sleep 10
	done
}

# QEMU, busybox and the module tools, plus any packages given as arguments.
kernel_install_tools() {
	local missing=() p
	for p in qemu-system-x86 busybox-static xz-utils zstd kmod "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends "${missing[@]}" > "$work/apt-install.log" 2>&1 \
			|| { cat "$work/apt-install.log" >&2; die "apt-get install ${missing[*]} failed"; }
	fi
	[ -x "$busybox" ] || die "busybox-static did not install $busybox"
}

# The newest stock package of a kernel line, unpacked into the cache.
# Sets kdir (the unpacked package), krel (its release, uname -r), kpkg, kver.
fetch_kernel() {
	local line=$1
	kpkg=$(apt-cache search --names-only "${package_pattern[$line]}" | awk '{print $1}' | sort -V | tail -1)
	[ -n "$kpkg" ] || die "no package matches ${package_pattern[$line]} (is bookworm-security in the apt sources?)"
	kver=$(apt-cache show --no-all-versions "$kpkg" | awk '/^Version:/ {print $2; exit}')
	kdir="$cache/$kpkg"
	if [ "$(cat "$kdir/.version" 2>/dev/null)" != "$kver" ] || ! ls "$kdir"/boot/vmlinuz-* > /dev/null 2>&1; then
		say "fetching $kpkg $kver"
		rm -rf "$kdir" "$work/dl"
		mkdir -p "$work/dl"
		(cd "$work/dl" && apt_get download -qq "$kpkg=$kver" > "$work/apt-download.log" 2>&1) \
			|| { cat "$work/apt-download.log" >&2; die "apt-get download $kpkg=$kver failed"; }
		mkdir -p "$kdir.tmp"
		dpkg-deb -x "$work"/dl/*.deb "$kdir.tmp"
		rm -rf "$work/dl"
		# The package leaves modules.dep to its postinst: make it here (also what the guest's modprobe reads).
		local rel
		rel=$(ls "$kdir.tmp/lib/modules" | head -1)
		depmod -b "$kdir.tmp" -F "$kdir.tmp/boot/System.map-$rel" "$rel" || die "depmod for $rel failed"
		echo "$kver" > "$kdir.tmp/.version"
		mv "$kdir.tmp" "$kdir"
	fi
	krel=$(ls "$kdir/lib/modules" | head -1)
	[ -n "$krel" ] && [ -f "$kdir/boot/vmlinuz-$krel" ] || die "unexpected layout in $kdir"
}

# The initramfs: busybox, scripts/kernels/init.sh, and the modules needed to reach a 9p root: the closure of
# virtio_pci, 9pnet_virtio, 9p and overlay over modules.dep, dependencies first, decompressed (busybox insmod
# reads plain .ko files); built-ins are skipped. Needs fetch_kernel's kdir and krel.
build_initramfs() {
	local moddir="$kdir/lib/modules/$krel" stage="$work/initramfs-$krel" out=$1 n=0
	declare -A seen=()
	local order=()
	module_path() {
		awk -F: -v want="$1" '{ b = $1; sub(/.*\//, "", b); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", b); gsub(/-/, "_", b);
			if (b == want) { print $1; exit } }' "$moddir/modules.dep"
	}
	add_module() {
		local path=$1 d
		[ -z "${seen[$path]:-}" ] || return 0
		seen[$path]=1
		for d in $(awk -F: -v p="$path" '$1 == p { print $2; exit }' "$moddir/modules.dep"); do add_module "$d"; done
		order+=("$path")
	}
	rm -rf "$stage"
	mkdir -p "$stage/bin" "$stage/modules"
	for m in virtio_pci 9pnet_virtio 9p overlay; do
		local p
		p=$(module_path "$m")
		if [ -z "$p" ]; then
			grep -qE "/$m\.ko$" "$moddir/modules.builtin" || die "$krel has no module $m (and it is not built in)"
			continue
		fi
		add_module "$p"
	done
	for p in "${order[@]}"; do
		n=$((n + 1))
		local name
		name=$(printf '%02d-%s' "$n" "$(basename "$p" | sed -E 's/\.(xz|zst|gz)$//')")
		case "$p" in
		*.xz) xz -dc "$moddir/$p" > "$stage/modules/$name" ;;
		*.zst) zstd -qdc "$moddir/$p" > "$stage/modules/$name" ;;
		*.gz) gzip -dc "$moddir/$p" > "$stage/modules/$name" ;;
		*) cp "$moddir/$p" "$stage/modules/$name" ;;
		esac
		echo "$name" >> "$stage/modules/order"
	done
	touch "$stage/modules/order"
	cp "$busybox" "$stage/bin/busybox"
	cp "$kernels_here/init.sh" "$stage/init"
	chmod 755 "$stage/init" "$stage/bin/busybox"
	(cd "$stage" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$out")
	rm -rf "$stage"
}

# Keep only the newest kernel of each line: older ABIs would pile up in the cache.
prune_kernel_cache() {
	local wanted d line
	wanted=$(for line in "${!package_pattern[@]}"; do apt-cache search --names-only "${package_pattern[$line]}" | awk '{print $1}' | sort -V | tail -1; done)
	for d in "$cache"/linux-image-*; do
		[ -d "$d" ] || continue
		grep -qxF "$(basename "$d")" <<<"$wanted" || rm -rf "$d"
	done
}
