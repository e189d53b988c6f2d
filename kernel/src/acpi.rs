//! What rkdump takes from ACPI, through the `acpi` crate and `hw::acpi`: RSDP discovery in
//! Linux's order (command line `acpi_rsdp=`, the loader's boot data, the EFI configuration table
//! through `efi_info` and `SETUP_EFI`, then the legacy BIOS-area scan), the FADT's PM1 control
//! blocks and PM timer, `\_S5` from the DSDT for power-off, the MCFG for PCI ECAM, and the MADT's
//! processor entries for waking the other CPUs.

use rkdump_boot::cmdline::AcpiSource;
use rkdump_boot::info::efi::{EfiError, EfiRsdp};
use rkdump_boot::{BootInfo, Options};
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
    /// The DMAR table (Intel VT-d): physical address and length.
    pub dmar: Option<(u64, u32)>,
    /// The IVRS table (AMD-Vi): physical address and length.
    pub ivrs: Option<(u64, u32)>,
}

/// The outcome of RSDP discovery.
#[derive(Clone, Copy, Debug)]
pub struct RsdpDiscovery {
    /// The first valid RSDP and its source.
    pub found: Option<(u64, AcpiSource)>,
    /// The EFI configuration table walk, when `efi_info` names a system table (done even when an
    /// earlier source answered, so the console shows whether both agree).
    pub efi: Option<Result<EfiRsdp, EfiError>>,
}

/// Finds the RSDP in Linux's order: `acpi_rsdp=`, the loader's boot data, the EFI configuration
/// table, then the BIOS scan (only the source `rkdump.acpi_source=` names, when given). Each
/// candidate must pass the RSDP checks (signature, checksums, not rkdump's memory) first.
pub fn find_rsdp(opts: &Options, boot: &BootInfo) -> RsdpDiscovery {
    let efi = boot
        .efi_systab()
        .map(|_| boot.efi_acpi_rsdp(&crate::physmem::BootMem));
    let found = AcpiSource::ORDER
        .into_iter()
        .filter(|&s| opts.acpi_source.is_none_or(|only| only == s))
        .find_map(|source| {
            let addr = match source {
                AcpiSource::Cmdline => opts.acpi_rsdp,
                AcpiSource::BootData => boot.acpi_rsdp(),
                AcpiSource::Efi => efi.and_then(|r| r.ok()).map(|r| r.rsdp),
                AcpiSource::Bios => return hw_acpi::bios_rsdp().map(|a| (a, source)),
            };
            addr.filter(|&a| a != 0 && hw_acpi::rsdp_valid(a))
                .map(|a| (a, source))
        });
    RsdpDiscovery { found, efi }
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
    info.dmar = hw_acpi::table_location::<hw_acpi::DmarHeader>(&tables);
    info.ivrs = hw_acpi::table_location::<hw_acpi::IvrsHeader>(&tables);
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
