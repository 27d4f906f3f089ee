#!/usr/bin/env bash
# Builds the Debian package from an install tree (`make deb`: `make install DESTDIR=STAGE`, then this script).
#
#   scripts/package/build-deb.sh TREE/debian/icmpwall OUTDIR     writes OUTDIR/icmpwall_VERSION_ARCH.deb
#
# The install tree sits where dpkg-shlibdeps expects a package's files (TREE/debian/icmpwall; TREE/debian/control
# is written here).
#
# Version: `icmpwall version --json` of the staged binary (DEB_VERSION overrides it). Depends: dpkg-shlibdeps on
# the binary's NEEDED entries, then checked independently (every NEEDED library resolves, and the package that
# owns it is named in Depends). Every file under /etc is a conffile. Maintainer scripts: deploy/debian/.
# Environment: DEB_MAINTAINER, DEB_VERSION, BUILD_DIR (for the Swift packages' license texts).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "make deb: error: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: $0 TREE/debian/icmpwall OUTDIR"
stage=$(realpath "$1")
[[ "$stage" == */debian/icmpwall ]] || die "the install tree must be TREE/debian/icmpwall (dpkg-shlibdeps), not $stage"
tree=${stage%/debian/icmpwall}
out=$(realpath -m "$2")
build_dir=$(realpath -m "$repo/${BUILD_DIR:-.build}")
maintainer=${DEB_MAINTAINER:-icmpwall maintainers <maintainers@icmpwall.example.org>}
bin=$stage/usr/bin/icmpwall
[ -x "$bin" ] || die "no binary at $bin (make install DESTDIR=$stage PREFIX=/usr first)"
for tool in dpkg-deb dpkg-shlibdeps readelf strip; do
	command -v "$tool" > /dev/null || die "$tool is missing (packages dpkg-dev, binutils)"
done

# --- binary: stripped (debug info would triple the download), and it must still run ----------------------------
strip --strip-unneeded --remove-section=.comment "$bin"
version_json=$("$bin" version --json) || die "the staged binary does not run: $bin version --json"
version=${DEB_VERSION:-$(sed -n 's/.*"version" *: *"\([^"]*\)".*/\1/p' <<<"$version_json")}
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "cannot read a Debian version from '$version_json' (set DEB_VERSION)"
arch=$(dpkg --print-architecture)

# --- Depends: dpkg-shlibdeps, then every NEEDED library checked against it -------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# (dpkg-shlibdeps finds the package's root by its DEBIAN folder.)
mkdir -p "$stage/DEBIAN"
printf 'Source: icmpwall\n\nPackage: icmpwall\nArchitecture: any\n' > "$tree/debian/control"
(cd "$tree" && dpkg-shlibdeps -O -edebian/icmpwall/usr/bin/icmpwall) > "$work/substvars" 2> "$work/shlibdeps.err" \
	|| { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed on $bin"; }
cat "$work/shlibdeps.err" >&2
depends=$(sed -n 's/^shlibs:Depends=//p' "$work/substvars")
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies for $bin"
# The Debian package that ships a library file (empty if none does); /lib and /usr/lib are one folder (merged
# /usr), so dpkg may know the file under either name.
owner_package() {
	local owner
	owner=$(dpkg -S "$1" 2>/dev/null || dpkg -S "$(realpath "$1")" 2>/dev/null || dpkg -S "${1#/usr}" 2>/dev/null \
		|| dpkg -S "/usr$1" 2>/dev/null || true)
	echo "${owner%%:*}"
}

# Libraries the binary opens with dlopen (not NEEDED, so dpkg-shlibdeps cannot see them): libpcap, for capture
# files (Sources/IcmpwallCapture/Pcap.swift). Each must resolve here; the package that ships it joins Depends.
for soname in libpcap.so.0.8; do
	! readelf -d "$bin" | grep -q "(NEEDED).*\[$soname\]" || die "$bin links $soname: it should open it with dlopen (startup cost)"
	path=$(ldconfig -p | awk -v l="$soname" '$1 == l && /x86-64|64bit/ { print $NF; exit }')
	[ -n "$path" ] || path=$(ldconfig -p | awk -v l="$soname" '$1 == l { print $NF; exit }')
	[ -n "$path" ] || die "$soname (opened at run time) is not installed here"
	pkg=$(owner_package "$path")
	[ -n "$pkg" ] || die "$soname ($path) belongs to no Debian package"
	depends="$depends, $pkg"
	echo "make deb: dlopen $soname -> $pkg"
done
depends_names=" $(sed -E 's/ *\([^)]*\)//g; s/[,|]/ /g' <<<"$depends" | tr -s ' ') "

needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || die "readelf found no NEEDED entries in $bin"
! readelf -d "$bin" | grep -qE '\((RPATH|RUNPATH)\)' || die "$bin has a run path (build it with --disable-local-rpath: make release)"
if ldd "$bin" | grep -q 'not found'; then
	die "libraries the binary needs are not found here: $(ldd "$bin" | grep 'not found' | tr -s ' \t' ' ')"
fi
for lib in $needed; do
	# "libx.so.1 => /path (addr)", or "/path/ld-linux-x86-64.so.2 (addr)" for the dynamic linker.
	path=$(ldd "$bin" | awk -v l="$lib" '$1 == l && $2 == "=>" { print $3; exit } $1 ~ ("/" l "$") { print $1; exit }')
	[ -n "$path" ] || die "NEEDED $lib does not resolve (ldd)"
	pkg=$(owner_package "$path")
	[ -n "$pkg" ] || die "NEEDED $lib ($path) belongs to no Debian package: the package cannot depend on it"
	[[ "$depends_names" == *" $pkg "* ]] || die "NEEDED $lib comes from $pkg, which Depends ($depends) does not name"
	echo "make deb: NEEDED $lib -> $pkg"
done

# --- package metadata ------------------------------------------------------------------------------------------
doc=$stage/usr/share/doc/icmpwall
mkdir -p "$doc" "$stage/DEBIAN"
# A license file as Debian wants it: the Apache 2.0 text is in /usr/share/common-licenses, only what follows it
# (the Swift runtime's exception) is copied.
license_text() {
	if grep -q 'END OF TERMS AND CONDITIONS' "$1" && grep -q 'Apache License' "$1"; then
		echo "Apache-2.0: /usr/share/common-licenses/Apache-2.0"
		awk 'tail { print } /limitations under the License\./ { tail = 1 }' "$1" | sed '/./,$!d'
	else
		cat "$1"
	fi
}
{
	cat "$repo/deploy/debian/copyright"
	swift_license=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")/share/swift/LICENSE.txt
	if [ -f "$swift_license" ]; then
		printf '\n\n===== Swift runtime and Foundation =====\n\n'
		license_text "$swift_license"
	fi
	for d in "$build_dir"/checkouts/*/; do
		for f in "$d"LICENSE* "$d"NOTICE* $(find "${d}Sources" -iname 'LICENSE*' 2>/dev/null | sort); do
			[ -f "$f" ] || continue
			printf '\n\n===== %s: %s =====\n\n' "$(basename "$d")" "${f#"$d"}"
			license_text "$f"
		done
	done
} > "$doc/copyright"
# A native package's changelog: one entry, the commit it was built from.
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	printf 'icmpwall (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from commit %s (icmpwall %s).\n\n' "$commit" "$version_json"
	printf ' -- %s  %s\n' "$maintainer" "$(date -R -d "@$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n > "$doc/changelog.gz"

# prerm tells how to remove icmpwall's egress filter by its handle and priority: they must be the datapath's.
tc_handle=$(awk '$2 == "ICW_TC_HANDLE" { print $3 }' "$repo/bpf/include/icmpwall_abi.h")
tc_priority=$(awk '$2 == "ICW_TC_PRIORITY" { print $3 }' "$repo/bpf/include/icmpwall_abi.h")
grep -qF "pref $((tc_priority)) handle $tc_handle bpf" "$repo/deploy/debian/prerm" \
	|| die "deploy/debian/prerm must name the egress filter as pref $((tc_priority)) handle $tc_handle (bpf/include/icmpwall_abi.h)"
for s in postinst prerm postrm; do install -m 0755 "$repo/deploy/debian/$s" "$stage/DEBIAN/$s"; done
install -D -m 0644 "$repo/deploy/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/icmpwall"
(cd "$stage" && find etc -type f | sort | sed 's|^|/|') > "$stage/DEBIAN/conffiles"
[ -s "$stage/DEBIAN/conffiles" ] || die "no files under $stage/etc: nothing to mark as conffile"

# Modes: the tree is built by `install`, but a umask can leave group-writable folders behind.
find "$stage" -path "$stage/DEBIAN" -prune -o -type d -exec chmod 0755 {} +
find "$stage" -path "$stage/DEBIAN" -prune -o -type f ! -path "$bin" -exec chmod 0644 {} +
chmod 0755 "$bin"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/conffiles"

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: icmpwall
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Section: net
Priority: optional
Description: XDP firewall and rate limiter for ICMP and ICMPv6
 icmpwall enforces an ICMP/ICMPv6 policy in the kernel's fast path (XDP, with a
 tc egress filter for the errors the host sends): it drops deprecated and
 dangerous messages, rate-limits echo and error floods, refuses policies that
 would break path-MTU discovery or neighbor discovery, and counts every frame.
 .
 This package ships the icmpwall command (built with the Swift runtime linked
 statically), the example policies in /etc/icmpwall/policies, and the agent:
 a systemd service that keeps the interfaces named in /etc/icmpwall/agent.yaml
 protected, reloads policies, and serves Prometheus metrics. Enforcement is
 pinned in bpffs and survives restarts and upgrades of the agent.
EOF

mkdir -p "$out"
deb=$out/icmpwall_${version}_${arch}.deb
rm -f "$out"/icmpwall_*.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" > /dev/null
echo "make deb: Depends: $depends"
echo "make deb: $(du -h "$deb" | cut -f1) $deb"
echo "$deb" > "$out/latest"
