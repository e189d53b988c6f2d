#!/bin/sh
# rkdump e2e /init (busybox sh). Two roles, chosen by /proc/cmdline:
#  * first kernel: report facts, start the marker, `kexec -p` the capture kernel, crash with sysrq;
#  * Linux capture kernel (elfcorehdr= present): report /proc/vmcore, power off.
# Every line the host parses starts with "E2E: " (see xtask/src/e2e/console.rs).
# Case parameters come from the first kernel's command line:
#   e2e.mode=c|s|c,s   loader(s): kexec_load (-c) / kexec_file_load (-s); several = try each (broken image)
#   e2e.initrd=none|blob|cpio   --initrd: nothing, /e2e/initrd.bin, /e2e/capture.cpio
#   e2e.broken=1       corrupt the image header ("HdrS" at 0x202) and expect kexec to refuse
#   e2e.marker=<MiB>   marker size (0 = no marker)     e2e.tag=<hex>  marker tag
#   e2e.kexecdebug=1   pass -d to kexec
#   e2e.crash=exit     crash by ending init (panic "Attempted to kill init!") instead of sysrq c
#   e2e.append="<capture kernel command line>"
#   e2e.watchdog=<s>   arm the watchdog (/e2e/hwmodules) with that timeout before the crash
#   e2e.rawdd=<disk>:<blocks>[:<MiB>]   (benchmark) write <blocks> x <MiB> (4) MiB to /dev/<disk> with O_DIRECT, power off
#   e2e.fileroot=<disk>   mount /dev/<disk> (ext4 or xfs) on /mnt, `rkdumpctl prepare --file /mnt/rkdump.img
#                         --size auto`, and load with `--file` (file-target case)
#   e2e.filesave=<disk>   (second boot, no crash) mount it, `rkdumpctl save /mnt/rkdump.img -o /mnt/vmcore`
# and, for a Linux capture kernel, from its own command line:
#   e2e.save=<disk>    copy /proc/vmcore to /dev/<disk>
#   e2e.makedumpfile=<disk>   (benchmark) makedumpfile -F -c -d 31 /proc/vmcore | dd to /dev/<disk>
#   e2e.makedumpfile_codec=c|l  (benchmark) the collector's codec: -c zlib (kdump-tools), -l lzo (Fedora/RHEL)

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib64
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp
# Kernel messages would interleave with our lines on the shared console: keep only emergencies
# (sysrq and panic output force their way through regardless).
dmesg -n 1 2>/dev/null

say() { echo "E2E: $*"; }
# Loads every module in directory $1, in name order (the order dependencies need).
insmod_dir() {
    for m in "$1"/*.ko; do
        [ -e "$m" ] || continue
        insmod "$m" > /tmp/insmod.err 2>&1 || say "insmod $m failed: $(cat /tmp/insmod.err)"
    done
}
off() { sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }
# The crash comes from pid 1 on CPU 0: rkdump never wakes the boot CPU (waking it resets some
# machines), so a crash on CPU 1 would leave a 2-vCPU guest's capture kernel one CPU.
pin_cpu0() { taskset -p 1 $$ > /dev/null 2>&1 || say "note: taskset -p 1 failed: the crash may land on any CPU"; }

CMDLINE=$(cat /proc/cmdline)

if grep -q 'elfcorehdr=' /proc/cmdline && ! grep -q 'e2e.mode=' /proc/cmdline; then
    read up _ < /proc/uptime
    say "capture-init release=$(uname -r) nproc=$(nproc) uptime=$up"
    say "capture-cmdline $CMDLINE"
    if [ -e /proc/vmcore ]; then
        size=$(stat -c %s /proc/vmcore)
        phnum=$(od -An -tu2 -j56 -N2 /proc/vmcore | tr -d ' ')
        say "vmcore size=$size phnum=$phnum"
        # e2e.save=<disk>: copy /proc/vmcore to that whole disk (the host then checks it).
        for w in $CMDLINE; do
            case "$w" in e2e.save=*) SAVE=${w#e2e.save=} ;; esac
        done
        if [ -n "$SAVE" ]; then
            i=0
            while [ ! -b /dev/$SAVE ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
            read t0 _ < /proc/uptime
            dd if=/proc/vmcore of=/dev/$SAVE bs=1M conv=fsync 2> /tmp/dd.err
            rc=$?
            read t1 _ < /proc/uptime
            say "vmcore saved dev=$SAVE rc=$rc start=$t0 end=$t1 $(tail -n 1 /tmp/dd.err)"
        fi
    else
        say "vmcore missing"
    fi
    # e2e.makedumpfile=<disk> (benchmark): Debian kdump-tools' collector, `makedumpfile -c -d 31`
    # (`-l`, Fedora's, with e2e.makedumpfile_codec=l),
    # as a flattened stream (-F) into `dd conv=fsync` on that disk: durable when dd returns.
    MKDF=
    MKDF_CODEC=c
    for w in $CMDLINE; do
        case "$w" in
            e2e.makedumpfile=*) MKDF=${w#e2e.makedumpfile=} ;;
            e2e.makedumpfile_codec=[cl]) MKDF_CODEC=${w#e2e.makedumpfile_codec=} ;;
        esac
    done
    if [ -n "$MKDF" ] && [ -e /proc/vmcore ]; then
        i=0
        while [ ! -b /dev/$MKDF ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        say "makedumpfile start dev=$MKDF"
        read t0 _ < /proc/uptime
        { makedumpfile -F -$MKDF_CODEC -d 31 /proc/vmcore 2> /tmp/mkdf.err; echo $? > /tmp/mkdf.rc; } |
            dd of=/dev/$MKDF bs=1M conv=fsync 2> /tmp/mkdd.err
        ddrc=$?
        read t1 _ < /proc/uptime
        mrc=$(cat /tmp/mkdf.rc 2>/dev/null)
        tr '\r' '\n' < /tmp/mkdf.err | grep -v '^ *$' > /tmp/mkdf.lines
        [ "$mrc" = 0 ] || while IFS= read -r l; do say "makedumpfile-out $l"; done < /tmp/mkdf.lines
        say "makedumpfile done dev=$MKDF rc=${mrc:-none} ddrc=$ddrc start=$t0 end=$t1 dd: $(tail -n 1 /tmp/mkdd.err); $(tail -n 1 /tmp/mkdf.lines)"
    fi
    say "capture-done"
    off
fi

MODES=c; INITRD=none; BROKEN=0; MARKER_MIB=0; TAG=0; KDEBUG=; IO=
for w in $CMDLINE; do
    case "$w" in
        e2e.mode=*) MODES=${w#e2e.mode=} ;;
        e2e.initrd=*) INITRD=${w#e2e.initrd=} ;;
        e2e.broken=*) BROKEN=${w#e2e.broken=} ;;
        e2e.marker=*) MARKER_MIB=${w#e2e.marker=} ;;
        e2e.tag=*) TAG=${w#e2e.tag=} ;;
        e2e.kexecdebug=1) KDEBUG=-d ;;
        e2e.io=*) IO=${w#e2e.io=} ;;
        e2e.loadctl=*) LOADCTL=${w#e2e.loadctl=} ;;
        e2e.scramble=*) SCRAMBLE=${w#e2e.scramble=} ;;
        e2e.hold=1) HOLD=1 ;;
        e2e.fileroot=*) FILEROOT=${w#e2e.fileroot=} ;;
        e2e.filesave=*) FILESAVE=${w#e2e.filesave=} ;;
        e2e.crash=*) CRASH=${w#e2e.crash=} ;;
    esac
done

# The file-target disk: virtio-blk and xfs are modules in Debian's kernel; ext4 is built in.
mount_fileroot() {
    if [ ! -b /dev/$1 ]; then
        for m in /e2e/modules/*.ko; do
            [ -e "$m" ] && insmod "$m" > /dev/null 2>&1
        done
    fi
    for m in /e2e/fsmodules/*.ko; do
        [ -e "$m" ] && insmod "$m" > /dev/null 2>&1
    done
    i=0
    while [ ! -b /dev/$1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    mkdir -p /mnt
    mount /dev/$1 /mnt
}

# e2e.filesave=<disk>: the boot after a file-target crash. No kexec, no crash.
if [ -n "$FILESAVE" ]; then
    mount_fileroot "$FILESAVE" || say "error mounting /dev/$FILESAVE"
    /e2e/rkdumpctl save /mnt/rkdump.img -o /mnt/vmcore > /tmp/save.out 2>&1
    rc=$?
    while IFS= read -r l || [ -n "$l" ]; do say "filesave-out $l"; done < /tmp/save.out
    sum=$(sha256sum /mnt/vmcore 2>/dev/null | cut -d' ' -f1)
    say "filesave rc=$rc sha256=$sum"
    umount /mnt || say "error umount /mnt"
    sync
    say "filesave-done"
    off
fi
APPEND=$(sed -n 's/.*e2e\.append="\([^"]*\)".*/\1/p' /proc/cmdline)

say "first-kernel release=$(uname -r) nproc=$(nproc) possible=$(cat /sys/devices/system/cpu/possible) present=$(cat /sys/devices/system/cpu/present)"
grep 'Crash kernel' /proc/iomem > /tmp/crash.txt
while read -r range _; do say "crash-region $range"; done < /tmp/crash.txt
[ -s /tmp/crash.txt ] || say "crash-region none"

# Keep the marker's pages where it reported them: no THP collapse, no compaction of locked pages.
echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
echo 0 > /proc/sys/vm/compact_unevictable_allowed 2>/dev/null
if [ "$MARKER_MIB" != 0 ]; then
    /e2e/rkdump-marker "$MARKER_MIB" --tag "$TAG" --ready /tmp/marker.ready &
    i=0
    # 60 s, plus 0.1 s per MiB: the bench's 16 GiB guest fills 4 GiB under TCG.
    while [ ! -e /tmp/marker.ready ] && [ $i -lt $((600 + MARKER_MIB)) ]; do sleep 0.1; i=$((i + 1)); done
    [ -e /tmp/marker.ready ] || say "marker-timeout"
fi

# e2e.hold=1 (benchmark anchor): the marker's memory is in place; idle while the host dumps the
# guest with QEMU's dump-guest-memory, then kills QEMU. No kexec, no crash.
if [ "$HOLD" = 1 ]; then
    say "hold ready"
    while true; do sleep 1000; done
fi

# e2e.fileroot=<disk>: the dump file on the ext4 file system of that disk.
FILEARG=
if [ -n "$FILEROOT" ]; then
    if mount_fileroot "$FILEROOT"; then
        /e2e/rkdumpctl prepare --file /mnt/rkdump.img --size auto > /tmp/prep.out 2>&1
        rc=$?
        while IFS= read -r l || [ -n "$l" ]; do say "prepare-out $l"; done < /tmp/prep.out
        say "prepare rc=$rc"
        FILEARG="--file /mnt/rkdump.img"
    else
        say "error mounting /dev/$FILEROOT"
    fi
fi

# /e2e/hwmodules (generic kernel only: watchdog, AHCI and SCSI disk drivers, dependencies
# first). e2e.watchdog=<s>: arm /dev/watchdog with that timeout; busybox's daemon pets it every
# second until the crash.
WDT=
for w in $CMDLINE; do
    case "$w" in e2e.watchdog=*) WDT=${w#e2e.watchdog=} ;; esac
done
insmod_dir /e2e/hwmodules
if [ -n "$WDT" ]; then
    if [ -c /dev/watchdog ]; then
        watchdog -T "$WDT" -t 1 /dev/watchdog
        sleep 1
        say "watchdog armed timeout=$WDT $(cat /sys/class/watchdog/watchdog0/identity 2>/dev/null)"
    else
        say "error watchdog: no /dev/watchdog"
    fi
fi

# e2e.busy=usb,nic (generic kernel): direct-I/O reads on the USB disk behind the xHCI, and the
# e1000e receiving ping replies from user-mode networking's gateway, both running at the crash.
BUSY=
for w in $CMDLINE; do
    case "$w" in e2e.busy=*) BUSY=${w#e2e.busy=} ;; esac
done
case ",$BUSY," in *,usb,*)
    i=0
    while [ ! -b /dev/sda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -b /dev/sda ]; then
        ( while true; do dd if=/dev/sda of=/dev/null bs=64k count=256 iflag=direct 2>/dev/null; done ) &
        sleep 1
        say "busy usb /dev/sda reads in flight"
    else
        say "error busy usb: /dev/sda never appeared"
    fi
    ;;
esac
case ",$BUSY," in *,nic,*)
    # ARP requests for the gateway: user-mode networking (restrict=on, nothing leaves QEMU)
    # answers each, so the NIC keeps receiving (and DMA-ing) replies.
    ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
    for n in 1 2 3 4; do arping -q -I eth0 -c 1000000 10.0.2.2 > /dev/null 2>&1 & done
    i=0; rx=0
    while [ "$rx" -lt 4 ] && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i + 1))
        rx=$(cat /sys/class/net/eth0/statistics/rx_packets 2>/dev/null || echo 0)
    done
    say "busy nic eth0 rx_packets=$rx"
    ;;
esac

# e2e.io=<disk>: keep direct-I/O reads in flight on that disk when the crash comes, so the
# capture kernel finds its controller busy with stale rings (device-reinit.md, test V1/N1).
if [ -n "$IO" ]; then
    [ -b /dev/$IO ] || insmod_dir /e2e/modules
    i=0
    while [ ! -b /dev/$IO ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -b /dev/$IO ]; then
        ( while true; do dd if=/dev/$IO of=/dev/null bs=64k count=256 iflag=direct 2>/dev/null; done ) &
        ( while true; do dd if=/dev/$IO of=/dev/null bs=4k count=4096 skip=1000 iflag=direct 2>/dev/null; done ) &
        sleep 1
        say "io running on /dev/$IO"
    else
        say "error io disk /dev/$IO never appeared"
    fi
fi

# e2e.rawdd=<disk>:<blocks>[:<MiB>] (benchmark raw limit): <blocks> x <MiB> (default 4) MiB of
# zeros to /dev/<disk> with O_DIRECT from this (first) kernel, then power off: no kexec, no crash.
RAWDD=
for w in $CMDLINE; do
    case "$w" in e2e.rawdd=*) RAWDD=${w#e2e.rawdd=} ;; esac
done
if [ -n "$RAWDD" ]; then
    dev=${RAWDD%%:*}
    blocks=${RAWDD#*:}
    bs=4
    case "$blocks" in *:*) bs=${blocks#*:}; blocks=${blocks%%:*} ;; esac
    [ -b /dev/$dev ] || insmod_dir /e2e/modules
    i=0
    while [ ! -b /dev/$dev ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    # Never let dd create a file in devtmpfs (which refuses O_DIRECT) in place of a missing disk.
    [ -b /dev/$dev ] || { say "error rawdd disk /dev/$dev never appeared"; off; }
    say "rawdd start dev=$dev blocks=$blocks bs=${bs}M"
    read t0 _ < /proc/uptime
    dd if=/dev/zero of=/dev/$dev bs=${bs}M count=$blocks oflag=direct 2> /tmp/rawdd.err
    rc=$?
    read t1 _ < /proc/uptime
    # Debian's busybox dd prints no byte count: full records out (a partial one would be +1).
    full=$(sed -n 's/^\([0-9][0-9]*\)+\([0-9][0-9]*\) records out.*/\1/p' /tmp/rawdd.err | tail -n 1)
    say "rawdd done dev=$dev rc=$rc bytes=$(( ${full:-0} * bs * 1048576 )) start=$t0 end=$t1 $(tail -n 1 /tmp/rawdd.err)"
    off
fi

# e2e.service=1 (xtask/src/e2e/service.rs): run rkdump the way the service does, over several
# boots of the same disks. A disk with an ext4 file system holds /var/crash and the state and
# counts the boots; boot 1 arms with `rkdumpctl boot` and crashes, boot 2 saves and re-arms,
# boot 3 saves nothing new and produces each "not armed" reason (host hot-adds a PCI function
# over QMP when asked), boot 4 (lockdown=integrity) shows the signed-image explanation.
if grep -q 'e2e.service=1' /proc/cmdline; then
    for m in /e2e/modules/*.ko; do [ -e "$m" ] && insmod "$m" 2>/dev/null; done
    i=0
    while [ ! -b /dev/vdc ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    DUMP=; SMALL=; mkdir -p /crashfs
    for d in vda vdb vdc; do
        if [ "$(dd if=/dev/$d bs=8 count=1 2>/dev/null)" = RKDUMPLB ]; then
            if [ "$(cat /sys/block/$d/size)" -lt 262144 ]; then SMALL=/dev/$d; else DUMP=/dev/$d; fi
        elif mount -t ext4 /dev/$d /crashfs 2>/dev/null; then
            say "service crashfs /dev/$d"
        fi
    done
    n=$(( $(cat /crashfs/boots 2>/dev/null || echo 0) + 1 )); echo $n > /crashfs/boots; sync
    say "service boot=$n dump=$DUMP small=$SMALL"
    cat > /tmp/rkdump.conf <<EOC
# written by the e2e /init
device = $DUMP
target = disk:01:00.0
kernel = /e2e/capture.bzImage
action = poweroff
level = 0
format = elf
save_dir = /crashfs/crash
keep = 3
EOC
    ctl() {
        /e2e/rkdumpctl "$@" --config /tmp/rkdump.conf --state-dir /crashfs/state > /tmp/ctl.out 2>&1
        rc=$?
        while IFS= read -r l || [ -n "$l" ]; do say "service $1-out $l"; done < /tmp/ctl.out
        say "service $1 rc=$rc"
    }
    saved() {
        c=0
        for j in /crashfs/crash/*/rkdump.json; do
            [ -e "$j" ] || continue
            c=$((c + 1))
            say "service saved-dir $(dirname "$j") vmcore=$(stat -c %s "$(dirname "$j")/vmcore") $(tr -d '\n' < "$j" | tr -s ' ')"
        done
        say "service saved count=$c"
    }
    if grep -q 'lockdown=' /proc/cmdline; then
        mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
        say "service lockdown $(cat /sys/kernel/security/lockdown)"
        ctl boot
        /e2e/rkdumpctl load --file-syscall --kernel /e2e/capture.bzImage --blob-out /tmp/b.blob > /tmp/ctl.out 2>&1
        say "service load rc=$?"
        while IFS= read -r l || [ -n "$l" ]; do say "service load-out $l"; done < /tmp/ctl.out
        say "service done"; off
    fi
    ctl boot
    saved
    ctl status
    case $n in
        1)
            # The level-31 estimate just before the crash; the host compares it with
            # makedumpfile -d 31 of the saved vmcore.
            /e2e/rkdumpctl estimate --config /tmp/rkdump.conf --set level=31 --json > /tmp/est.json 2>&1
            say "service estimate31 rc=$? $(tr -d ' \n' < /tmp/est.json)"
            sync; say "crash now"; pin_cpu0; sleep 0.5; echo c > /proc/sysrq-trigger
            say "error still alive after sysrq-trigger"; off ;;
        2)
            sync; say "service done"; off ;;
    esac
    # Boot 3 and later: every "not armed" reason, each followed by a return to armed.
    /usr/sbin/kexec -p -u; say "service case unloaded"; ctl status
    ctl reload --reason=e2e-rearm; ctl status
    dd if=$DUMP of=/tmp/label bs=4096 count=1 2>/dev/null
    dd if=/dev/zero of=$DUMP bs=4096 count=1 conv=fsync 2>/dev/null
    say "service case label-gone"; ctl status
    dd if=/tmp/label of=$DUMP bs=4096 count=1 conv=fsync 2>/dev/null
    ctl status
    say "service case too-small"; ctl status --set device=$SMALL
    before=$(ls /sys/bus/pci/devices | wc -l)
    say "service hotplug-now"
    i=0
    while [ "$(ls /sys/bus/pci/devices | wc -l)" -le "$before" ] && [ $i -lt 300 ]; do
        sleep 0.1; i=$((i + 1))
        [ $((i % 50)) = 0 ] && echo 1 > /sys/bus/pci/rescan
    done
    say "service case hot-added pci=$(ls /sys/bus/pci/devices | wc -l) was=$before"; ctl status
    ctl reload --reason=add:pci:hotplug; ctl status
    sync; say "service done"; off
fi

IMG=/e2e/capture.bzImage
if [ "$BROKEN" = 1 ]; then
    cp $IMG /tmp/broken.bzImage
    printf 'XXXX' | dd of=/tmp/broken.bzImage bs=1 seek=514 conv=notrunc 2>/dev/null
    IMG=/tmp/broken.bzImage
    say "broken-image header@0x202=$(dd if=$IMG bs=1 skip=514 count=4 2>/dev/null)"
fi
case "$INITRD" in
    blob) INITRD_ARG=--initrd=/e2e/initrd.bin ;;
    cpio) INITRD_ARG=--initrd=/e2e/capture.cpio ;;
    *) INITRD_ARG= ;;
esac

ok=0
for m in $(echo "$MODES" | tr ',' ' '); do
    say "kexec-cmd mode=$m kexec $KDEBUG -p $IMG -$m $INITRD_ARG --append=\"$APPEND\""
    before=$(dmesg | wc -l)
    if [ -n "$LOADCTL" ]; then
        # The way users load rkdump: rkdumpctl snapshots PCI config into a blob and runs
        # kexec -p with it as the initrd (e2e.loadctl=corrupt: flip a blob byte before kexec).
        flag=--file-syscall; [ "$m" = c ] && flag=--legacy-syscall
        set -- /e2e/rkdumpctl load --kernel "$IMG" --append "$APPEND" $flag --kexec /usr/sbin/kexec --blob-out /tmp/config.blob $FILEARG
        if [ "$LOADCTL" = corrupt ]; then
            "$@" --dry-run > /tmp/load.cmd 2> /tmp/kexec.out
            printf '\377' | dd of=/tmp/config.blob bs=1 seek=300 conv=notrunc 2>/dev/null
            say "blob corrupted at byte 300 before kexec"
            eval "$(tail -n 1 /tmp/load.cmd)" >> /tmp/kexec.out 2>&1
        else
            "$@" > /tmp/kexec.out 2>&1
        fi
        rc=$?
        set --
    else
        /usr/sbin/kexec $KDEBUG -p "$IMG" -$m $INITRD_ARG --append="$APPEND" > /tmp/kexec.out 2>&1
        rc=$?
    fi
    # The kernel's own messages about the load (kexec_file_load reasons) belong to kexec's answer.
    dmesg | tail -n +$((before + 1)) | grep -i -e kexec -e crash -e bzimage | sed 's/^/kernel: /' >> /tmp/kexec.out
    while IFS= read -r l || [ -n "$l" ]; do say "kexec-out mode=$m $l"; done < /tmp/kexec.out
    loaded=$(cat /sys/kernel/kexec_crash_loaded)
    say "kexec mode=$m rc=$rc loaded=$loaded"
    if [ "$BROKEN" = 1 ] && [ "$loaded" = 1 ]; then /usr/sbin/kexec -p -u; fi
    if [ "$rc" = 0 ] && [ "$loaded" = 1 ]; then ok=1; fi
done

if [ "$BROKEN" = 1 ]; then
    say "broken-done"
    off
fi
if [ $ok != 1 ]; then
    say "error kexec did not load a crash kernel"
    off
fi
# e2e.scramble=<bridge>,<device>,<MiB>: move the bridge's memory window and the device's BAR0
# by MiB (both the same way, so the old kernel's state stays consistent but differs from what
# firmware assigned and rkdumpctl saved).
if [ -n "$SCRAMBLE" ]; then
    br=${SCRAMBLE%%,*}; rest=${SCRAMBLE#*,}; dev=${rest%%,*}; mib=${rest#*,}
    r32() { od -An -tu4 -j "$2" -N4 "/sys/bus/pci/devices/$1/config" | tr -d ' '; }
    w32() {
        v=$3
        printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((v & 255)) $((v >> 8 & 255)) $((v >> 16 & 255)) $((v >> 24 & 255)))" |
            dd of="/sys/bus/pci/devices/$1/config" bs=4 seek=$(($2 / 4)) count=1 conv=notrunc 2>/dev/null
    }
    win=$(r32 "$br" 32); bar=$(r32 "$dev" 16)
    if [ "$mib" = zero ]; then
        # As if firmware never assigned it (or a reset cleared it): BAR0 (64-bit) reads 0.
        nwin=$win; nbar=0; w32 "$dev" 20 0
    else
        nwin=$(( (win + (mib << 4) + (mib << 20)) & 0xffffffff )); nbar=$(( (bar + (mib << 20)) & 0xffffffff ))
    fi
    w32 "$br" 32 $nwin; w32 "$dev" 16 $nbar
    say "scrambled $br window $(printf %08x $win)->$(printf %08x "$(r32 "$br" 32)") $dev bar0 $(printf %08x $bar)->$(printf %08x "$(r32 "$dev" 16)")"
fi
# The dump file's file system: everything on disk, so the host's fsck sees a clean journal.
if [ -n "$FILEROOT" ]; then
    sync
    mount -o remount,ro /mnt || say "error remount ro /mnt"
fi
say "crash now"
pin_cpu0
# Let the tty drain: the panic's console output would overtake lines still queued in it.
sleep 0.5
# e2e.crash=exit: a second crash reason, no module needed: init (pid 1) exits.
[ "$CRASH" = exit ] && exit 7
echo c > /proc/sysrq-trigger
say "error still alive after sysrq-trigger"
off
