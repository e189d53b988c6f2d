//! The one normalised boot-info model, filled from a Linux zero page (kexec) or a PVH start info.
//!
//! Both entry paths produce the same [`BootInfo`]: command line, memory map, initrd, RSDP,
//! setup_data records and the list of ranges the frame allocator must never hand out. Anything odd
//! in loader data becomes a [`BootNote`] for the console, not an error; only an unreadable zero page
//! or start info (or a bad PVH magic) fails. See docs/boot-contract.md
//! (#zero-page, #setup_data, #e820, #pvh-start-info).

use core::fmt;

use crate::bootparam::{
    BootE820Entry, BootParams, E820_MAX_ENTRIES_ZEROPAGE, HDRS_MAGIC, SETUP_E820_EXT, SETUP_EFI,
    SETUP_INDIRECT, SetupData, SetupIndirect,
};
use crate::cmdline::{CMDLINE_CAPACITY, CmdlineBuf};
use crate::mem::{PhysMem, PhysMemError, PhysRange, read_struct};
use crate::memmap::{MemoryMap, MemoryMapError};
pub mod efi;

use crate::pvh::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE};

/// The walk of the setup_data chain stops after this many nodes.
pub const SETUP_DATA_HOP_LIMIT: usize = 64;
/// Maximum number of setup_data records kept.
pub const SETUP_DATA_CAPACITY: usize = SETUP_DATA_HOP_LIMIT;
/// Maximum number of reserved ranges kept.
pub const RESERVED_CAPACITY: usize = 160;
/// Maximum number of PVH modules kept.
pub const PVH_MODULE_CAPACITY: usize = 8;
/// Maximum number of boot notes kept.
pub const NOTE_CAPACITY: usize = 32;
/// Entries read from one SETUP_E820_EXT record or one PVH memory map at most (kexec-tools: 1024).
pub const MAX_TABLE_ENTRIES: u64 = 1024;

/// Size of the zero page.
const ZERO_PAGE_SIZE: u64 = 4096;

/// Which entry path delivered the boot information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootSource {
    /// 64-bit Linux boot protocol: RSI = zero page (kexec, kexec_file_load).
    LinuxZeroPage,
    /// PVH: EBX = `hvm_start_info` (QEMU `-kernel` with an ELF PVH note).
    Pvh,
}

/// One setup_data record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupDataRecord {
    /// `SETUP_*` type; for an indirect record the target's type without [`SETUP_INDIRECT`].
    pub type_: u32,
    /// Physical address of the node header.
    pub node: u64,
    /// The payload: the bytes after the header, or the indirect target.
    pub data: PhysRange,
    /// Whether the payload was reached through a `setup_indirect`.
    pub indirect: bool,
}

/// What a reserved range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservedKind {
    /// The 4 KiB zero page.
    ZeroPage,
    /// The command line.
    Cmdline,
    /// The initrd (rkdump's config blob).
    Initrd,
    /// A setup_data node (header and data).
    SetupData,
    /// The target of a `setup_indirect`.
    SetupIndirect,
    /// The PVH `hvm_start_info`.
    PvhStartInfo,
    /// The PVH module list.
    PvhModlist,
    /// The PVH memory map table.
    PvhMemmap,
    /// A PVH module.
    PvhModule,
}

/// A range the frame allocator must never hand out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The range.
    pub range: PhysRange,
    /// What it holds.
    pub kind: ReservedKind,
}

/// A PVH module (`hvm_modlist_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvhModule {
    /// Where the module is.
    pub range: PhysRange,
    /// Its command line (0 = none).
    pub cmdline_paddr: u64,
}

/// Why the setup_data walk stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupDataStop {
    /// A node was visited twice.
    Cycle {
        /// The repeated node.
        node: u64,
    },
    /// More than [`SETUP_DATA_HOP_LIMIT`] nodes.
    HopLimit,
    /// A node header could not be read.
    Unreadable(PhysMemError),
}

/// Something unusual in the loader's data, reported on the console; parsing went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootNote {
    /// The zero page lacks "HdrS" at 0x202 (the pointer may be wrong).
    HeaderMagicMissing {
        /// Value found.
        found: u32,
    },
    /// The command line could not be read (completely).
    CmdlineUnreadable(PhysMemError),
    /// The command line had no NUL within 4095 bytes and was cut.
    CmdlineTruncated {
        /// Its address.
        addr: u64,
    },
    /// The initrd's address + size overflows.
    InitrdInvalid {
        /// Address given.
        addr: u64,
        /// Size given.
        size: u64,
    },
    /// `e820_entries` above 128 was clamped.
    E820EntriesClamped {
        /// Value found.
        raw: u8,
    },
    /// A memory map entry overflowed or did not fit.
    MemoryMap(MemoryMapError),
    /// An e820 entry or PVH memory map entry could not be read.
    MemoryMapUnreadable(PhysMemError),
    /// A table (SETUP_E820_EXT, PVH memory map) had more than [`MAX_TABLE_ENTRIES`] entries.
    TableClamped {
        /// Where the table is.
        addr: u64,
        /// Entries it claimed.
        entries: u64,
    },
    /// The setup_data walk stopped early.
    SetupDataStopped(SetupDataStop),
    /// A setup_data node's length is inconsistent with its type or overflows.
    SetupDataBadLength {
        /// The node.
        node: u64,
        /// Its `len`.
        len: u32,
    },
    /// A PVH start info of version 0 has no memory map.
    PvhNoMemmap,
    /// A PVH module list entry could not be read or overflows.
    PvhModuleInvalid {
        /// Module index.
        index: u32,
    },
    /// A fixed-capacity list was full; later items were dropped.
    ListFull {
        /// Which list.
        what: &'static str,
    },
}

impl fmt::Display for BootNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::HeaderMagicMissing { found } => {
                write!(f, "zero page has no HdrS magic (found {found:#010x})")
            }
            Self::CmdlineUnreadable(e) => write!(f, "command line: {e}"),
            Self::CmdlineTruncated { addr } => {
                write!(
                    f,
                    "command line at {addr:#x} cut at {} bytes",
                    CMDLINE_CAPACITY - 1
                )
            }
            Self::InitrdInvalid { addr, size } => {
                write!(f, "initrd {addr:#x}+{size:#x} overflows; ignored")
            }
            Self::E820EntriesClamped { raw } => write!(f, "e820_entries = {raw}, clamped to 128"),
            Self::MemoryMap(e) => write!(f, "{e}"),
            Self::MemoryMapUnreadable(e) => write!(f, "memory map entry: {e}"),
            Self::TableClamped { addr, entries } => write!(
                f,
                "table at {addr:#x} claims {entries} entries; only {MAX_TABLE_ENTRIES} read"
            ),
            Self::SetupDataStopped(SetupDataStop::Cycle { node }) => {
                write!(f, "setup_data chain loops back to {node:#x}; walk stopped")
            }
            Self::SetupDataStopped(SetupDataStop::HopLimit) => write!(
                f,
                "setup_data chain longer than {SETUP_DATA_HOP_LIMIT} nodes; walk stopped"
            ),
            Self::SetupDataStopped(SetupDataStop::Unreadable(e)) => {
                write!(f, "setup_data node: {e}; walk stopped")
            }
            Self::SetupDataBadLength { node, len } => {
                write!(f, "setup_data node at {node:#x} has bad length {len:#x}")
            }
            Self::PvhNoMemmap => f.write_str("PVH start info version 0 has no memory map"),
            Self::PvhModuleInvalid { index } => {
                write!(f, "PVH module {index} unreadable or invalid")
            }
            Self::ListFull { what } => write!(f, "too many {what}; the rest were dropped"),
        }
    }
}

/// Why boot information could not be parsed at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The zero page could not be read.
    ZeroPageUnreadable(PhysMemError),
    /// The PVH start info could not be read.
    StartInfoUnreadable(PhysMemError),
    /// The PVH start info magic is wrong.
    BadPvhMagic {
        /// Value found.
        found: u32,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroPageUnreadable(e) => write!(f, "zero page: {e}"),
            Self::StartInfoUnreadable(e) => write!(f, "PVH start info: {e}"),
            Self::BadPvhMagic { found } => write!(
                f,
                "PVH start info magic {found:#010x}, expected {XEN_HVM_START_MAGIC_VALUE:#010x}"
            ),
        }
    }
}

/// A fixed-capacity list that counts what did not fit.
#[derive(Clone, Debug)]
struct FixedList<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
    dropped: u32,
}

impl<T: Copy, const N: usize> FixedList<T, N> {
    const fn new(filler: T) -> Self {
        Self {
            items: [filler; N],
            len: 0,
            dropped: 0,
        }
    }

    /// Appends; returns false (and counts) when full.
    fn push(&mut self, item: T) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                true
            }
            None => {
                self.dropped = self.dropped.saturating_add(1);
                false
            }
        }
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
        self.dropped = 0;
    }
}

/// The target of a `SETUP_INDIRECT` node's `setup_indirect` as (real type, range), if well-formed:
/// the inner type must carry the indirect bit plus a real type.
fn read_indirect(mem: &impl PhysMem, data: PhysRange) -> Option<(u32, PhysRange)> {
    if data.len < size_of::<SetupIndirect>() as u64 {
        return None;
    }
    let ind: SetupIndirect = read_struct(mem, data.start).ok()?;
    let inner = ind.type_;
    if inner & SETUP_INDIRECT == 0 || inner == SETUP_INDIRECT {
        return None;
    }
    Some((
        inner & !SETUP_INDIRECT,
        PhysRange::try_new(ind.addr, ind.len)?,
    ))
}

/// Appends to `list`, noting the first item that does not fit.
fn push_noted<T: Copy, const N: usize>(
    list: &mut FixedList<T, N>,
    notes: &mut FixedList<BootNote, NOTE_CAPACITY>,
    item: T,
    what: &'static str,
) {
    if !list.push(item) && list.dropped == 1 {
        notes.push(BootNote::ListFull { what });
    }
}

/// Normalised boot information (see the module docs).
#[derive(Clone, Debug)]
pub struct BootInfo {
    source: BootSource,
    cmdline: CmdlineBuf,
    memory_map: MemoryMap,
    initrd: Option<PhysRange>,
    acpi_rsdp: Option<u64>,
    efi_systab: Option<u64>,
    efi_64: bool,
    setup_data: FixedList<SetupDataRecord, SETUP_DATA_CAPACITY>,
    reserved: FixedList<Reservation, RESERVED_CAPACITY>,
    pvh_modules: FixedList<PvhModule, PVH_MODULE_CAPACITY>,
    notes: FixedList<BootNote, NOTE_CAPACITY>,
}

impl Default for BootInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl BootInfo {
    /// Empty boot information, e.g. for a `static` to be filled in place with
    /// [`BootInfo::load_zero_page`] / [`BootInfo::load_pvh`] (the struct is ~24 KiB;
    /// loading in place keeps it off the stack).
    pub const fn new() -> Self {
        const EMPTY: PhysRange = PhysRange::new(0, 0);
        Self {
            source: BootSource::LinuxZeroPage,
            cmdline: CmdlineBuf::new(),
            memory_map: MemoryMap::new(),
            initrd: None,
            acpi_rsdp: None,
            efi_systab: None,
            efi_64: false,
            setup_data: FixedList::new(SetupDataRecord {
                type_: 0,
                node: 0,
                data: EMPTY,
                indirect: false,
            }),
            reserved: FixedList::new(Reservation {
                range: EMPTY,
                kind: ReservedKind::ZeroPage,
            }),
            pvh_modules: FixedList::new(PvhModule {
                range: EMPTY,
                cmdline_paddr: 0,
            }),
            notes: FixedList::new(BootNote::PvhNoMemmap),
        }
    }

    /// Parses the Linux zero page at `zero_page_phys` (RSI at the 64-bit entry).
    pub fn from_zero_page(zero_page_phys: u64, mem: &impl PhysMem) -> Result<Self, BootError> {
        let mut info = Self::new();
        info.load_zero_page(zero_page_phys, mem)?;
        Ok(info)
    }

    /// Parses the PVH start info at `start_info_phys` (EBX at the PVH entry).
    pub fn from_pvh(start_info_phys: u64, mem: &impl PhysMem) -> Result<Self, BootError> {
        let mut info = Self::new();
        info.load_pvh(start_info_phys, mem)?;
        Ok(info)
    }

    /// In-place form of [`BootInfo::from_zero_page`]; on error `self` is unchanged.
    ///
    /// 64-bit pointers come from the `ext_*` fields; `boot_flag` is not checked (kexec zeroes byte
    /// 0x1FF); e820 is `e820_table` plus every SETUP_E820_EXT record.
    pub fn load_zero_page(
        &mut self,
        zero_page_phys: u64,
        mem: &impl PhysMem,
    ) -> Result<(), BootError> {
        let bp: BootParams =
            read_struct(mem, zero_page_phys).map_err(BootError::ZeroPageUnreadable)?;
        self.reset(BootSource::LinuxZeroPage);
        self.reserve(zero_page_phys, ZERO_PAGE_SIZE, ReservedKind::ZeroPage);

        let hdr = bp.hdr;
        if hdr.header != HDRS_MAGIC {
            self.note(BootNote::HeaderMagicMissing { found: hdr.header });
        }
        self.load_cmdline(mem, bp.cmdline_addr());

        let (addr, size) = (bp.initrd_addr(), bp.initrd_size());
        if addr != 0 && size != 0 {
            match PhysRange::try_new(addr, size) {
                Some(range) => {
                    self.initrd = Some(range);
                    self.reserve(addr, size, ReservedKind::Initrd);
                }
                None => self.note(BootNote::InitrdInvalid { addr, size }),
            }
        }
        self.acpi_rsdp = Some(bp.acpi_rsdp_addr).filter(|&a| a != 0);
        self.efi_systab = bp.efi_systab();
        self.efi_64 = bp.efi_64();

        let mut entries = usize::from(bp.e820_entries);
        if entries > E820_MAX_ENTRIES_ZEROPAGE {
            self.note(BootNote::E820EntriesClamped {
                raw: bp.e820_entries,
            });
            entries = E820_MAX_ENTRIES_ZEROPAGE;
        }
        for e in &bp.e820_table[..entries] {
            self.add_e820(e.addr, e.size, e.type_);
        }
        self.walk_setup_data(mem, hdr.setup_data);
        Ok(())
    }

    /// In-place form of [`BootInfo::from_pvh`]; on error `self` is unchanged.
    ///
    /// The first module is the initrd, as in Linux's PVH code.
    pub fn load_pvh(&mut self, start_info_phys: u64, mem: &impl PhysMem) -> Result<(), BootError> {
        let si: HvmStartInfo =
            read_struct(mem, start_info_phys).map_err(BootError::StartInfoUnreadable)?;
        if si.magic != XEN_HVM_START_MAGIC_VALUE {
            return Err(BootError::BadPvhMagic { found: si.magic });
        }
        self.reset(BootSource::Pvh);
        self.reserve(
            start_info_phys,
            size_of::<HvmStartInfo>() as u64,
            ReservedKind::PvhStartInfo,
        );
        self.load_cmdline(mem, si.cmdline_paddr);
        self.acpi_rsdp = Some(si.rsdp_paddr).filter(|&a| a != 0);

        if si.version == 0 || si.memmap_paddr == 0 {
            self.note(BootNote::PvhNoMemmap);
        } else {
            self.load_pvh_memmap(mem, si.memmap_paddr, si.memmap_entries);
        }
        if si.nr_modules != 0 && si.modlist_paddr != 0 {
            self.load_pvh_modules(mem, si.modlist_paddr, si.nr_modules);
        }
        Ok(())
    }

    fn load_pvh_memmap(&mut self, mem: &impl PhysMem, table: u64, entries: u32) {
        let n = self.clamp_table(table, u64::from(entries));
        let entry_size = size_of::<HvmMemmapTableEntry>() as u64;
        self.reserve(table, n * entry_size, ReservedKind::PvhMemmap);
        for i in 0..n {
            let Some(at) = table.checked_add(i * entry_size) else {
                break;
            };
            match read_struct::<HvmMemmapTableEntry>(mem, at) {
                Ok(e) => self.add_e820(e.addr, e.size, e.type_),
                Err(err) => {
                    self.note(BootNote::MemoryMapUnreadable(err));
                    break;
                }
            }
        }
    }

    /// Records and reserves the modules; the first non-empty module 0 is the initrd.
    fn load_pvh_modules(&mut self, mem: &impl PhysMem, modlist: u64, count: u32) {
        let n = self.clamp_table(modlist, u64::from(count));
        let entry_size = size_of::<HvmModlistEntry>() as u64;
        self.reserve(modlist, n * entry_size, ReservedKind::PvhModlist);
        for index in 0..n {
            let entry = modlist
                .checked_add(index * entry_size)
                .and_then(|at| read_struct::<HvmModlistEntry>(mem, at).ok());
            let Some(range) = entry.and_then(|m| PhysRange::try_new(m.paddr, m.size)) else {
                self.note(BootNote::PvhModuleInvalid {
                    index: index as u32,
                });
                continue;
            };
            if index == 0 && !range.is_empty() {
                self.initrd = Some(range);
            }
            self.reserve(range.start, range.len, ReservedKind::PvhModule);
            let cmdline_paddr = entry.map_or(0, |m| m.cmdline_paddr);
            let module = PvhModule {
                range,
                cmdline_paddr,
            };
            push_noted(
                &mut self.pvh_modules,
                &mut self.notes,
                module,
                "PVH modules",
            );
        }
    }

    /// Empties every field without building a temporary (keeps the kernel's stack small).
    fn reset(&mut self, source: BootSource) {
        self.source = source;
        self.cmdline.clear();
        self.memory_map.clear();
        self.initrd = None;
        self.acpi_rsdp = None;
        self.efi_systab = None;
        self.efi_64 = false;
        self.setup_data.clear();
        self.reserved.clear();
        self.pvh_modules.clear();
        self.notes.clear();
    }

    /// Copies the NUL-terminated command line at `addr` (0 = none) and reserves it.
    fn load_cmdline(&mut self, mem: &impl PhysMem, addr: u64) {
        const CHUNK: u64 = 64;
        const CAP: u64 = CMDLINE_CAPACITY as u64;
        if addr == 0 {
            return;
        }
        let (mut read, mut nul, mut failed) = (0u64, false, None);
        while read < CAP && !nul && failed.is_none() {
            let Some(at) = addr.checked_add(read) else {
                failed = Some(PhysMemError {
                    addr: u64::MAX,
                    len: 1,
                });
                break;
            };
            // Chunks end at 64-byte boundaries; after a failed chunk, retry byte by byte so the
            // line may end right before unreadable memory.
            let n = (CHUNK - at % CHUNK).min(CAP - read) as usize;
            let mut buf = [0u8; CHUNK as usize];
            let chunk = &mut buf[..n];
            let mut got = n;
            if mem.read(at, chunk).is_err() {
                got = (0..n)
                    .take_while(|&i| mem.read(at + i as u64, &mut chunk[i..=i]).is_ok())
                    .count();
                if got < n && !chunk[..got].contains(&0) {
                    failed = Some(PhysMemError {
                        addr: at + got as u64,
                        len: 1,
                    });
                }
            }
            let text = match chunk[..got].iter().position(|&b| b == 0) {
                Some(end) => {
                    nul = true;
                    &chunk[..end + 1]
                }
                None => &chunk[..got],
            };
            read += text.len() as u64;
            self.cmdline.push(text.strip_suffix(&[0]).unwrap_or(text));
        }
        match failed {
            Some(err) => self.note(BootNote::CmdlineUnreadable(err)),
            None if !nul => self.note(BootNote::CmdlineTruncated { addr }),
            None => {}
        }
        self.reserve(addr, read, ReservedKind::Cmdline);
    }

    fn add_e820(&mut self, addr: u64, size: u64, type_: u32) {
        if let Err(e) = self.memory_map.add_raw(addr, size, type_) {
            self.note(BootNote::MemoryMap(e));
        }
    }

    /// Limits a foreign table length to [`MAX_TABLE_ENTRIES`], noting it.
    fn clamp_table(&mut self, addr: u64, entries: u64) -> u64 {
        if entries > MAX_TABLE_ENTRIES {
            self.note(BootNote::TableClamped { addr, entries });
        }
        entries.min(MAX_TABLE_ENTRIES)
    }

    /// Walks the setup_data chain with a hop limit and cycle detection.
    fn walk_setup_data(&mut self, mem: &impl PhysMem, head: u64) {
        let mut visited = [0u64; SETUP_DATA_HOP_LIMIT];
        let mut next = head;
        let mut hops = 0;
        while next != 0 {
            let node = next;
            let stop = if hops == SETUP_DATA_HOP_LIMIT {
                Some(SetupDataStop::HopLimit)
            } else if visited[..hops].contains(&node) {
                Some(SetupDataStop::Cycle { node })
            } else {
                None
            };
            if let Some(stop) = stop {
                self.note(BootNote::SetupDataStopped(stop));
                return;
            }
            visited[hops] = node;
            hops += 1;
            let hdr: SetupData = match read_struct(mem, node) {
                Ok(hdr) => hdr,
                Err(e) => {
                    self.note(BootNote::SetupDataStopped(SetupDataStop::Unreadable(e)));
                    return;
                }
            };
            next = hdr.next;
            self.setup_data_node(mem, node, &hdr);
        }
    }

    /// Records and reserves one node; merges SETUP_E820_EXT entries into the memory map.
    fn setup_data_node(&mut self, mem: &impl PhysMem, node: u64, hdr: &SetupData) {
        let header_len = size_of::<SetupData>() as u64;
        let len = hdr.len;
        let data = node
            .checked_add(header_len)
            .and_then(|d| PhysRange::try_new(d, u64::from(len)));
        let Some(data) = data else {
            self.note(BootNote::SetupDataBadLength { node, len });
            self.reserve(node, header_len, ReservedKind::SetupData);
            return;
        };
        self.reserve(node, header_len + u64::from(len), ReservedKind::SetupData);

        let mut record = SetupDataRecord {
            type_: hdr.type_,
            node,
            data,
            indirect: false,
        };
        if hdr.type_ == SETUP_INDIRECT {
            match read_indirect(mem, data) {
                Some((type_, target)) => {
                    record = SetupDataRecord {
                        type_,
                        node,
                        data: target,
                        indirect: true,
                    };
                    self.reserve(target.start, target.len, ReservedKind::SetupIndirect);
                }
                None => self.note(BootNote::SetupDataBadLength { node, len }),
            }
        }
        push_noted(
            &mut self.setup_data,
            &mut self.notes,
            record,
            "setup_data records",
        );
        if record.type_ == SETUP_E820_EXT {
            self.load_e820_ext(mem, node, record.data);
        }
    }

    fn load_e820_ext(&mut self, mem: &impl PhysMem, node: u64, data: PhysRange) {
        let entry_size = size_of::<BootE820Entry>() as u64;
        if !data.len.is_multiple_of(entry_size) {
            self.note(BootNote::SetupDataBadLength {
                node,
                len: u32::try_from(data.len).unwrap_or(u32::MAX),
            });
        }
        let n = self.clamp_table(data.start, data.len / entry_size);
        for i in 0..n {
            match read_struct::<BootE820Entry>(mem, data.start + i * entry_size) {
                Ok(e) => self.add_e820(e.addr, e.size, e.type_),
                Err(err) => {
                    self.note(BootNote::MemoryMapUnreadable(err));
                    return;
                }
            }
        }
    }

    fn reserve(&mut self, start: u64, len: u64, kind: ReservedKind) {
        if len == 0 {
            return;
        }
        // Clip an overflowing range at the top of the address space (too much, not too little).
        let range = PhysRange::new(start, len.min(u64::MAX - start));
        let reservation = Reservation { range, kind };
        push_noted(
            &mut self.reserved,
            &mut self.notes,
            reservation,
            "reserved ranges",
        );
    }

    fn note(&mut self, note: BootNote) {
        self.notes.push(note);
    }

    /// Which entry path delivered this information.
    pub fn source(&self) -> BootSource {
        self.source
    }

    /// The command line (possibly empty or truncated).
    pub fn cmdline(&self) -> &CmdlineBuf {
        &self.cmdline
    }

    /// The normalised memory map.
    pub fn memory_map(&self) -> &MemoryMap {
        &self.memory_map
    }

    /// The initrd (rkdump's PCI config blob), if any.
    pub fn initrd(&self) -> Option<PhysRange> {
        self.initrd
    }

    /// The ACPI RSDP from the loader (zero page 0x70 or PVH `rsdp_paddr`); the command line's
    /// `acpi_rsdp=` and a legacy scan are the kernel's fallbacks.
    pub fn acpi_rsdp(&self) -> Option<u64> {
        self.acpi_rsdp
    }

    /// The EFI system table from `efi_info`, when an EFI loader signature is present.
    pub fn efi_systab(&self) -> Option<u64> {
        self.efi_systab
    }

    /// Whether `efi_info` says 64-bit EFI firmware ("EL64").
    pub fn efi_64(&self) -> bool {
        self.efi_64
    }

    /// The ACPI RSDP from the EFI configuration table ([`efi::find_acpi_rsdp`] over `efi_info`
    /// and the `SETUP_EFI` node).
    pub fn efi_acpi_rsdp(&self, mem: &impl PhysMem) -> Result<efi::EfiRsdp, efi::EfiError> {
        let setup = self.find_setup_data(SETUP_EFI).map(|r| r.data);
        efi::find_acpi_rsdp(mem, self.efi_systab, self.efi_64, setup)
    }

    /// The setup_data records in chain order.
    pub fn setup_data(&self) -> &[SetupDataRecord] {
        self.setup_data.as_slice()
    }

    /// The first setup_data record of this type (e.g. `SETUP_RNG_SEED`).
    pub fn find_setup_data(&self, type_: u32) -> Option<&SetupDataRecord> {
        self.setup_data().iter().find(|r| r.type_ == type_)
    }

    /// Everything the frame allocator must never hand out.
    pub fn reserved(&self) -> &[Reservation] {
        self.reserved.as_slice()
    }

    /// The reserved ranges alone, for [`crate::frames::FrameAllocator::new`].
    pub fn reserved_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.reserved().iter().map(|r| r.range)
    }

    /// PVH modules (empty on the zero-page path).
    pub fn pvh_modules(&self) -> &[PvhModule] {
        self.pvh_modules.as_slice()
    }

    /// Notes for the console, in the order they arose.
    pub fn notes(&self) -> &[BootNote] {
        self.notes.as_slice()
    }

    /// Notes that did not fit in [`NOTE_CAPACITY`].
    pub fn notes_dropped(&self) -> u32 {
        self.notes.dropped
    }
}

#[cfg(test)]
mod tests;
