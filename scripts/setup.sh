#!/usr/bin/env bash
# Installs what rkdump's build and tests need on a fresh Debian 12 machine (idempotent).
# Rust: the toolchain pinned in rust-toolchain.toml plus the bare-metal target.
# Debian: QEMU, kexec-tools, busybox, the cloud kernel (first kernel of the e2e tests),
# makedumpfile, cpio, crash and binutils (readelf) for checking dumps; OVMF (UEFI first kernels);
# sbsigntool for the signed-image tests; fdisk (sfdisk) and e2fsprogs, xfsprogs and btrfs-progs
# to make the partitioned and file-system disk images of the dump-target tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in qemu-system-x86 kexec-tools busybox-static linux-image-cloud-amd64 makedumpfile crash cpio binutils ovmf sbsigntool fdisk e2fsprogs xfsprogs btrfs-progs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian's generic kernel of the cloud kernel's release: first kernel of the e2e cases that need
# its modules (i6300esb, ahci, xhci, e1000e; the cloud kernel has none of them). Unpacked into
# the cache, not installed: no initramfs generation, no boot-loader changes on this machine.
cache="${RKDUMP_CACHE:-$PWD/target/cache}"
cloud=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
if [ -n "$cloud" ]; then
    release=$(basename "$cloud" | sed 's/^vmlinuz-//; s/-cloud-amd64$/-amd64/')
    dest="$cache/linux-generic/$release"
    if [ ! -f "$dest/boot/vmlinuz-$release" ]; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        mkdir -p "$cache/linux-generic"
        (
            cd "$cache/linux-generic"
            apt-get download -qq "linux-image-$release" 2>/dev/null ||
                { $SUDO apt-get update -qq && apt-get download -qq "linux-image-$release"; }
        )
        deb=$(ls "$cache/linux-generic/linux-image-${release}_"*.deb | tail -n 1)
        mkdir -p "$dest.tmp"
        dpkg-deb -x "$deb" "$dest.tmp"
        rm -rf "$dest" && mv "$dest.tmp" "$dest" && rm -f "$deb"
    fi
fi

if ! command -v rustup >/dev/null; then
    echo "rustup is required (https://rustup.rs); install it and re-run" >&2
    exit 1
fi
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
# Install only what is missing: re-running `rustup toolchain install` replaces every component,
# which breaks cargo runs in progress elsewhere on the machine.
have() { rustup "$@" --toolchain "$channel" --installed 2>/dev/null; }
if ! have target list | grep -qx x86_64-unknown-none ||
    ! have component list | grep -q '^clippy' ||
    ! have component list | grep -q '^rustfmt'; then
    rustup toolchain install "$channel" --profile minimal --component rustfmt,clippy --target x86_64-unknown-none >/dev/null
fi
