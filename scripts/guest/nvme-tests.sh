#!/bin/sh
# The tests scripts/nvme-vm runs inside its QEMU guest (busybox ash), started by the
# guest's /init. Drives the emulated NVMe controller at $BLOBFS_ADDR first through the
# kernel nvme driver, then through the user-space driver (blobfs-nvme, --nvme ADDR) after
# binding it to vfio-pci or uio_pci_generic. Each step prints "STEP <name>: ok|FAILED";
# the first failure ends the run (exit 1) with its reason in /tmp/fail-reason.
#
# Environment (set by /init from the kernel command line):
#   BLOBFS_MODE                 vfio | uio
#   BLOBFS_BENCH                1: benchmark kernel aio against the user-space driver
#                               instead of the functional steps
#   BLOBFS_BENCH_SECONDS        seconds per benchmark workload (default 5)
#   BLOBFS_ALLOW_MISSING_NVME   1: skip the steps whose user-space NVMe tool or --nvme
#                               option is not built yet (development only)
#   BLOBFS_ADDR                 PCI address of the controller (default 0000:00:04.0)

MODE=${BLOBFS_MODE:?BLOBFS_MODE not set}
ADDR=${BLOBFS_ADDR:-0000:00:04.0}
BENCH=${BLOBFS_BENCH:-0}
BENCH_SECONDS=${BLOBFS_BENCH_SECONDS:-5}
ALLOW_MISSING=${BLOBFS_ALLOW_MISSING_NVME:-0}
CMD_TIMEOUT=${BLOBFS_CMD_TIMEOUT:-300}   # per command; the init watchdog covers the rest
MNT=/mnt/blobfs
KDEV=/dev/nvme0n1
HUGEPAGES=128                            # 128 x 2 MiB: DMA memory for the user-space driver
BIN=/opt/blobfs/bin

now() { cut -d' ' -f1 /proc/uptime; }

# step NAME FUNCTION [ARGS]: runs FUNCTION in a subshell with `set -e`, prints the
# STEP line, and stops the whole run on failure.
step() {
    name=$1; shift
    echo "$name" > /tmp/current-step
    echo "==> $name"
    t0=$(now)
    ( set -e; "$@" )
    rc=$?
    dt=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    if [ $rc -eq 0 ]; then
        echo "STEP $name: ok (${dt} s)"
    else
        echo "STEP $name: FAILED (exit $rc after ${dt} s)"
        echo "step $name failed (exit $rc)" > /tmp/fail-reason
        exit 1
    fi
}

skip_step() { echo "STEP $1: skipped ($2)"; }

# Every program runs under a timeout so a hang fails its step rather than the whole VM.
run() {
    echo "+ $*"
    timeout "$CMD_TIMEOUT" "$@"
}

fail() { echo "error: $*" >&2; return 1; }

# ---------------------------------------------------------------- what exists

have_nvme_tool() { [ -x "$BIN/blobfs-nvme" ]; }

# mkfs.blobfs, blobfs-fuse and fsck.blobfs all need the --nvme option.
have_nvme_option() {
    for t in mkfs.blobfs blobfs-fuse fsck.blobfs; do
        "$BIN/$t" --help 2>&1 | grep -q -- '--nvme' || return 1
    done
}

# ---------------------------------------------------------------- steps

wait_for_kernel_namespace() {
    i=0
    while [ ! -b "$KDEV" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    [ -b "$KDEV" ] || fail "$KDEV did not appear"
}

check_device() {
    run nvme-setup status
    [ -d "/sys/bus/pci/devices/$ADDR" ] || fail "no PCI device at $ADDR"
    [ "$(cat "/sys/bus/pci/devices/$ADDR/class")" = 0x010802 ] || fail "$ADDR is not an NVMe controller"
    drv=$(basename "$(readlink "/sys/bus/pci/devices/$ADDR/driver")")
    [ "$drv" = nvme ] || fail "$ADDR is bound to '$drv', expected the kernel nvme driver"
    wait_for_kernel_namespace
    echo "$KDEV: $(cat /sys/block/nvme0n1/size) sectors of 512 B, model $(cat /sys/class/nvme/nvme0/model | tr -s ' ')"
    [ "$MODE" != vfio ] || [ -e "/sys/bus/pci/devices/$ADDR/iommu_group" ] || fail "vfio mode but $ADDR has no IOMMU group"
    # What the kernel said about the IOMMU, interrupt remapping and the controller.
    dmesg | grep -E 'DMAR|IOMMU|iommu|nvme nvme0' | cut -c1-160 | head -n 20 || true
}

kernel_mkfs() { run mkfs.blobfs -f "$KDEV"; }

kernel_fsck() { run fsck.blobfs -n "$KDEV"; }

fuse_daemon_pids() { pidof blobfs-fuse || true; }

# Mount with blobfs-fuse (it returns once the mount is live) and check it is there.
mount_blobfs() {
    mkdir -p "$MNT"
    [ -z "$(fuse_daemon_pids)" ] || fail "a blobfs-fuse daemon is already running"
    run blobfs-fuse "$@" "$MNT"
    grep -q " $MNT fuse" /proc/mounts || fail "$MNT is not mounted after blobfs-fuse returned"
}

# umount, then wait for the daemon to finish its clean unmount and exit.
unmount_blobfs() {
    pids=$(fuse_daemon_pids)
    run umount "$MNT"
    i=0
    while [ -n "$(fuse_daemon_pids)" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    [ -z "$(fuse_daemon_pids)" ] || fail "blobfs-fuse (pid $pids) still running 60 s after umount"
}

# Ordinary shell commands on a mounted volume, then a remount that must show the same
# tree. DEVICE_ARGS select the device: a block device path or --nvme ADDR.
fuse_round_trip() {
    [ -c /dev/fuse ] || fail "/dev/fuse missing although fuse.ko is loaded"
    dd if=/dev/urandom of=/tmp/payload bs=1M count=4 2>/dev/null
    sum=$(md5sum < /tmp/payload)

    mount_blobfs "$@"
    mkdir -p "$MNT/dir/sub"
    echo "hello from the guest" > "$MNT/dir/hello.txt"
    cp /tmp/payload "$MNT/dir/payload"
    ls -l "$MNT/dir"
    [ "$(cat "$MNT/dir/hello.txt")" = "hello from the guest" ] || fail "hello.txt reads back wrong"
    cmp /tmp/payload "$MNT/dir/payload"
    mv "$MNT/dir/payload" "$MNT/dir/sub/moved"
    [ ! -e "$MNT/dir/payload" ] || fail "mv left the source behind"
    ln -s sub/moved "$MNT/dir/link"
    [ "$(readlink "$MNT/dir/link")" = sub/moved ] || fail "readlink returned '$(readlink "$MNT/dir/link")'"
    echo scratch > "$MNT/dir/gone"
    rm "$MNT/dir/gone"
    df -k "$MNT"
    unmount_blobfs

    mount_blobfs "$@"
    ls -lR "$MNT"
    [ "$(md5sum < "$MNT/dir/link")" = "$sum" ] || fail "payload changed across the remount"
    [ "$(cat "$MNT/dir/hello.txt")" = "hello from the guest" ] || fail "hello.txt changed across the remount"
    [ "$(readlink "$MNT/dir/link")" = sub/moved ] || fail "symlink changed across the remount"
    [ ! -e "$MNT/dir/gone" ] || fail "a removed file came back after the remount"
    unmount_blobfs
}

reserve_hugepages() { run nvme-setup hugepages "$HUGEPAGES"; }

bind_user_space() {
    run nvme-setup bind "$ADDR" "$MODE"
    drv=$(basename "$(readlink "/sys/bus/pci/devices/$ADDR/driver")")
    case $MODE in
        vfio)
            [ "$drv" = vfio-pci ] || fail "driver is '$drv', expected vfio-pci"
            group=$(basename "$(readlink "/sys/bus/pci/devices/$ADDR/iommu_group")")
            [ -c "/dev/vfio/$group" ] || fail "/dev/vfio/$group missing"
            ls -l /dev/vfio
            ;;
        uio)
            [ "$drv" = uio_pci_generic ] || fail "driver is '$drv', expected uio_pci_generic"
            set -- "/sys/bus/pci/devices/$ADDR/uio"/uio*
            [ -e "$1" ] || fail "no uio device under $ADDR"
            ls -l /dev/uio*
            ;;
    esac
    [ ! -e "$KDEV" ] || fail "$KDEV still present after the unbind"
    run nvme-setup status "$ADDR"
}

nvme_identify() { run blobfs-nvme identify --nvme "$ADDR"; }
nvme_selftest() { run blobfs-nvme selftest --nvme "$ADDR"; }
nvme_mkfs() { run mkfs.blobfs -f --nvme "$ADDR"; }
# fsck through --nvme, then through an SPDK-style JSON config (bdev_nvme_attach_controller:
# the namespace is bdev "<name>n1").
nvme_fsck() {
    run fsck.blobfs -n --nvme "$ADDR"
    cat > /tmp/bdev.json <<EOF
{"subsystems": [{"subsystem": "bdev", "config": [
  {"method": "bdev_nvme_attach_controller", "params": {"name": "Nvme0", "trtype": "PCIe", "traddr": "$ADDR"}}]}]}
EOF
    run fsck.blobfs -n -f -c /tmp/bdev.json -b Nvme0n1
}

# kill -9 of the daemon: what was fsynced survives; the controller is left enabled with
# its queues live (no shutdown), which the next attach must take down first (CC.EN=1,
# CSTS.RDY=1 at bring-up); the volume is recovered at mount and is consistent after.
nvme_kill_and_recover() {
    [ -f /tmp/payload ] || dd if=/dev/urandom of=/tmp/payload bs=1M count=4 2>/dev/null
    mount_blobfs --nvme "$ADDR"
    run dd if=/tmp/payload of="$MNT/synced" bs=1M conv=fsync   # fsync before close
    mkdir "$MNT/synced-dir"
    run sync "$MNT/synced-dir" "$MNT"                          # busybox sync FILE: fsync each (fsyncdir)
    echo "not synced" > "$MNT/unsynced"
    pid=$(fuse_daemon_pids)
    [ -n "$pid" ] || fail "no blobfs-fuse daemon"
    echo "+ kill -9 $pid"
    kill -9 "$pid"
    i=0
    while [ -n "$(fuse_daemon_pids)" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    umount "$MNT" 2>/dev/null || umount -l "$MNT"
    mount_blobfs --nvme "$ADDR"
    cmp /tmp/payload "$MNT/synced" || fail "fsynced file lost or changed after kill -9"
    [ -d "$MNT/synced-dir" ] || fail "fsynced directory lost after kill -9"
    ls -l "$MNT"
    unmount_blobfs
}

# One driver per controller: while a daemon drives it, a second user-space opener (the
# VFIO group is exclusive; uio is flock'd) is refused and says so.
nvme_exclusive() {
    mount_blobfs --nvme "$ADDR"
    if out=$(timeout "$CMD_TIMEOUT" blobfs-nvme identify --nvme "$ADDR" 2>&1); then
        unmount_blobfs; fail "a second driver opened $ADDR while blobfs-fuse drives it"
    fi
    echo "$out"
    echo "$out" | grep -q "another process drives this controller" || { unmount_blobfs; fail "unexpected refusal: $out"; }
    if out=$(timeout "$CMD_TIMEOUT" mkfs.blobfs -f --nvme "$ADDR" 2>&1); then
        unmount_blobfs; fail "mkfs.blobfs formatted $ADDR while blobfs-fuse drives it"
    fi
    echo "$out"
    unmount_blobfs
    run blobfs-nvme identify --nvme "$ADDR" > /dev/null   # released with the daemon
}

reset_to_kernel() {
    run nvme-setup reset "$ADDR"
    wait_for_kernel_namespace
}

# BENCH lines of blobfs-nvme become "BENCH-RESULT <backend> ..." for the host to parse.
bench() {
    backend=$1; shift
    run blobfs-nvme bench "$@" --seconds "$BENCH_SECONDS" > "/tmp/bench-$backend.out"
    sed "s/^BENCH /BENCH-RESULT $backend /" "/tmp/bench-$backend.out"
    grep -q '^BENCH ' "/tmp/bench-$backend.out" || fail "no BENCH lines in the output"
}

# ---------------------------------------------------------------- runs

# The user-space steps, or a note why they are skipped (development only).
user_space_steps() {
    missing=""
    have_nvme_tool || missing="blobfs-nvme"
    have_nvme_option || missing="${missing:+$missing, }--nvme option"
    if [ -n "$missing" ]; then
        if [ "$ALLOW_MISSING" = 1 ]; then
            for s in identify selftest nvme-mkfs nvme-fuse nvme-exclusive nvme-kill-9 nvme-fsck; do
                skip_step "$s" "not built yet: $missing"
            done
            return 0
        fi
        step user-space-tools fail "not built: $missing"
    fi
    step identify nvme_identify
    step selftest nvme_selftest
    step nvme-mkfs nvme_mkfs
    step nvme-fuse fuse_round_trip --nvme "$ADDR"
    step nvme-exclusive nvme_exclusive
    step nvme-kill-9 nvme_kill_and_recover
    step nvme-fsck nvme_fsck
}

functional_run() {
    step device check_device
    step kernel-mkfs kernel_mkfs
    step kernel-fsck kernel_fsck
    step kernel-fuse fuse_round_trip "$KDEV"
    step hugepages reserve_hugepages
    step "bind-$MODE" bind_user_space
    user_space_steps
    step reset reset_to_kernel
    # The kernel driver reads what the user-space driver left: a clean volume.
    step kernel-fsck-after kernel_fsck
}

bench_run() {
    have_nvme_tool || step bench fail "blobfs-nvme is not built"
    step device check_device
    step bench-aio bench aio --aio "$KDEV"
    step hugepages reserve_hugepages
    step "bind-$MODE" bind_user_space
    step bench-nvme bench nvme --nvme "$ADDR"
    step reset reset_to_kernel
}

echo "nvme-tests: mode=$MODE bench=$BENCH device=$ADDR"
if [ "$BENCH" = 1 ]; then bench_run; else functional_run; fi
echo "nvme-tests: all steps passed at $(now) s"
