#!/bin/busybox sh
# PID 1 of the xtask QEMU guest (see initramfs.rs, mod.rs).
#
# Stage 1 (in the initramfs): load the boot modules, mount the host's root (9p share
# `hostroot`, read-only) under a tmpfs overlay so the guest root is writable, mount the
# kernel's own module tree (share `modules`) and the run's `job` share into it, then
# switch_root into it. switch_root rather than chroot: PID 1's root is also the root of the
# kernel's usermode helpers, so module autoloading (e.g. `ip link add type veth`) finds
# /sbin/modprobe and the modules in the new root.
#
# Stage 2 (PID 1 in the new root): run /.vm/job/run.sh, store its exit status in the job
# share and power off. Any failure powers off without a status file; the host then reports an
# error with the tail of this console.

fail() {
    echo "reach-vm init: FAILED: $*"
    poweroff -f
    exit 1
}

if [ "$1" != stage2 ]; then
    /bin/busybox --install -s /bin
    export PATH=/bin
    mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev ||
        fail "mounting /proc, /sys, /dev"
    while read -r module; do
        insmod "/modules/$module.ko" || fail "insmod $module"
    done </modules/order

    # 512000: the largest msize below virtio-9p's 128-page ring, which 6.1 caps at.
    p9="trans=virtio,version=9p2000.L,msize=512000"
    mount -t 9p -o "ro,$p9" hostroot /lower || fail "mounting the host root (9p)"
    mount -t tmpfs -o mode=0755 rw /rw && mkdir /rw/upper /rw/work || fail "mounting the overlay's tmpfs"
    mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
        fail "mounting the overlay root"

    R=/newroot
    modules="$R/lib/modules/$(uname -r)"
    mkdir -p "$modules" "$R/.vm/bin" "$R/.vm/job" || fail "creating mount points"
    mount -t 9p -o "ro,$p9" modules "$modules" || fail "mounting the kernel modules (9p)"
    mount -t 9p -o "$p9" job "$R/.vm/job" || fail "mounting the job share (9p)"
    for fs in dev proc sys; do
        mount --move "/$fs" "$R/$fs" || fail "moving /$fs"
    done
    mkdir -p "$R/dev/pts" "$R/dev/shm"
    mount -t devpts -o mode=0620,ptmxmode=0666 devpts "$R/dev/pts" &&
        mount -t tmpfs -o mode=1777 shm "$R/dev/shm" &&
        mount -t tracefs tracefs "$R/sys/kernel/tracing" &&
        mount -t debugfs debugfs "$R/sys/kernel/debug" &&
        mount -t bpf bpf "$R/sys/fs/bpf" &&
        mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup" ||
        fail "mounting devpts, shm, tracefs, debugfs, bpffs, cgroup2"
    # The host's /run (sockets, pid files, netns mounts) means nothing in the guest.
    mount -t tmpfs -o mode=0755 run "$R/run" || fail "mounting /run"

    # The module tree's indexes are busybox depmod's, which kmod cannot read: the guest's
    # module tools are busybox, whatever the host has installed.
    cp /bin/busybox "$R/.vm/bin/busybox" && cp /init "$R/.vm/init.sh" || fail "copying busybox"
    for tool in modprobe insmod rmmod lsmod modinfo depmod; do
        ln -sf /.vm/bin/busybox "$R/usr/sbin/$tool" || fail "linking $tool"
    done
    exec switch_root "$R" /.vm/bin/busybox sh /.vm/init.sh stage2
    fail "switch_root"
fi

/.vm/bin/busybox --install -s /.vm/bin
export PATH=/.vm/bin
echo /usr/sbin/modprobe >/proc/sys/kernel/modprobe
hostname reach-vm
ip link set lo up || fail "bringing lo up"

cd /
sh /.vm/job/run.sh </dev/null >/.vm/job/output 2>&1
status=$?
echo "reach-vm init: command exited with $status"
# Written then renamed: the host treats a present status file as complete.
echo "$status" >/.vm/job/status.tmp && mv /.vm/job/status.tmp /.vm/job/status || fail "writing the status"
sync
umount /.vm/job
poweroff -f
