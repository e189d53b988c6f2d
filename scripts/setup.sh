#!/usr/bin/env bash
# Installs what rkdump's build and tests need on a fresh Debian 12 machine (idempotent).
# Rust: the toolchain pinned in rust-toolchain.toml plus the bare-metal target.
# Debian: QEMU, kexec-tools, busybox, the cloud kernel (first kernel of the e2e tests),
# makedumpfile, cpio, crash and binutils (readelf) for checking dumps.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in qemu-system-x86 kexec-tools busybox-static linux-image-cloud-amd64 makedumpfile crash cpio binutils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
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
