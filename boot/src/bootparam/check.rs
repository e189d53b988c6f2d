//! bzImage acceptance check: the rules kexec-tools and `kexec_file_load` both apply (docs/boot-contract.md#bzimage-header-rules).

use core::fmt;

use super::{
    BOOT_FLAG, HDRS_MAGIC, LOADED_HIGH, MIN_CMDLINE_SIZE, MIN_KEXEC_VERSION, SETUP_HEADER_OFFSET,
    SetupHeader, XLF_5LEVEL, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64,
};

/// Both loaders refuse files shorter than this.
const MIN_IMAGE_LEN: usize = 1024;
/// kexec-tools copies at most this many header bytes starting at 0x1F1.
const KT_HEADER_COPY_MAX: usize = 0x7F;
/// The header copy must reach past `init_size` (0x260..0x264).
const INIT_SIZE_END: usize = 0x264;
/// Multiboot v1 magic, searched at 4-byte alignment in the first 8 KiB.
const MULTIBOOT_MAGIC: u32 = 0x1BAD_B002;
const MULTIBOOT_SEARCH: usize = 8 * 1024;
/// Multiboot2 magic, searched at 8-byte alignment in the first 32 KiB.
const MULTIBOOT2_MAGIC: u32 = 0xE852_50D6;
const MULTIBOOT2_SEARCH: usize = 32 * 1024;
const PAGE_SIZE: u32 = 4096;

/// What a kexec loader would take from an accepted bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSummary {
    /// Effective setup sector count (a stored 0 reads as 4).
    pub setup_sects: u8,
    /// File offset of the protected-mode payload: `(setup_sects + 1) * 512`.
    pub payload_offset: usize,
    /// Payload length: file length − `payload_offset`.
    pub payload_len: usize,
    /// `init_size` (0x260).
    pub init_size: u32,
    /// `kernel_alignment` (0x230).
    pub kernel_alignment: u32,
    /// `pref_address` (0x258).
    pub pref_address: u64,
    /// Boot protocol `version` (0x206).
    pub version: u16,
    /// `loadflags` (0x211).
    pub loadflags: u8,
    /// `xloadflags` (0x236).
    pub xloadflags: u16,
    /// `cmdline_size` (0x238).
    pub cmdline_size: u32,
    /// Exclusive file offset where the header ends as kexec-tools copies it (0x202 + byte 0x201, capped).
    pub header_end: usize,
}

impl HeaderSummary {
    /// File offset of the 64-bit entry point (payload + 0x200) that both loaders jump to.
    pub fn entry64_offset(&self) -> usize {
        self.payload_offset + 0x200
    }

    /// Whether `kexec_file_load` accepts the image on a host running 5-level paging.
    pub fn supports_5level(&self) -> bool {
        self.xloadflags & XLF_5LEVEL != 0
    }
}

/// Why a loader would refuse (or silently mis-load) a bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The file is shorter than 1024 bytes or than the setup sectors it declares.
    TooShort {
        /// File length.
        len: usize,
        /// Bytes required.
        need: usize,
    },
    /// `boot_flag` at 0x1FE is not 0xAA55.
    BadBootFlag {
        /// Value found.
        found: u16,
    },
    /// No "HdrS" at 0x202.
    NoHdrS {
        /// Value found.
        found: u32,
    },
    /// Boot protocol older than 2.12.
    VersionTooOld {
        /// `version` found.
        version: u16,
    },
    /// `loadflags` lacks LOADED_HIGH.
    NotLoadedHigh {
        /// `loadflags` found.
        loadflags: u8,
    },
    /// `xloadflags` lacks XLF_KERNEL_64 or XLF_CAN_BE_LOADED_ABOVE_4G.
    Not64BitLoadable {
        /// `xloadflags` found.
        xloadflags: u16,
    },
    /// The header as copied by kexec-tools (0x1F1 .. 0x202 + byte 0x201, ≤ 0x7F bytes) misses `init_size`;
    /// kexec-tools would then read `init_size = 0` and silently drop the kernel segment.
    HeaderTooShort {
        /// Exclusive end of the copied header.
        header_end: usize,
    },
    /// The file has no payload after the setup sectors.
    EmptyPayload,
    /// `init_size` is smaller than the payload (kernel: bufsz > memsz; kexec-tools truncates).
    InitSizeTooSmall {
        /// `init_size` found.
        init_size: u32,
        /// Payload length.
        payload_len: usize,
    },
    /// `kernel_alignment` is not a power of two ≥ 4 KiB.
    BadKernelAlignment {
        /// `kernel_alignment` found.
        kernel_alignment: u32,
    },
    /// `cmdline_size` is below 2047, too small for the loaders' additions.
    CmdlineSizeTooSmall {
        /// `cmdline_size` found.
        cmdline_size: u32,
    },
    /// Multiboot v1 magic in the first 8 KiB: kexec-tools would pick a loader that ignores `-p`.
    MultibootMagic {
        /// File offset of the magic.
        offset: usize,
    },
    /// Multiboot2 magic in the first 32 KiB: kexec-tools would pick a loader that ignores `-p`.
    Multiboot2Magic {
        /// File offset of the magic.
        offset: usize,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len, need } => {
                write!(f, "image is {len} bytes, needs at least {need}")
            }
            Self::BadBootFlag { found } => write!(f, "boot_flag is {found:#06x}, expected 0xaa55"),
            Self::NoHdrS { found } => write!(f, "no \"HdrS\" at 0x202 (found {found:#010x})"),
            Self::VersionTooOld { version } => {
                write!(f, "boot protocol {version:#06x} is older than 0x020c")
            }
            Self::NotLoadedHigh { loadflags } => {
                write!(f, "loadflags {loadflags:#04x} lacks LOADED_HIGH")
            }
            Self::Not64BitLoadable { xloadflags } => write!(
                f,
                "xloadflags {xloadflags:#06x} lacks XLF_KERNEL_64 or XLF_CAN_BE_LOADED_ABOVE_4G"
            ),
            Self::HeaderTooShort { header_end } => write!(
                f,
                "header copied by kexec ends at {header_end:#x}, before init_size (0x264)"
            ),
            Self::EmptyPayload => f.write_str("image has no payload after the setup sectors"),
            Self::InitSizeTooSmall {
                init_size,
                payload_len,
            } => {
                write!(
                    f,
                    "init_size {init_size:#x} is smaller than the payload ({payload_len:#x})"
                )
            }
            Self::BadKernelAlignment { kernel_alignment } => write!(
                f,
                "kernel_alignment {kernel_alignment:#x} is not a power of two >= 4096"
            ),
            Self::CmdlineSizeTooSmall { cmdline_size } => {
                write!(f, "cmdline_size {cmdline_size} is below 2047")
            }
            Self::MultibootMagic { offset } => write!(f, "multiboot magic at offset {offset:#x}"),
            Self::Multiboot2Magic { offset } => {
                write!(f, "multiboot2 magic at offset {offset:#x}")
            }
        }
    }
}

/// Validates a bzImage file as both kexec loaders would (docs/boot-contract.md#bzimage-header-rules) and summarises what they use.
///
/// Requires: ≥ 1024 bytes and ≥ (setup_sects + 1) · 512 (setup_sects 0 ⇒ 4); boot_flag 0xAA55;
/// "HdrS"; version ≥ 0x020C; LOADED_HIGH; XLF_KERNEL_64 and XLF_CAN_BE_LOADED_ABOVE_4G; a header copy
/// (0x1F1 .. 0x202 + byte 0x201, capped at 0x7F bytes by kexec-tools) that covers `init_size`;
/// `init_size` ≥ payload length (slightly stricter than the loaders, which compare against
/// `init_size` rounded up to 4 KiB); `kernel_alignment` a power of two ≥ 4 KiB; `cmdline_size` ≥ 2047;
/// no multiboot magic (v1 in the first 8 KiB at 4-byte steps, v2 in the first 32 KiB at 8-byte steps).
pub fn check_kexec_header(image: &[u8]) -> Result<HeaderSummary, HeaderError> {
    let too_short = HeaderError::TooShort {
        len: image.len(),
        need: MIN_IMAGE_LEN,
    };
    if image.len() < MIN_IMAGE_LEN {
        return Err(too_short);
    }
    let hdr = SetupHeader::from_image(image).ok_or(too_short)?;

    let setup_sects = if hdr.setup_sects == 0 {
        4
    } else {
        hdr.setup_sects
    };
    let payload_offset = (usize::from(setup_sects) + 1) * 512;
    if image.len() < payload_offset {
        return Err(HeaderError::TooShort {
            len: image.len(),
            need: payload_offset,
        });
    }
    let boot_flag = hdr.boot_flag;
    if boot_flag != BOOT_FLAG {
        return Err(HeaderError::BadBootFlag { found: boot_flag });
    }
    let header = hdr.header;
    if header != HDRS_MAGIC {
        return Err(HeaderError::NoHdrS { found: header });
    }
    let version = hdr.version;
    if version < MIN_KEXEC_VERSION {
        return Err(HeaderError::VersionTooOld { version });
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(HeaderError::NotLoadedHigh {
            loadflags: hdr.loadflags,
        });
    }
    let xloadflags = hdr.xloadflags;
    let need_xlf = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
    if xloadflags & need_xlf != need_xlf {
        return Err(HeaderError::Not64BitLoadable { xloadflags });
    }

    // Header length = 0x202 + the jump displacement at byte 0x201; kexec-tools caps the copy.
    let jump_disp = usize::from(hdr.jump.to_le_bytes()[1]);
    let copy_len = (0x202 + jump_disp - SETUP_HEADER_OFFSET).min(KT_HEADER_COPY_MAX);
    let header_end = SETUP_HEADER_OFFSET + copy_len;
    if header_end < INIT_SIZE_END {
        return Err(HeaderError::HeaderTooShort { header_end });
    }

    let payload_len = image.len() - payload_offset;
    if payload_len == 0 {
        return Err(HeaderError::EmptyPayload);
    }
    let init_size = hdr.init_size;
    if usize::try_from(init_size).map_or(true, |n| n < payload_len) {
        return Err(HeaderError::InitSizeTooSmall {
            init_size,
            payload_len,
        });
    }
    let kernel_alignment = hdr.kernel_alignment;
    if !kernel_alignment.is_power_of_two() || kernel_alignment < PAGE_SIZE {
        return Err(HeaderError::BadKernelAlignment { kernel_alignment });
    }
    let cmdline_size = hdr.cmdline_size;
    if cmdline_size < MIN_CMDLINE_SIZE {
        return Err(HeaderError::CmdlineSizeTooSmall { cmdline_size });
    }
    if let Some(offset) = find_magic(image, MULTIBOOT_MAGIC, 4, MULTIBOOT_SEARCH) {
        return Err(HeaderError::MultibootMagic { offset });
    }
    if let Some(offset) = find_magic(image, MULTIBOOT2_MAGIC, 8, MULTIBOOT2_SEARCH) {
        return Err(HeaderError::Multiboot2Magic { offset });
    }

    Ok(HeaderSummary {
        setup_sects,
        payload_offset,
        payload_len,
        init_size,
        kernel_alignment,
        pref_address: hdr.pref_address,
        version,
        loadflags: hdr.loadflags,
        xloadflags,
        cmdline_size,
        header_end,
    })
}

/// Offset of the first little-endian `magic` at a multiple of `step` within the first `limit` bytes.
fn find_magic(image: &[u8], magic: u32, step: usize, limit: usize) -> Option<usize> {
    let window = &image[..image.len().min(limit)];
    window
        .chunks_exact(step)
        .position(|c| c[..4] == magic.to_le_bytes())
        .map(|i| i * step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparam::HEADER_JUMP;

    const SECTS: u8 = 4;
    const PAYLOAD_OFF: usize = (SECTS as usize + 1) * 512;
    const PAYLOAD_LEN: usize = 40 * 1024;

    fn good_image() -> std::vec::Vec<u8> {
        let mut img = std::vec![0u8; PAYLOAD_OFF + PAYLOAD_LEN];
        let mut hdr = SetupHeader::zeroed();
        hdr.setup_sects = SECTS;
        hdr.boot_flag = BOOT_FLAG;
        hdr.jump = HEADER_JUMP;
        hdr.header = HDRS_MAGIC;
        hdr.version = 0x020F;
        hdr.loadflags = LOADED_HIGH;
        hdr.kernel_alignment = 0x20_0000;
        hdr.relocatable_kernel = 1;
        hdr.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_5LEVEL;
        hdr.cmdline_size = 2047;
        hdr.pref_address = 0x100_0000;
        hdr.init_size = 0x10_0000;
        assert!(hdr.write_to_image(&mut img));
        assert_eq!(SetupHeader::from_image(&img), Some(hdr));
        img
    }

    fn with(f: impl FnOnce(&mut [u8])) -> Result<HeaderSummary, HeaderError> {
        let mut img = good_image();
        f(&mut img);
        check_kexec_header(&img)
    }

    fn put16(img: &mut [u8], off: usize, v: u16) {
        img[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(img: &mut [u8], off: usize, v: u32) {
        img[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn good_header_summary() {
        let s = check_kexec_header(&good_image()).unwrap();
        assert_eq!(s.setup_sects, 4);
        assert_eq!(s.payload_offset, 0xA00);
        assert_eq!(s.payload_len, PAYLOAD_LEN);
        assert_eq!(s.init_size, 0x10_0000);
        assert_eq!(s.kernel_alignment, 0x20_0000);
        assert_eq!(s.pref_address, 0x100_0000);
        assert_eq!(s.version, 0x020F);
        assert_eq!(s.cmdline_size, 2047);
        assert_eq!(s.header_end, 0x26C);
        assert_eq!(s.entry64_offset(), 0xC00);
        assert!(s.supports_5level());
    }

    #[test]
    fn setup_sects_zero_means_four() {
        let s = with(|i| i[0x1F1] = 0).unwrap();
        assert_eq!(s.setup_sects, 4);
        assert_eq!(s.payload_offset, 0xA00);
    }

    #[test]
    fn one_mutation_per_rule() {
        use HeaderError::*;
        assert_eq!(
            check_kexec_header(&[0u8; 1023]),
            Err(TooShort {
                len: 1023,
                need: 1024
            })
        );
        // setup_sects = 100 needs 101 * 512 bytes, more than the file has.
        let len = PAYLOAD_OFF + PAYLOAD_LEN;
        assert_eq!(
            with(|i| i[0x1F1] = 100),
            Err(TooShort {
                len,
                need: 101 * 512
            })
        );
        assert_eq!(with(|i| i[0x1FF] = 0), Err(BadBootFlag { found: 0x0055 }));
        assert_eq!(
            with(|i| i[0x202] = b'X'),
            Err(NoHdrS { found: 0x5372_6458 })
        );
        assert_eq!(
            with(|i| put16(i, 0x206, 0x020B)),
            Err(VersionTooOld { version: 0x020B })
        );
        assert_eq!(
            with(|i| i[0x211] = 0x80),
            Err(NotLoadedHigh { loadflags: 0x80 })
        );
        assert_eq!(
            with(|i| put16(i, 0x236, 1)),
            Err(Not64BitLoadable { xloadflags: 1 })
        );
        assert_eq!(
            with(|i| put16(i, 0x236, 2)),
            Err(Not64BitLoadable { xloadflags: 2 })
        );
        // Jump displacement 0x61 ends the header at 0x263, one byte short of init_size's end.
        assert_eq!(
            with(|i| i[0x201] = 0x61),
            Err(HeaderTooShort { header_end: 0x263 })
        );
        // 0x62 is just enough; a huge displacement is capped at 0x7F bytes (0x270), still enough.
        assert!(with(|i| i[0x201] = 0x62).is_ok());
        assert_eq!(with(|i| i[0x201] = 0xFF).unwrap().header_end, 0x270);
        assert_eq!(
            with(|i| put32(i, 0x260, (PAYLOAD_LEN - 1) as u32)),
            Err(InitSizeTooSmall {
                init_size: (PAYLOAD_LEN - 1) as u32,
                payload_len: PAYLOAD_LEN
            })
        );
        assert!(with(|i| put32(i, 0x260, PAYLOAD_LEN as u32)).is_ok());
        assert_eq!(
            with(|i| put32(i, 0x260, 0)),
            Err(InitSizeTooSmall {
                init_size: 0,
                payload_len: PAYLOAD_LEN
            })
        );
        assert_eq!(
            with(|i| put32(i, 0x230, 0x3000)),
            Err(BadKernelAlignment {
                kernel_alignment: 0x3000
            })
        );
        assert_eq!(
            with(|i| put32(i, 0x230, 0x800)),
            Err(BadKernelAlignment {
                kernel_alignment: 0x800
            })
        );
        assert_eq!(
            with(|i| put32(i, 0x230, 0)),
            Err(BadKernelAlignment {
                kernel_alignment: 0
            })
        );
        assert_eq!(
            with(|i| put32(i, 0x238, 2046)),
            Err(CmdlineSizeTooSmall { cmdline_size: 2046 })
        );
        assert_eq!(
            with(|i| put32(i, 0x1000, MULTIBOOT_MAGIC)),
            Err(MultibootMagic { offset: 0x1000 })
        );
        // Unaligned or beyond 8 KiB: not what kexec-tools looks for.
        assert!(with(|i| put32(i, 0x1002, MULTIBOOT_MAGIC)).is_ok());
        assert!(with(|i| put32(i, 0x2000, MULTIBOOT_MAGIC)).is_ok());
        assert_eq!(
            with(|i| put32(i, 0x7FF8, MULTIBOOT2_MAGIC)),
            Err(Multiboot2Magic { offset: 0x7FF8 })
        );
        assert!(with(|i| put32(i, 0x7FFC, MULTIBOOT2_MAGIC)).is_ok());
        assert!(with(|i| put32(i, 0x8000, MULTIBOOT2_MAGIC)).is_ok());
        // Exactly the setup sectors and nothing else.
        let mut img = good_image();
        img.truncate(PAYLOAD_OFF);
        assert_eq!(check_kexec_header(&img), Err(EmptyPayload));
    }

    #[test]
    fn errors_display() {
        let e = HeaderError::InitSizeTooSmall {
            init_size: 1,
            payload_len: 2,
        };
        assert_eq!(
            std::format!("{e}"),
            "init_size 0x1 is smaller than the payload (0x2)"
        );
    }
}
