//! The ACPI RSDP through the EFI configuration table, the way a kernel booted through UEFI and
//! then kexec'd finds it (docs/boot-contract.md#efi-hand-off).
//!
//! The zero page's `efi_info` names the EFI system table. After the first kernel called
//! `SetVirtualAddressMap`, the firmware rewrote the table's pointers to virtual addresses, so a
//! kexec loader also hands over a `SETUP_EFI` setup_data node with the configuration table's
//! physical address; that one wins when present. Everything here is old-memory data: the
//! signature, the entry count and every address are checked, reads go through
//! [`PhysMem`], and no EFI service is ever called.

use core::fmt;

use crate::bootparam::{
    ACPI_20_TABLE_GUID, ACPI_TABLE_GUID, EFI_SYSTEM_TABLE_SIGNATURE, EfiConfigTable64,
    EfiSetupData, EfiSystemTable64,
};
use crate::mem::{PhysMem, PhysMemError, PhysRange, read_struct};

/// More configuration table entries than this is taken as garbage (firmware has a few dozen).
pub const MAX_CONFIG_TABLES: u32 = 1024;

/// Where the configuration table's address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFrom {
    /// The kexec loader's `SETUP_EFI` node (`efi_setup_data.tables`, physical).
    SetupData,
    /// The system table's own `tables` field (physical only before `SetVirtualAddressMap`).
    SystemTable,
}

impl ConfigFrom {
    /// Console name.
    pub fn name(self) -> &'static str {
        match self {
            ConfigFrom::SetupData => "setup_data",
            ConfigFrom::SystemTable => "systab",
        }
    }
}

/// The RSDP found in the configuration table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EfiRsdp {
    /// The RSDP's physical address.
    pub rsdp: u64,
    /// Found under the ACPI 2.0 GUID (else the ACPI 1.0 one).
    pub acpi20: bool,
    /// The configuration table's physical address.
    pub config: u64,
    /// Where that address came from.
    pub config_from: ConfigFrom,
    /// Entries in the configuration table.
    pub entries: u32,
}

/// Why the configuration table gave no RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EfiError {
    /// `efi_info` names no system table (not booted through UEFI, or the loader left it out).
    NoSystemTable,
    /// A 32-bit EFI loader signature: the 32-bit table layout is not read.
    Efi32,
    /// The system table could not be read.
    SystabUnreadable(PhysMemError),
    /// The system table's signature is wrong.
    BadSignature {
        /// What was there.
        found: u64,
    },
    /// The entry count is zero or implausible.
    BadEntryCount {
        /// The count read.
        entries: u32,
    },
    /// The configuration table's address is zero or the table would wrap.
    BadConfigAddress {
        /// The address.
        addr: u64,
    },
    /// An entry could not be read.
    ConfigUnreadable(PhysMemError),
    /// No ACPI GUID among the entries (or its table address is zero).
    NoAcpiEntry {
        /// Entries searched.
        entries: u32,
    },
}

impl fmt::Display for EfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSystemTable => write!(f, "no EFI system table in efi_info"),
            Self::Efi32 => write!(
                f,
                "32-bit EFI firmware (EL32): configuration table not read"
            ),
            Self::SystabUnreadable(e) => write!(f, "EFI system table: {e}"),
            Self::BadSignature { found } => {
                write!(
                    f,
                    "EFI system table signature {found:#018x} is not \"IBI SYST\""
                )
            }
            Self::BadEntryCount { entries } => {
                write!(f, "EFI configuration table has {entries} entries")
            }
            Self::BadConfigAddress { addr } => {
                write!(f, "EFI configuration table address {addr:#x} unusable")
            }
            Self::ConfigUnreadable(e) => write!(f, "EFI configuration table: {e}"),
            Self::NoAcpiEntry { entries } => {
                write!(f, "no ACPI entry among {entries} EFI configuration tables")
            }
        }
    }
}

/// Finds the RSDP in the EFI configuration table. `systab` and `efi64` come from `efi_info`,
/// `setup_efi` is the payload of the `SETUP_EFI` node if the loader passed one. The ACPI 2.0
/// entry wins over an ACPI 1.0 one wherever it sits in the table.
pub fn find_acpi_rsdp(
    mem: &impl PhysMem,
    systab: Option<u64>,
    efi64: bool,
    setup_efi: Option<PhysRange>,
) -> Result<EfiRsdp, EfiError> {
    let systab = systab.ok_or(EfiError::NoSystemTable)?;
    if !efi64 {
        return Err(EfiError::Efi32);
    }
    let st: EfiSystemTable64 = read_struct(mem, systab).map_err(EfiError::SystabUnreadable)?;
    let signature = st.hdr.signature;
    if signature != EFI_SYSTEM_TABLE_SIGNATURE {
        return Err(EfiError::BadSignature { found: signature });
    }
    let entries = st.nr_tables;
    if entries == 0 || entries > MAX_CONFIG_TABLES {
        return Err(EfiError::BadEntryCount { entries });
    }
    let (config, config_from) = match setup_tables(mem, setup_efi) {
        Some(t) => (t, ConfigFrom::SetupData),
        None => (st.tables, ConfigFrom::SystemTable),
    };
    let entry_len = size_of::<EfiConfigTable64>() as u64;
    if config == 0 || PhysRange::try_new(config, u64::from(entries) * entry_len).is_none() {
        return Err(EfiError::BadConfigAddress { addr: config });
    }
    let mut acpi10 = None;
    for i in 0..u64::from(entries) {
        let e: EfiConfigTable64 =
            read_struct(mem, config + i * entry_len).map_err(EfiError::ConfigUnreadable)?;
        let table = e.table;
        if table == 0 {
            continue;
        }
        if e.guid == ACPI_20_TABLE_GUID {
            return Ok(EfiRsdp {
                rsdp: table,
                acpi20: true,
                config,
                config_from,
                entries,
            });
        }
        if e.guid == ACPI_TABLE_GUID && acpi10.is_none() {
            acpi10 = Some(table);
        }
    }
    acpi10
        .map(|rsdp| EfiRsdp {
            rsdp,
            acpi20: false,
            config,
            config_from,
            entries,
        })
        .ok_or(EfiError::NoAcpiEntry { entries })
}

/// `efi_setup_data.tables` when the node is long enough and names a table; else `None` (the
/// system table's own field is the fallback, as in Linux).
fn setup_tables(mem: &impl PhysMem, setup_efi: Option<PhysRange>) -> Option<u64> {
    let data = setup_efi?;
    if data.len < size_of::<EfiSetupData>() as u64 {
        return None;
    }
    let esd: EfiSetupData = read_struct(mem, data.start).ok()?;
    Some(esd.tables).filter(|&t| t != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeMem;
    use zerocopy::IntoBytes;

    const SYSTAB: u64 = 0x7f00_0000;
    const VIRT_TABLES: u64 = 0xffff_ffef_0000_1000;
    const CONFIG: u64 = 0x7f10_0000;
    const SETUP: u64 = 0x9000;

    fn systab(entries: u32, tables: u64) -> EfiSystemTable64 {
        let mut st = EfiSystemTable64::default();
        st.hdr.signature = EFI_SYSTEM_TABLE_SIGNATURE;
        st.nr_tables = entries;
        st.tables = tables;
        st
    }

    fn config(entries: &[([u8; 16], u64)]) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        for &(guid, table) in entries {
            v.extend_from_slice(EfiConfigTable64 { guid, table }.as_bytes());
        }
        v
    }

    fn esd(tables: u64) -> EfiSetupData {
        EfiSetupData {
            tables,
            ..EfiSetupData::default()
        }
    }

    const OTHER: [u8; 16] = [7; 16];

    #[test]
    fn guids_match_their_text_form() {
        // 8868e871-e4f1-11d3-bc22-0080c73c8881 as stored: first three groups little-endian.
        assert_eq!(
            ACPI_20_TABLE_GUID,
            [
                0x71, 0xe8, 0x68, 0x88, 0xf1, 0xe4, 0xd3, 0x11, 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c,
                0x88, 0x81
            ]
        );
        assert_eq!(&ACPI_TABLE_GUID[..4], &[0x30, 0x2d, 0x9d, 0xeb]);
    }

    #[test]
    fn kexec_setup_data_wins_over_virtual_systab_pointer() {
        let st = systab(3, VIRT_TABLES);
        let cfg = config(&[
            (OTHER, 0x1234),
            (ACPI_TABLE_GUID, 0xe_0000),
            (ACPI_20_TABLE_GUID, 0x7fbf_e014),
        ]);
        let sd = esd(CONFIG);
        let mem = FakeMem::new()
            .with(SYSTAB, st.as_bytes())
            .with(CONFIG, &cfg)
            .with(SETUP, sd.as_bytes());
        let r = find_acpi_rsdp(
            &mem,
            Some(SYSTAB),
            true,
            Some(PhysRange::new(SETUP, size_of::<EfiSetupData>() as u64)),
        )
        .unwrap();
        assert_eq!(r.rsdp, 0x7fbf_e014);
        assert!(r.acpi20);
        assert_eq!(r.config_from, ConfigFrom::SetupData);
        assert_eq!(r.config, CONFIG);
        assert_eq!(r.entries, 3);
        // Without the node the virtual pointer is used and unreadable: a typed error, no panic.
        assert!(matches!(
            find_acpi_rsdp(&mem, Some(SYSTAB), true, None),
            Err(EfiError::ConfigUnreadable(_))
        ));
    }

    #[test]
    fn systab_tables_and_acpi10_fallback() {
        let st = systab(2, CONFIG);
        let cfg = config(&[(OTHER, 1), (ACPI_TABLE_GUID, 0xe_0000)]);
        let mem = FakeMem::new()
            .with(SYSTAB, st.as_bytes())
            .with(CONFIG, &cfg);
        let r = find_acpi_rsdp(&mem, Some(SYSTAB), true, None).unwrap();
        assert_eq!((r.rsdp, r.acpi20), (0xe_0000, false));
        assert_eq!(r.config_from, ConfigFrom::SystemTable);
        // A short SETUP_EFI node or one with tables=0 falls back to the system table.
        let short = esd(0x5555);
        let zero = esd(0);
        let mem2 = mem
            .with(SETUP, short.as_bytes())
            .with(0xa000, zero.as_bytes());
        for range in [PhysRange::new(SETUP, 16), PhysRange::new(0xa000, 96)] {
            let r = find_acpi_rsdp(&mem2, Some(SYSTAB), true, Some(range)).unwrap();
            assert_eq!(r.config_from, ConfigFrom::SystemTable);
        }
    }

    #[test]
    fn hostile_tables_give_typed_errors() {
        let mem = FakeMem::new();
        assert_eq!(
            find_acpi_rsdp(&mem, None, true, None),
            Err(EfiError::NoSystemTable)
        );
        assert_eq!(
            find_acpi_rsdp(&mem, Some(SYSTAB), false, None),
            Err(EfiError::Efi32)
        );
        assert!(matches!(
            find_acpi_rsdp(&mem, Some(SYSTAB), true, None),
            Err(EfiError::SystabUnreadable(_))
        ));
        let mut bad = systab(1, CONFIG);
        bad.hdr.signature = 0x1122;
        let m = FakeMem::new().with(SYSTAB, bad.as_bytes());
        assert_eq!(
            find_acpi_rsdp(&m, Some(SYSTAB), true, None),
            Err(EfiError::BadSignature { found: 0x1122 })
        );
        for n in [0, MAX_CONFIG_TABLES + 1, u32::MAX] {
            let st = systab(n, CONFIG);
            let m = FakeMem::new().with(SYSTAB, st.as_bytes());
            assert_eq!(
                find_acpi_rsdp(&m, Some(SYSTAB), true, None),
                Err(EfiError::BadEntryCount { entries: n })
            );
        }
        for addr in [0, u64::MAX - 8] {
            let st = systab(4, addr);
            let m = FakeMem::new().with(SYSTAB, st.as_bytes());
            assert_eq!(
                find_acpi_rsdp(&m, Some(SYSTAB), true, None),
                Err(EfiError::BadConfigAddress { addr })
            );
        }
        // No ACPI GUID, or one whose table address is zero.
        let st = systab(2, CONFIG);
        let cfg = config(&[(OTHER, 1), (ACPI_20_TABLE_GUID, 0)]);
        let m = FakeMem::new()
            .with(SYSTAB, st.as_bytes())
            .with(CONFIG, &cfg);
        assert_eq!(
            find_acpi_rsdp(&m, Some(SYSTAB), true, None),
            Err(EfiError::NoAcpiEntry { entries: 2 })
        );
        // The count says more entries than memory holds: the read fails, bounded.
        let st = systab(MAX_CONFIG_TABLES, CONFIG);
        let m = FakeMem::new()
            .with(SYSTAB, st.as_bytes())
            .with(CONFIG, &cfg);
        assert!(matches!(
            find_acpi_rsdp(&m, Some(SYSTAB), true, None),
            Err(EfiError::ConfigUnreadable(_))
        ));
    }
}
