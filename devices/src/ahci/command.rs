//! AHCI command structures (AHCI 1.3.1 §4.2: command header, PRD) and the Register
//! Host-to-Device FIS (SATA 3.x §10.5.5) as the HBA reads them, and the ATA commands rkdump issues.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// IDENTIFY DEVICE (PIO data-in, 512 bytes).
pub const ATA_IDENTIFY: u8 = 0xEC;
/// READ DMA EXT.
pub const ATA_READ_DMA_EXT: u8 = 0x25;
/// WRITE DMA EXT.
pub const ATA_WRITE_DMA_EXT: u8 = 0x35;
/// READ FPDMA QUEUED (NCQ).
pub const ATA_READ_FPDMA: u8 = 0x60;
/// WRITE FPDMA QUEUED (NCQ).
pub const ATA_WRITE_FPDMA: u8 = 0x61;
/// FLUSH CACHE.
pub const ATA_FLUSH: u8 = 0xE7;
/// FLUSH CACHE EXT.
pub const ATA_FLUSH_EXT: u8 = 0xEA;

/// Device register bit 6: LBA addressing.
pub const DEV_LBA: u8 = 1 << 6;
/// Largest sector count of one LBA48 command (encoded as 0).
pub const MAX_SECTORS: u64 = 65536;
/// Largest byte count of one PRDT entry (§4.2.3.3: DBC is 22 bits).
pub const PRD_MAX: u64 = 4 << 20;
/// PRDT entries per command table; with contiguous buffers that covers 32 MiB.
pub const PRDS_PER_CMD: usize = 8;
/// Command table: 0x80 bytes of FIS area, then the PRDT; a multiple of 128 keeps each aligned.
pub const TABLE_SIZE: usize = 0x80 + PRDS_PER_CMD * 16;
/// Received-FIS area inside the command-list page.
pub const RFIS_OFFSET: usize = 0x400;

/// FIS type of a Register Host-to-Device FIS.
pub const FIS_TYPE_REG_H2D: u8 = 0x27;
/// `pmport_c` bit 7: the FIS carries a command (not a device control update).
pub const FIS_C: u8 = 0x80;

/// A Register Host-to-Device FIS (SATA 3.x §10.5.5; the `FIS_REG_H2D` of the AHCI literature).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub struct H2d {
    /// 0x00: [`FIS_TYPE_REG_H2D`].
    pub fis_type: u8,
    /// 0x01: port multiplier port (3:0), C (7).
    pub pmport_c: u8,
    /// 0x02: ATA command.
    pub command: u8,
    /// 0x03: features 7:0.
    pub featurel: u8,
    /// 0x04: LBA 7:0.
    pub lba0: u8,
    /// 0x05: LBA 15:8.
    pub lba1: u8,
    /// 0x06: LBA 23:16.
    pub lba2: u8,
    /// 0x07: device register.
    pub device: u8,
    /// 0x08: LBA 31:24.
    pub lba3: u8,
    /// 0x09: LBA 39:32.
    pub lba4: u8,
    /// 0x0A: LBA 47:40.
    pub lba5: u8,
    /// 0x0B: features 15:8.
    pub featureh: u8,
    /// 0x0C: count 7:0.
    pub countl: u8,
    /// 0x0D: count 15:8.
    pub counth: u8,
    /// 0x0E: isochronous command completion.
    pub icc: u8,
    /// 0x0F: device control.
    pub control: u8,
    /// 0x10: reserved.
    pub rsv1: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<H2d>() == 20);
const _: () = assert!(core::mem::offset_of!(H2d, lba3) == 0x08);
const _: () = assert!(core::mem::offset_of!(H2d, countl) == 0x0C);

impl H2d {
    /// A command FIS with these fields and the rest zero.
    pub fn command(command: u8, features: u16, lba: u64, device: u8, count: u16) -> Self {
        let [lba0, lba1, lba2, lba3, lba4, lba5, ..] = lba.to_le_bytes();
        let [featurel, featureh] = features.to_le_bytes();
        let [countl, counth] = count.to_le_bytes();
        H2d {
            fis_type: FIS_TYPE_REG_H2D,
            pmport_c: FIS_C,
            command,
            featurel,
            lba0,
            lba1,
            lba2,
            device,
            lba3,
            lba4,
            lba5,
            featureh,
            countl,
            counth,
            ..H2d::default()
        }
    }

    /// IDENTIFY DEVICE.
    pub fn identify() -> Self {
        Self::command(ATA_IDENTIFY, 0, 0, 0, 0)
    }

    /// READ/WRITE DMA EXT of `sectors` (1..=65536, 65536 encoded as 0).
    pub fn dma_ext(write: bool, lba: u64, sectors: u32) -> Self {
        let command = if write {
            ATA_WRITE_DMA_EXT
        } else {
            ATA_READ_DMA_EXT
        };
        Self::command(command, 0, lba, DEV_LBA, sectors as u16)
    }

    /// READ/WRITE FPDMA QUEUED: the sector count goes in Features, the tag in Count 7:3
    /// (ACS-3 §7.70, §7.71).
    pub fn fpdma(write: bool, lba: u64, sectors: u32, tag: u8) -> Self {
        let command = if write {
            ATA_WRITE_FPDMA
        } else {
            ATA_READ_FPDMA
        };
        let count = u16::from(tag & 0x1F) << 3;
        Self::command(command, sectors as u16, lba, DEV_LBA, count)
    }

    /// FLUSH CACHE EXT, or FLUSH CACHE for a disk without it.
    pub fn flush(ext: bool) -> Self {
        Self::command(if ext { ATA_FLUSH_EXT } else { ATA_FLUSH }, 0, 0, 0, 0)
    }

    /// The 20 FIS bytes.
    pub fn encode(&self) -> [u8; 20] {
        zerocopy::transmute!(*self)
    }
}

/// `opts` bit 6: data flows to the device.
pub const CMD_HDR_WRITE: u32 = 1 << 6;

/// A command header (AHCI §4.2.2; Linux `struct ahci_cmd_hdr`).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub struct CmdHeader {
    /// 0x00: DW0: CFL (4:0, FIS length in dwords), W (6), PRDTL (31:16).
    pub opts: u32,
    /// 0x04: PRDBC, bytes transferred (the HBA writes it; starts at zero).
    pub status: u32,
    /// 0x08: command table base, 128-byte aligned.
    pub tbl_addr: u32,
    /// 0x0C: command table base, upper 32 bits.
    pub tbl_addr_hi: u32,
    /// 0x10: reserved.
    pub reserved: [u32; 4],
}

const _: () = assert!(cfg!(target_endian = "little"));
const _: () = assert!(core::mem::size_of::<CmdHeader>() == 32);
const _: () = assert!(core::mem::offset_of!(CmdHeader, tbl_addr) == 0x08);

impl CmdHeader {
    /// A header for a `cfl`-dword FIS, `prdtl` PRD entries and the table at `ctba`.
    pub fn new(cfl: u8, write: bool, prdtl: u16, ctba: u64) -> Self {
        let w = if write { CMD_HDR_WRITE } else { 0 };
        CmdHeader {
            opts: u32::from(cfl & 0x1F) | w | (u32::from(prdtl) << 16),
            tbl_addr: ctba as u32,
            tbl_addr_hi: (ctba >> 32) as u32,
            ..CmdHeader::default()
        }
    }

    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; 32] {
        zerocopy::transmute!(*self)
    }
}

/// A physical region descriptor (AHCI §4.2.3.3; Linux `struct ahci_sg`).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub struct Prd {
    /// 0x00: data base address (word aligned).
    pub addr: u32,
    /// 0x04: data base address, upper 32 bits.
    pub addr_hi: u32,
    /// 0x08: reserved.
    pub reserved: u32,
    /// 0x0C: DBC (21:0, byte count − 1), I (31, interrupt on completion; 0: polled).
    pub flags_size: u32,
}

const _: () = assert!(core::mem::size_of::<Prd>() == 16);
const _: () = assert!(core::mem::offset_of!(Prd, flags_size) == 0x0C);

/// Why a PRDT could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrdtError {
    /// Zero-length transfer.
    Empty,
    /// Address or length odd: PRD data must be word aligned with an even byte count.
    Misaligned,
    /// The buffer wraps the address space.
    Overflow,
    /// More entries than the table holds.
    TooLong,
}

/// Writes PRDT entries (§4.2.3.3) for `len` contiguous bytes at `phys` into `out`, 16 bytes
/// each, at most [`PRD_MAX`] per entry, and returns the entry count. DBC holds count − 1, so
/// with even counts its bit 0 is always 1.
pub fn build_prdt(phys: u64, len: u64, out: &mut [u8]) -> Result<u16, PrdtError> {
    if len == 0 {
        return Err(PrdtError::Empty);
    }
    if !phys.is_multiple_of(2) || !len.is_multiple_of(2) {
        return Err(PrdtError::Misaligned);
    }
    phys.checked_add(len).ok_or(PrdtError::Overflow)?;
    let n = len.div_ceil(PRD_MAX);
    if n > (out.len() / 16) as u64 {
        return Err(PrdtError::TooLong);
    }
    for (i, e) in out.chunks_exact_mut(16).take(n as usize).enumerate() {
        let off = i as u64 * PRD_MAX;
        let count = (len - off).min(PRD_MAX);
        let addr = phys + off;
        let prd = Prd {
            addr: addr as u32,
            addr_hi: (addr >> 32) as u32,
            reserved: 0,
            flags_size: (count - 1) as u32, // I=0: polled
        };
        e.copy_from_slice(prd.as_bytes());
    }
    Ok(n as u16)
}
