//! What rkdump takes from ACPI, through the `acpi` crate and `hw::acpi`: RSDP discovery (command
//! line `acpi_rsdp=`, boot info, then the legacy BIOS-area scan), the FADT's PM1 control blocks
//! and PM timer, `\_S5` from the DSDT for power-off, the MCFG for PCI ECAM, and the MADT's
//! processor entries for waking the other CPUs.

use rkdump_devices::acpi_s5;

use crate::hw::acpi::{self as hw_acpi, Pm1Control, PmTimer};

/// What rkdump takes from ACPI.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcpiInfo {
    /// Where the RSDP was found.
    pub rsdp: u64,
    /// PM1a control block (I/O port).
    pub pm1a_cnt: Option<Pm1Control>,
    /// PM1b control block (I/O port).
    pub pm1b_cnt: Option<Pm1Control>,
    /// PM timer (I/O port, 24 or 32 bits wide).
    pub pm_timer: Option<PmTimer>,
    /// \_S5 sleep types.
    pub s5: Option<acpi_s5::S5>,
    /// First MCFG entry: ECAM base, segment, start bus, end bus.
    pub ecam: Option<(u64, u16, u8, u8)>,
}

/// Finds the RSDP: explicit address first (command line, then boot info), then the BIOS scan.
pub fn find_rsdp(candidates: &[Option<u64>]) -> Option<u64> {
    for addr in candidates.iter().flatten() {
        if *addr != 0 && hw_acpi::rsdp_valid(*addr) {
            return Some(*addr);
        }
    }
    hw_acpi::bios_rsdp()
}

/// The processor entries of the MADT behind `rsdp`; `None` when the tables or the MADT are
/// missing.
pub fn madt_cpus(
    rsdp: u64,
) -> Option<Result<rkdump_boot::cpus::MadtCpus, rkdump_boot::cpus::MadtError>> {
    let tables = hw_acpi::tables(rsdp).ok()?;
    hw_acpi::with_madt(&tables, rkdump_boot::cpus::MadtCpus::parse)
}

/// Reads FADT, DSDT and MCFG behind `rsdp`.
pub fn parse(rsdp: u64) -> Result<AcpiInfo, acpi::AcpiError> {
    let tables = hw_acpi::tables(rsdp)?;
    let ports = hw_acpi::fadt_ports(&tables);
    let mut info = AcpiInfo {
        rsdp,
        pm1a_cnt: ports.pm1a_cnt,
        pm1b_cnt: ports.pm1b_cnt,
        pm_timer: ports.pm_timer,
        ..AcpiInfo::default()
    };
    info.s5 = hw_acpi::with_dsdt(&tables, acpi_s5::find_s5).flatten();
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
