#!/bin/busybox sh
# /init of the kernel-matrix initramfs (built by scripts/kernels/lib.sh; busybox only, no host tools yet).
#
# Loads the 9p/virtio/overlay modules listed in /modules/order (taken from the guest kernel's own package),
# mounts the host's root read-only over 9p (tag "hostroot") with a RAM overlay on top, mounts the run's work
# folder read-write (tag "work") at /kmatrix, gives the new root fresh proc/sys/dev/bpffs/tmp/run, runs
# /kmatrix/cmd.sh in it, records its exit code in /kmatrix/rc, prints it on the serial console and powers off.
# With kmatrix.init=systemd on the kernel command line it boots the shared root's systemd instead (the package
# test, scripts/package/test.sh).
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /lower /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "kmatrix-init: $*" > /dev/console; }

finish() {
	# $1: exit code to report. Everything the host needs is in /kmatrix (and this console line).
	say "exit code $1"
	echo "KMATRIX-EXIT $1" > /dev/console
	sync
	poweroff -f
	sleep 5
	echo o > /proc/sysrq-trigger
}

ip link set lo up  # Foundation's run loop needs loopback (CFSocket's wakeup sockets)
for m in $(cat /modules/order); do
	insmod "/modules/$m" || say "insmod $m failed"
done

opts=trans=virtio,version=9p2000.L,msize=512000
if ! mount -t 9p -o "$opts,ro,cache=loose" hostroot /lower; then
	say "cannot mount the host root over 9p"
	finish 90
fi
mount -t tmpfs -o size=75% tmpfs /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot; then
	say "cannot mount the overlay root"
	finish 91
fi
mkdir -p /newroot/kmatrix
if ! mount -t 9p -o "$opts" work /newroot/kmatrix; then
	say "cannot mount the work folder over 9p"
	finish 92
fi

if grep -q 'kmatrix\.init=systemd' /proc/cmdline; then
	# A whole Debian system as the root ("hostroot" is then its folder, scripts/package/test.sh): its own systemd
	# becomes PID 1 on the overlay root, with the guest kernel's modules (tag "modules") where kmod looks for them
	# and the work folder still at /kmatrix. systemd mounts proc, sys, bpffs, run and tmp itself.
	krel=$(uname -r)
	mkdir -p "/newroot/lib/modules/$krel"
	mount -t 9p -o "$opts,ro,cache=loose" modules "/newroot/lib/modules/$krel" || say "cannot mount the kernel's modules"
	mount --move /dev /newroot/dev
	umount /sys /proc
	exec switch_root /newroot /lib/systemd/systemd
	say "switch_root to systemd failed"
	finish 93
fi

mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
# devtmpfs has no /dev/fd and friends (bash's process substitution needs /dev/fd).
ln -sf /proc/self/fd /newroot/dev/fd
ln -sf /proc/self/fd/0 /newroot/dev/stdin
ln -sf /proc/self/fd/1 /newroot/dev/stdout
ln -sf /proc/self/fd/2 /newroot/dev/stderr
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t bpf bpf /newroot/sys/fs/bpf
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mount -t tracefs tracefs /newroot/sys/kernel/tracing 2>/dev/null

# The repository at its own path, read-only over 9p with a RAM overlay (writes stay in the guest): a checkout
# under /tmp or /run is hidden by the tmpfs mounted there above.
repo=$(sed -n 's/.*kmatrix\.repo=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$repo" ]; then
	mkdir -p /repo-lower /rw/repo-upper /rw/repo-work "/newroot$repo"
	if ! mount -t 9p -o "$opts,ro,cache=loose" repo /repo-lower ||
	   ! mount -t overlay overlay -o lowerdir=/repo-lower,upperdir=/rw/repo-upper,workdir=/rw/repo-work "/newroot$repo"; then
		say "cannot mount the repository $repo over 9p"
	fi
fi

# Modules the kernel asks for on demand (veth, sch_ingress, cls_bpf …) come from the guest kernel's package,
# which the command bind-mounts at /lib/modules/$(uname -r) in the new root. The kernel runs its modprobe helper
# from whichever root its threads see, so /kmodprobe exists in both and ends in the new root's modprobe.
printf '#!/bin/sh\nexec /bin/chroot /newroot /sbin/modprobe "$@"\n' > /kmodprobe
printf '#!/bin/sh\nexec /sbin/modprobe "$@"\n' > /newroot/kmodprobe
chmod 755 /kmodprobe /newroot/kmodprobe
echo /kmodprobe > /proc/sys/kernel/modprobe

chroot /newroot /bin/sh /kmatrix/cmd.sh < /dev/console > /dev/console 2>&1
rc=$?
echo "$rc" > /newroot/kmatrix/rc
sync
umount /newroot/kmatrix 2>/dev/null
finish "$rc"
