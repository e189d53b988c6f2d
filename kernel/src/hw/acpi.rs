//! ACPI hardware access: the `acpi` crate's handler over rkdump's identity map, the RSDP checks,
//! the DSDT's AML bytes, and the FADT's I/O ports (PM1 control blocks, PM timer) as handles only
//! this module can create from the FADT.

use core::ptr::NonNull;

use acpi::address::{AddressSpace, GenericAddress};
use acpi::rsdp::Rsdp;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use rkdump_devices::hw::port::{inl, outw};

use super::mem;
use crate::arch::paging::{self, Cache};

/// Identity-map handler: rkdump's virtual addresses equal physical ones. Firmware tables are
/// trusted to lie outside rkdump's own memory (they sit in ACPI or reserved E820 regions, which
/// the frame allocator never hands out), but not to lie below the physical address limit: a table
/// pointer beyond it, or a table whose own length runs past it, gets [`REFUSED`] instead (zeros,
/// which no table signature matches, so the `acpi` crate skips it as invalid).
#[derive(Clone, Copy, Debug)]
pub struct IdentityHandler;

/// What a refused mapping reads: zeros, one page (requests larger than this are never answered
/// with it; see `map_physical_region`).
#[repr(C, align(4096))]
struct Refused([u8; 4096]);

static REFUSED: Refused = Refused([0; 4096]);

/// `size_of::<SdtHeader>()`: the `acpi` crate maps an SDT's header first and the whole table
/// (`length` bytes) only after the header validated.
const SDT_HEADER_LEN: usize = 36;

/// Whether `[phys, phys + len)` can be identity-mapped: below the limit (mapped write-back here).
fn map_table(phys: u64, len: u64) -> bool {
    // Firmware tables sit in RAM-like regions; mapping write-back is what Linux does too.
    paging::map(phys, len, Cache::WriteBack).is_ok()
}

/// Whether the request for `size` bytes at `phys` is an SDT header whose table runs past the
/// limit (the RSDP, also 36 bytes, is told apart by its signature). Refusing the header makes the
/// crate drop the table before it asks for a length rkdump could not map.
fn header_of_unmappable_table(phys: u64, size: usize) -> bool {
    if size != SDT_HEADER_LEN {
        return false;
    }
    // SAFETY: the caller mapped `[phys, phys + 36)` just before; 8 bytes are read by value.
    let head = unsafe { core::ptr::read_unaligned(phys as *const [u8; 8]) };
    if &head == b"RSD PTR " {
        return false;
    }
    let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    paging::phys_limit()
        .check(phys, u64::from(length).max(SDT_HEADER_LEN as u64))
        .is_err()
}

impl AcpiHandler for IdentityHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let phys = physical_address as u64;
        let mapped = map_table(phys, size as u64) && !header_of_unmappable_table(phys, size);
        if !mapped && size <= REFUSED.0.len() && align_of::<T>() <= 4096 {
            let ptr = NonNull::from(&REFUSED.0).cast::<T>();
            // SAFETY: REFUSED is a static, page-aligned, never-written page of zeros covering the
            // `size` bytes asked for; the crate only reads through the mapping.
            return unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) };
        }
        // Either mapped, or a refused request larger than a page. The crate asks for more than a
        // page only for a whole table after its header validated at the same address, and a
        // header whose table runs past the limit is refused above, so the second case does not
        // arise; were it to, the access faults and the exception report ends the run.
        // Identity mapping: after `map` the physical address is the pointer. A zero address
        // would be a firmware bug; it becomes a dangling-but-never-null pointer.
        let ptr = NonNull::new(physical_address as *mut T).unwrap_or(NonNull::dangling());
        // SAFETY: the region is identity-mapped above and `size` is what the caller asked for;
        // the caller (the `acpi` crate) guarantees a `T` lives there.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The legacy BIOS-area scan for the RSDP.
pub fn bios_rsdp() -> Option<u64> {
    // SAFETY: the scan reads the BDA's EBDA pointer and the 0xE0000..0xFFFFF BIOS area, which
    // are identity-mapped RAM/ROM on every PC; it only reads and checks signature and checksum.
    unsafe { Rsdp::search_for_on_bios(IdentityHandler) }
        .ok()
        .map(|m| m.physical_start() as u64)
}

/// Whether a valid RSDP (signature, checksums) sits at `addr` (never in rkdump's own memory,
/// never beyond the physical address limit: `acpi_rsdp=` and the boot data are foreign).
pub fn rsdp_valid(addr: u64) -> bool {
    let size = core::mem::size_of::<Rsdp>() as u64;
    match paging::phys_limit().check(addr, size) {
        Ok(end) if addr != 0 && !mem::is_rkdump_memory(addr, end) => {}
        _ => return false,
    }
    // SAFETY: `addr` is not memory rkdump's code references (checked above); the mapping only
    // reads `size_of::<Rsdp>()` bytes there through the identity map and does not escape this
    // function; `validate` checks signature and checksum before anything trusts the contents.
    let mapping = unsafe {
        IdentityHandler.map_physical_region::<Rsdp>(addr as usize, core::mem::size_of::<Rsdp>())
    };
    mapping.validate().is_ok()
}

/// The tables behind the RSDP at `rsdp`, which is validated first.
pub fn tables(rsdp: u64) -> Result<AcpiTables<IdentityHandler>, acpi::AcpiError> {
    if !rsdp_valid(rsdp) {
        return Err(acpi::AcpiError::RsdpIncorrectSignature);
    }
    // SAFETY: a valid RSDP (signature and checksums just checked) sits at `rsdp`.
    unsafe { AcpiTables::from_rsdp(IdentityHandler, rsdp as usize) }
}

/// Runs `f` over the DSDT's bytes (header and AML), if the FADT names a DSDT under 16 MiB.
pub fn with_dsdt<R>(tables: &AcpiTables<IdentityHandler>, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let dsdt = tables.dsdt().ok()?;
    let len = dsdt.length as usize;
    let end = (dsdt.address as u64).checked_add(len as u64)?;
    if len >= 16 << 20 || mem::is_rkdump_memory(dsdt.address as u64, end) {
        return None;
    }
    paging::map(dsdt.address as u64, len as u64, Cache::WriteBack).ok()?;
    // SAFETY: the FADT of validated tables names the DSDT and its header gives the length: that
    // many bytes of firmware table memory, not rkdump's (checked above), mapped just above, only
    // read, and the slice lives only for the call of `f`.
    let bytes = unsafe { core::slice::from_raw_parts(dsdt.address as *const u8, len) };
    Some(f(bytes))
}

/// Runs `f` over the MADT's bytes (header and entries), if the tables have a MADT under 1 MiB.
pub fn with_madt<R>(tables: &AcpiTables<IdentityHandler>, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let madt = tables.find_table::<acpi::madt::Madt>().ok()?;
    let addr = madt.physical_start() as u64;
    let len = acpi::AcpiTable::header(&*madt.get()).length as usize;
    drop(madt);
    let end = addr.checked_add(len as u64)?;
    if len >= 1 << 20 || mem::is_rkdump_memory(addr, end) {
        return None;
    }
    paging::map(addr, len as u64, Cache::WriteBack).ok()?;
    // SAFETY: the RSDT/XSDT of validated tables names the MADT and its checked header gives the
    // length: that many bytes of firmware table memory, not rkdump's (checked above), mapped just
    // above, only read, and the slice lives only for the call of `f`.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    Some(f(bytes))
}

/// An ACPI PM1 control block (I/O port) named by the FADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pm1Control(u16);

/// The ACPI PM timer (3.579545 MHz, I/O port) named by the FADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    port: u16,
    wide: bool,
}

/// The FADT's I/O ports rkdump uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct FadtPorts {
    /// PM1a control block.
    pub pm1a_cnt: Option<Pm1Control>,
    /// PM1b control block.
    pub pm1b_cnt: Option<Pm1Control>,
    /// PM timer.
    pub pm_timer: Option<PmTimer>,
}

fn io_port(g: GenericAddress) -> Option<u16> {
    match g.address_space {
        AddressSpace::SystemIo => u16::try_from(g.address).ok(),
        _ => None,
    }
}

/// Reads the FADT's PM1 control blocks and PM timer (system I/O space only).
pub fn fadt_ports(tables: &AcpiTables<IdentityHandler>) -> FadtPorts {
    let Ok(fadt) = tables.find_table::<acpi::fadt::Fadt>() else {
        return FadtPorts::default();
    };
    let flags = fadt.flags;
    let wide = flags.pm_timer_is_32_bit();
    FadtPorts {
        pm1a_cnt: fadt
            .pm1a_control_block()
            .ok()
            .and_then(io_port)
            .map(Pm1Control),
        pm1b_cnt: fadt
            .pm1b_control_block()
            .ok()
            .flatten()
            .and_then(io_port)
            .map(Pm1Control),
        pm_timer: fadt
            .pm_timer_block()
            .ok()
            .flatten()
            .and_then(io_port)
            .map(|port| PmTimer { port, wide }),
    }
}

impl Pm1Control {
    /// The I/O port.
    pub fn port(self) -> u16 {
        self.0
    }

    /// Writes `SLP_TYP = slp_typ` with `SLP_EN`: enters that sleep state (S5 for rkdump).
    pub fn sleep(self, slp_typ: u16) {
        const SLP_EN: u16 = 1 << 13;
        // SAFETY: the port is the FADT's PM1 control block; writing SLP_TYP|SLP_EN is the
        // ACPI-defined way to enter a sleep state, which is the caller's intent.
        unsafe { outw(self.0, (slp_typ << 10) | SLP_EN) };
    }
}

impl PmTimer {
    /// The I/O port.
    pub fn port(self) -> u16 {
        self.port
    }

    /// Whether the counter is 32 bits wide (else 24).
    pub fn wide(self) -> bool {
        self.wide
    }

    /// Reads the counter, masked to its width.
    pub fn read(self) -> u32 {
        // SAFETY: the port is the FADT's PM_TMR_BLK; reading it has no side effects.
        let v = unsafe { inl(self.port) };
        if self.wide { v } else { v & 0x00FF_FFFF }
    }
}

/// The DMAR table's header, for [`AcpiTables::find_table`] (the body is parsed from a copy by
/// `rkdump_devices::iommu::dmar`).
#[repr(C, packed)]
pub struct DmarHeader {
    header: acpi::sdt::SdtHeader,
}

// SAFETY: `DmarHeader` is exactly the SDT header every table starts with, and its signature is
// the DMAR one; the crate checks both (and the checksum over `length`) before handing it out.
unsafe impl acpi::AcpiTable for DmarHeader {
    const SIGNATURE: acpi::sdt::Signature = acpi::sdt::Signature::DMAR;
    fn header(&self) -> &acpi::sdt::SdtHeader {
        &self.header
    }
}

/// The IVRS table's header (AMD-Vi), like [`DmarHeader`].
#[repr(C, packed)]
pub struct IvrsHeader {
    header: acpi::sdt::SdtHeader,
}

// SAFETY: as for `DmarHeader`, with the IVRS signature.
unsafe impl acpi::AcpiTable for IvrsHeader {
    const SIGNATURE: acpi::sdt::Signature = acpi::sdt::Signature::IVRS;
    fn header(&self) -> &acpi::sdt::SdtHeader {
        &self.header
    }
}

/// Where table `T` sits (physical address, length from its validated header), if present.
pub fn table_location<T: acpi::AcpiTable>(
    tables: &AcpiTables<IdentityHandler>,
) -> Option<(u64, u32)> {
    let t = tables.find_table::<T>().ok()?;
    let len = t.region_length() as u32;
    Some((t.physical_start() as u64, len))
}
