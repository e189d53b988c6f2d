//! Options about platform hardware rather than the dump: which ACPI source to trust (test and
//! diagnosis) and the IOMMU handling switch (test only).

use core::fmt;

/// Where the ACPI RSDP can come from, in the order rkdump tries them (Linux's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiSource {
    /// `acpi_rsdp=` on the command line.
    Cmdline,
    /// The loader's boot data: zero page `acpi_rsdp_addr` or PVH `rsdp_paddr`.
    BootData,
    /// The EFI configuration table (`efi_info` and `SETUP_EFI`).
    Efi,
    /// The legacy scan of the EBDA and 0xE0000..0xFFFFF.
    Bios,
}

impl AcpiSource {
    /// Every source, in the order they are tried.
    pub const ORDER: [AcpiSource; 4] = [
        AcpiSource::Cmdline,
        AcpiSource::BootData,
        AcpiSource::Efi,
        AcpiSource::Bios,
    ];

    /// The console and command-line name.
    pub fn name(self) -> &'static str {
        match self {
            AcpiSource::Cmdline => "cmdline",
            AcpiSource::BootData => "bootdata",
            AcpiSource::Efi => "efi",
            AcpiSource::Bios => "bios",
        }
    }

    /// Parses `rkdump.acpi_source=`.
    pub fn parse(v: &str) -> Result<Self, &'static str> {
        Self::ORDER
            .into_iter()
            .find(|s| s.name() == v)
            .ok_or("expected cmdline, bootdata, efi or bios")
    }
}

impl fmt::Display for AcpiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `rkdump.iommu=`: what rkdump does to IOMMUs the crashed kernel left on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IommuMode {
    /// Find them in ACPI, log and clear faults, turn translation off before the dump's DMA.
    #[default]
    Auto,
    /// Test only: leave them as they are (the negative control of the IOMMU e2e case).
    Skip,
}

impl IommuMode {
    /// Parses `rkdump.iommu=`.
    pub fn parse(v: &str) -> Result<Self, &'static str> {
        match v {
            "auto" => Ok(IommuMode::Auto),
            "skip" => Ok(IommuMode::Skip),
            _ => Err("expected auto or skip"),
        }
    }
}

/// `rkdump.watchdog=`: what rkdump does to a hardware watchdog the crashed kernel armed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchdogMode {
    /// Reload it from the dump's progress loop, so it fires only if rkdump stops making progress.
    #[default]
    Pet,
    /// Leave it alone (it may reset the machine mid-dump).
    Keep,
    /// Stop it (refused, with a line, if the crashed kernel locked it).
    Off,
}

impl WatchdogMode {
    /// Parses `rkdump.watchdog=`.
    pub fn parse(v: &str) -> Result<Self, &'static str> {
        match v {
            "pet" => Ok(WatchdogMode::Pet),
            "keep" => Ok(WatchdogMode::Keep),
            "off" => Ok(WatchdogMode::Off),
            _ => Err("expected pet, keep or off"),
        }
    }

    /// The console name.
    pub fn name(self) -> &'static str {
        match self {
            WatchdogMode::Pet => "pet",
            WatchdogMode::Keep => "keep",
            WatchdogMode::Off => "off",
        }
    }
}
