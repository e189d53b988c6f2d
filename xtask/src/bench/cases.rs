//! The bench's configurations ([`Kind`]), their `crashkernel=` sizes and bisection candidates,
//! and the e2e [`Case`] of each run.

use std::path::Path;
use std::time::Duration;

use crate::e2e::{self, CaptureKind, Case, DiskKind};

/// `crashkernel=` used by the timed runs of each capture kernel (MiB).
pub(super) const RKDUMP_CRASHKERNEL: u32 = 16;
/// The peer's timed runs: the 256M of docs/testing.md#reference-measurements (Fedora's default for 2G-64G machines).
pub(super) const PEER_CRASHKERNEL: u32 = 256;

/// Bisection candidates (MiB) for the peer: 16M..512M.
pub(super) const PEER_CANDIDATES: [u32; 16] = [
    16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 448, 512,
];
/// rkdump's candidates also go below 16M, to report how low it goes.
pub(super) const RKDUMP_CANDIDATES: [u32; 20] = [
    2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 448, 512,
];

/// One measured configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    /// rkdump as capture kernel, dumping to NVMe.
    Rkdump,
    /// rkdump as capture kernel, dumping to virtio-blk.
    RkdumpVirtio,
    /// Linux capture kernel, raw copy of /proc/vmcore.
    PeerRaw,
    /// Linux capture kernel, makedumpfile -c -d 31.
    PeerMkdf,
    /// Linux capture kernel, makedumpfile -l -d 31 (LZO: Fedora's and RHEL's kdump default,
    /// the collector issue 13 compares the level-31 lzo file with).
    PeerMkdfLzo,
    /// The first kernel's `dd oflag=direct` of the same bytes to the NVMe disk: what emulated
    /// Linux pushes through QEMU's NVMe, a guest-side reference, not the disk's limit.
    RawDd,
    /// The same `dd` to the virtio-blk disk.
    RawDdVirtio,
    /// The hypervisor's own dump as a peer: QEMU's `dump-guest-memory` (ELF) over QMP on the
    /// same guest, into the same file system as the disk images.
    GuestElf,
    /// QEMU's `dump-guest-memory` in kdump-zlib format.
    GuestKdump,
    /// The limit: the host's own 4 MiB writes of the same size into a pre-written file in the
    /// file system that holds the disk images, then fdatasync.
    HostLimit,
    /// rkdump, NVMe, `format=kdump compress=zlib level=31` compressing on the crashing CPU
    /// alone (`rkdump.cpus=1`): the compression phase's reference.
    KdumpCpus1,
    /// The same on both vCPUs (`rkdump.cpus=2`).
    KdumpCpus2,
    /// rkdump to NVMe, `rkdump.format=kdump rkdump.level=31 rkdump.compress=lzo` (the filtered
    /// dump at every RAM size: `--large`).
    RkdumpL31Lzo,
    /// The same with `rkdump.compress=zlib` (the codec every reader has).
    RkdumpL31Zlib,
    /// rkdump to NVMe, `rkdump.format=kdump rkdump.level=0 rkdump.compress=lzo`: every page
    /// read and written (zero pages as one shared page), the unfiltered end of the slope at
    /// sizes where a full ELF file would not fit the host.
    RkdumpL0Lzo,
}

impl Kind {
    /// The rows of `--large` (1, 4 and 16 GiB): filtered and unfiltered kdump against the
    /// peer's makedumpfile, each output tens to hundreds of MB whatever the RAM. Not in
    /// [`Kind::ALL`], so the default bench does not grow.
    pub(super) const LARGE: [Kind; 5] = [
        Kind::RkdumpL31Lzo,
        Kind::RkdumpL31Zlib,
        Kind::RkdumpL0Lzo,
        Kind::PeerMkdf,
        Kind::PeerMkdfLzo,
    ];

    pub(super) const ALL: [Kind; 11] = [
        Kind::Rkdump,
        Kind::RkdumpVirtio,
        Kind::PeerRaw,
        Kind::PeerMkdf,
        Kind::RawDd,
        Kind::RawDdVirtio,
        Kind::GuestElf,
        Kind::GuestKdump,
        Kind::HostLimit,
        Kind::KdumpCpus1,
        Kind::KdumpCpus2,
    ];

    pub(super) fn slug(self) -> &'static str {
        match self {
            Kind::Rkdump => "rkdump",
            Kind::RkdumpVirtio => "rkdump-virtio",
            Kind::PeerRaw => "peer-raw",
            Kind::PeerMkdf => "peer-mkdf",
            Kind::PeerMkdfLzo => "peer-mkdf-lzo",
            Kind::RawDd => "rawdd",
            Kind::RawDdVirtio => "rawdd-virtio",
            Kind::GuestElf => "qemu-dump-elf",
            Kind::GuestKdump => "qemu-dump-kdump",
            Kind::HostLimit => "host-limit",
            Kind::KdumpCpus1 => "kdump-cpus1",
            Kind::KdumpCpus2 => "kdump-cpus2",
            Kind::RkdumpL31Lzo => "rkdump-l31-lzo",
            Kind::RkdumpL31Zlib => "rkdump-l31-zlib",
            Kind::RkdumpL0Lzo => "rkdump-l0-lzo",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Kind::Rkdump => "rkdump, NVMe",
            Kind::RkdumpVirtio => "rkdump, virtio-blk",
            Kind::PeerRaw => "Linux peer, raw copy",
            Kind::PeerMkdf => "Linux peer, makedumpfile -c -d 31",
            Kind::PeerMkdfLzo => "Linux peer, makedumpfile -l -d 31",
            Kind::RawDd => "first kernel's dd oflag=direct, NVMe (guest-side reference)",
            Kind::RawDdVirtio => {
                "first kernel's dd oflag=direct, virtio-blk (guest-side reference)"
            }
            Kind::GuestElf => "QEMU dump-guest-memory, ELF (hypervisor's dump)",
            Kind::GuestKdump => "QEMU dump-guest-memory, kdump-zlib (hypervisor's dump)",
            Kind::HostLimit => "host write limit (dd bs=4M into the images' file system)",
            Kind::KdumpCpus1 => "rkdump, NVMe, kdump zlib level 31, rkdump.cpus=1",
            Kind::KdumpCpus2 => "rkdump, NVMe, kdump zlib level 31, rkdump.cpus=2",
            Kind::RkdumpL31Lzo => "rkdump, NVMe, kdump level 31 lzo",
            Kind::RkdumpL31Zlib => "rkdump, NVMe, kdump level 31 zlib",
            Kind::RkdumpL0Lzo => "rkdump, NVMe, kdump level 0 lzo (every page read)",
        }
    }

    pub(super) fn from_slug(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .chain(Kind::LARGE)
            .find(|k| k.slug() == s)
    }

    /// An rkdump dump run (either disk, any format).
    pub(super) fn is_rkdump(self) -> bool {
        matches!(
            self,
            Kind::Rkdump | Kind::RkdumpVirtio | Kind::KdumpCpus1 | Kind::KdumpCpus2
        ) || self.kdump_params().is_some()
    }

    /// `rkdump.cpus=` of the compression-phase pair.
    pub(super) fn cpus(self) -> Option<u32> {
        match self {
            Kind::KdumpCpus1 => Some(1),
            Kind::KdumpCpus2 => Some(2),
            _ => None,
        }
    }

    /// The peer rows running makedumpfile: its codec option, the `disk_dump_header.status`
    /// codec bit its file must carry, and the codec's name.
    pub(super) fn makedumpfile(self) -> Option<(&'static str, u32, &'static str)> {
        use rkdump_vmcore::kdump::abi::{DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_ZLIB};
        match self {
            Kind::PeerMkdf => Some(("c", DUMP_DH_COMPRESSED_ZLIB, "zlib")),
            Kind::PeerMkdfLzo => Some(("l", DUMP_DH_COMPRESSED_LZO, "lzo")),
            _ => None,
        }
    }

    /// A Linux capture kernel row (the peer).
    pub(super) fn is_peer(self) -> bool {
        self == Kind::PeerRaw || self.makedumpfile().is_some()
    }

    /// Runs that crash the guest (the others measure a write without kexec).
    pub(super) fn crashes(self) -> bool {
        self.is_rkdump() || self.is_peer()
    }

    /// The dump disk an rkdump or raw-dd run writes.
    pub(super) fn disk(self) -> Option<DiskKind> {
        match self {
            Kind::Rkdump
            | Kind::RawDd
            | Kind::KdumpCpus1
            | Kind::KdumpCpus2
            | Kind::RkdumpL31Lzo
            | Kind::RkdumpL31Zlib
            | Kind::RkdumpL0Lzo => Some(DiskKind::Nvme),
            Kind::RkdumpVirtio | Kind::RawDdVirtio => Some(DiskKind::Virtio),
            _ => None,
        }
    }

    /// `crashkernel=` of the timed runs (runs without a crash keep rkdump's).
    pub(super) fn crashkernel(self) -> u32 {
        match self {
            k if k.is_peer() => PEER_CRASHKERNEL,
            _ => RKDUMP_CRASHKERNEL,
        }
    }

    /// Bisection candidates: only for crash runs of each kernel's first configuration.
    pub(super) fn candidates(self) -> &'static [u32] {
        match self {
            Kind::Rkdump | Kind::RkdumpL31Lzo => &RKDUMP_CANDIDATES,
            Kind::PeerRaw | Kind::PeerMkdf => &PEER_CANDIDATES,
            _ => &[],
        }
    }

    /// The rkdump parameters of the kdump-format rows.
    pub(super) fn kdump_params(self) -> Option<&'static str> {
        match self {
            Kind::RkdumpL31Lzo => Some("rkdump.format=kdump rkdump.level=31 rkdump.compress=lzo"),
            Kind::RkdumpL31Zlib => Some("rkdump.format=kdump rkdump.level=31 rkdump.compress=zlib"),
            Kind::RkdumpL0Lzo => Some("rkdump.format=kdump rkdump.level=0 rkdump.compress=lzo"),
            _ => None,
        }
    }

    pub(super) fn capture(self) -> CaptureKind {
        if self.is_peer() {
            CaptureKind::Linux
        } else {
            CaptureKind::Rkdump
        }
    }
}

/// Builds the case of one run.
pub(super) fn bench_case(
    kind: Kind,
    ram: u32,
    crashkernel: u32,
    name: &str,
    disk: &Path,
    (raw_mib, raw_blocks): (u32, u64),
) -> Result<Case, String> {
    let base = match kind {
        Kind::Rkdump
        | Kind::KdumpCpus1
        | Kind::KdumpCpus2
        | Kind::RkdumpL31Lzo
        | Kind::RkdumpL31Zlib
        | Kind::RkdumpL0Lzo => "dump-nvme",
        Kind::RkdumpVirtio => "dump-virtio",
        _ => "kl-low",
    };
    let mut c = Case::standard(base, kind.capture()).ok_or(format!("no e2e case {base}"))?;
    c.name = name.to_string();
    c.memory = format!("{ram}G");
    c.crashkernel = format!("crashkernel={crashkernel}M");
    c.marker_mib = ram * 1024 / 4;
    c.loaders = vec![e2e::case::Loader::Kl];
    let ram = u64::from(ram);
    match kind {
        Kind::Rkdump
        | Kind::RkdumpVirtio
        | Kind::KdumpCpus1
        | Kind::KdumpCpus2
        | Kind::RkdumpL31Lzo
        | Kind::RkdumpL31Zlib
        | Kind::RkdumpL0Lzo => {
            // The dump case without the I/O-in-flight part: the crash is the same for everyone.
            c.io_at_crash = false;
            c.full_run = true;
            c.dump_disk = kind.disk();
            c.timeout = Duration::from_secs(180 + 90 * ram);
            if let Some(n) = kind.cpus() {
                c.capture_extra = format!(
                    "rkdump.format=kdump rkdump.compress=zlib rkdump.level=31 rkdump.cpus={n}"
                );
                c.markers_absent = true;
            } else if let Some(params) = kind.kdump_params() {
                c.capture_extra = params.to_string();
                c.markers_absent = params.contains("rkdump.level=31");
            }
        }
        Kind::PeerRaw | Kind::PeerMkdf | Kind::PeerMkdfLzo => {
            c.save_vmcore = false;
            c.capture_extra = match kind.makedumpfile() {
                None => "e2e.save=nvme0n1".into(),
                // The codec word is new to init.sh: the run's file is checked for the codec
                // (measure::measure), so an init.sh without it fails the row, not mislabels it.
                Some((flag, _, _)) => {
                    format!("e2e.makedumpfile=nvme0n1 e2e.makedumpfile_codec={flag}")
                }
            };
            c.extra_qemu_args = e2e::dump_disk_args(DiskKind::Nvme, disk);
            c.timeout = Duration::from_secs(240 + 180 * ram);
        }
        Kind::RawDd | Kind::RawDdVirtio => {
            let d = kind.disk().unwrap_or(DiskKind::Nvme);
            c.marker_mib = 0;
            c.raw_dd = Some((d, raw_mib, raw_blocks));
            c.extra_qemu_args = e2e::dump_disk_args(d, disk);
            c.timeout = Duration::from_secs(120 + 60 * ram);
        }
        Kind::GuestElf | Kind::GuestKdump => {
            // The same marker-filled guest, held idle (no kexec, no crash) while the host asks
            // QEMU to dump it.
            c.hold = true;
            c.timeout = Duration::from_secs(240 + 120 * ram);
        }
        Kind::HostLimit => return Err("the host limit runs no guest".into()),
    }
    Ok(c)
}

/// Adds `--rkdump-append` parameters to an rkdump case.
pub(super) fn append_rkdump(case: &mut Case, kind: Kind, extra: &str) {
    let extra = extra.trim();
    if kind.is_rkdump() && !extra.is_empty() {
        if !case.capture_extra.is_empty() {
            case.capture_extra.push(' ');
        }
        case.capture_extra.push_str(extra);
        // A level with bit 8 leaves the marker's user data out: its check expects them absent.
        case.markers_absent = extra
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("rkdump.level="))
            .next_back()
            .and_then(|l| l.parse::<u8>().ok())
            .is_some_and(|l| l & 8 != 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_carry_the_bench_parameters() {
        let disk = Path::new("/tmp/d.img");
        let c = bench_case(Kind::RawDd, 1, 16, "x", disk, (4, 262)).unwrap();
        let cmd = c.first_kernel_cmdline().unwrap();
        assert!(cmd.contains(" e2e.rawdd=nvme0n1:262:4 "), "{cmd}");
        assert!(
            c.extra_qemu_args
                .iter()
                .any(|a| a.starts_with("nvme,drive=dump,bus=rp1"))
        );
        let c = bench_case(Kind::PeerMkdf, 4, 256, "y", disk, (0, 0)).unwrap();
        assert_eq!(c.memory, "4G");
        assert_eq!(c.marker_mib, 1024);
        assert!(c.capture_cmdline().contains("nr_cpus=1"));
        assert!(
            c.capture_cmdline()
                .ends_with(" e2e.makedumpfile=nvme0n1 e2e.makedumpfile_codec=c")
        );
        assert!(!c.first_kernel_cmdline().unwrap().contains("e2e.rawdd"));
        let mut c = bench_case(Kind::Rkdump, 1, 8, "z", disk, (0, 0)).unwrap();
        append_rkdump(&mut c, Kind::Rkdump, " rkdump.checksum=full ");
        assert!(
            c.capture_cmdline().ends_with(" rkdump.checksum=full"),
            "{}",
            c.capture_cmdline()
        );
        assert_eq!(c.crashkernel, "crashkernel=8M");
        assert!(!c.markers_absent);
        append_rkdump(&mut c, Kind::Rkdump, "rkdump.format=kdump rkdump.level=31");
        assert!(c.markers_absent, "level 31 drops user data");
        assert_eq!(c.dump_disk, Some(DiskKind::Nvme));
        assert!(c.full_run && !c.io_at_crash);
        let mut c = bench_case(Kind::RkdumpVirtio, 1, 16, "v", disk, (0, 0)).unwrap();
        append_rkdump(&mut c, Kind::RkdumpVirtio, "rkdump.checksum=none");
        assert!(
            c.capture_cmdline().ends_with(" rkdump.checksum=none"),
            "the virtio-blk rkdump run takes --rkdump-append too: {}",
            c.capture_cmdline()
        );
        let c = bench_case(Kind::RkdumpL31Lzo, 16, 4, "l", disk, (0, 0)).unwrap();
        assert_eq!((c.memory.as_str(), c.marker_mib), ("16G", 4096));
        assert_eq!(c.crashkernel, "crashkernel=4M");
        assert!(
            c.capture_cmdline()
                .ends_with(" rkdump.format=kdump rkdump.level=31 rkdump.compress=lzo")
        );
        assert!(c.markers_absent && c.full_run && !c.io_at_crash);
        let c = bench_case(Kind::RkdumpL0Lzo, 4, 16, "f", disk, (0, 0)).unwrap();
        assert!(c.capture_cmdline().contains("rkdump.level=0") && !c.markers_absent);
        for k in Kind::LARGE {
            assert_eq!(Kind::from_slug(k.slug()), Some(k));
            assert!(k.crashes());
            assert_eq!(k.is_rkdump(), !k.is_peer());
        }
        let c = bench_case(Kind::PeerMkdfLzo, 1, 256, "w", disk, (0, 0)).unwrap();
        assert_eq!(c.capture, CaptureKind::Linux);
        assert!(
            c.capture_cmdline()
                .ends_with(" e2e.makedumpfile=nvme0n1 e2e.makedumpfile_codec=l"),
            "{}",
            c.capture_cmdline()
        );
        assert_eq!(Kind::PeerMkdfLzo.crashkernel(), PEER_CRASHKERNEL);
    }
}
