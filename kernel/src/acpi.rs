//! ACPI tables through the `acpi` crate, over rkdump's identity map: RSDP discovery (command
//! line `acpi_rsdp=`, boot info, then the legacy BIOS-area scan), the FADT's PM1 control blocks
//! and PM timer, `\_S5` from the DSDT for power-off, and the MCFG for PCI ECAM.

use core::ptr::NonNull;

use acpi::{AcpiHandler, AcpiTables, PhysicalMapping, address::AddressSpace, rsdp::Rsdp};
use rkdump_devices::acpi_s5;
use x86_64::instructions::port::Port;

use crate::arch::paging::{self, Cache};

/// Identity-map handler: rkdump's virtual addresses equal physical ones.
#[derive(Clone, Copy, Debug)]
pub struct IdentityHandler;

impl AcpiHandler for IdentityHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        // Firmware tables sit in RAM-like regions; mapping write-back is what Linux does too.
        let _ = paging::map(physical_address as u64, size as u64, Cache::WriteBack);
        // Identity mapping: after `map` the physical address is the pointer. A zero address
        // would be a firmware bug; it becomes a dangling-but-never-null pointer.
        let ptr = NonNull::new(physical_address as *mut T).unwrap_or(NonNull::dangling());
        // SAFETY: the region is identity-mapped above and `size` is what the caller asked for.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// What rkdump takes from ACPI.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcpiInfo {
    /// Where the RSDP was found.
    pub rsdp: u64,
    /// PM1a control block (I/O port).
    pub pm1a_cnt: Option<u16>,
    /// PM1b control block (I/O port).
    pub pm1b_cnt: Option<u16>,
    /// PM timer I/O port and whether it is 32 bits wide.
    pub pm_timer: Option<(u16, bool)>,
    /// \_S5 sleep types.
    pub s5: Option<acpi_s5::S5>,
    /// First MCFG entry: ECAM base, segment, start bus, end bus.
    pub ecam: Option<(u64, u16, u8, u8)>,
}

/// Finds the RSDP: explicit address first (command line, then boot info), then the BIOS scan.
pub fn find_rsdp(candidates: &[Option<u64>]) -> Option<u64> {
    for addr in candidates.iter().flatten() {
        if *addr != 0 && rsdp_valid(*addr) {
            return Some(*addr);
        }
    }
    // SAFETY: the scan reads the BDA's EBDA pointer and the 0xE0000..0xFFFFF BIOS area, which
    // are identity-mapped RAM/ROM on every PC; it only reads.
    unsafe { Rsdp::search_for_on_bios(IdentityHandler) }
        .ok()
        .map(|m| m.physical_start() as u64)
}

fn rsdp_valid(addr: u64) -> bool {
    // SAFETY: mapping only reads `size_of::<Rsdp>()` bytes at `addr` through the identity map;
    // `validate` checks signature and checksum before anything trusts it.
    let mapping = unsafe {
        IdentityHandler.map_physical_region::<Rsdp>(addr as usize, core::mem::size_of::<Rsdp>())
    };
    mapping.validate().is_ok()
}

fn io_port(address: u64, space: AddressSpace) -> Option<u16> {
    match space {
        AddressSpace::SystemIo => u16::try_from(address).ok(),
        _ => None,
    }
}

/// Reads FADT, DSDT and MCFG behind `rsdp`.
pub fn parse(rsdp: u64) -> Result<AcpiInfo, acpi::AcpiError> {
    // SAFETY: `rsdp` passed `rsdp_valid` or came from the BIOS-area scan (signature checked).
    let tables = unsafe { AcpiTables::from_rsdp(IdentityHandler, rsdp as usize) }?;
    let mut info = AcpiInfo {
        rsdp,
        ..AcpiInfo::default()
    };
    if let Ok(fadt) = tables.find_table::<acpi::fadt::Fadt>() {
        info.pm1a_cnt = fadt
            .pm1a_control_block()
            .ok()
            .and_then(|g| io_port(g.address, g.address_space));
        info.pm1b_cnt = fadt
            .pm1b_control_block()
            .ok()
            .flatten()
            .and_then(|g| io_port(g.address, g.address_space));
        let flags = fadt.flags;
        let wide = flags.pm_timer_is_32_bit();
        info.pm_timer = fadt
            .pm_timer_block()
            .ok()
            .flatten()
            .and_then(|g| io_port(g.address, g.address_space))
            .map(|p| (p, wide));
    }
    if let Ok(dsdt) = tables.dsdt() {
        let len = dsdt.length as usize;
        if len < 16 << 20 {
            let _ = paging::map(dsdt.address as u64, len as u64, Cache::WriteBack);
            // SAFETY: the AML stream is `length` bytes of firmware table memory, mapped just
            // above; the slice is only read.
            let bytes = unsafe { core::slice::from_raw_parts(dsdt.address as *const u8, len) };
            info.s5 = acpi_s5::find_s5(bytes);
        }
    }
    if let Ok(mcfg) = tables.find_table::<acpi::mcfg::Mcfg>()
        && acpi::AcpiTable::header(&*mcfg).length as usize
            >= core::mem::size_of::<acpi::mcfg::Mcfg>()
        && let Some(e) = mcfg.entries().first()
    {
        let base = e.base_address;
        info.ecam = Some((
            base,
            e.pci_segment_group,
            e.bus_number_start,
            e.bus_number_end,
        ));
    }
    Ok(info)
}

/// Reads the ACPI PM timer (3.579545 MHz), masked to its width.
pub fn read_pm_timer(port: u16, wide: bool) -> u32 {
    // SAFETY: the port is the FADT's PM_TMR_BLK; reading it has no side effects.
    let v = unsafe { Port::<u32>::new(port).read() };
    if wide { v } else { v & 0x00FF_FFFF }
}
