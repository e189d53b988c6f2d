//! Boot-info tests: zero pages built byte by byte at the documented offsets, PVH start infos.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::bootparam::{SETUP_E820_EXT, SETUP_INDIRECT, SETUP_RNG_SEED};
use crate::cmdline::{Console, ElfCoreHdrArg, Options, SerialPort};
use crate::frames::{AllocRequest, FrameAllocator};
use crate::memmap::{MemKind, MemRegion, MemoryMapError};
use crate::testing::FakeMem;

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}
fn put16(buf: &mut [u8], off: usize, v: u16) {
    put(buf, off, &v.to_le_bytes());
}
fn put32(buf: &mut [u8], off: usize, v: u32) {
    put(buf, off, &v.to_le_bytes());
}
fn put64(buf: &mut [u8], off: usize, v: u64) {
    put(buf, off, &v.to_le_bytes());
}
fn e820(buf: &mut [u8], off: usize, addr: u64, size: u64, type_: u32) {
    put64(buf, off, addr);
    put64(buf, off + 8, size);
    put32(buf, off + 16, type_);
}
/// A setup_data node header at `off`.
fn node(buf: &mut [u8], off: usize, next: u64, type_: u32, len: u32) {
    put64(buf, off, next);
    put32(buf, off + 8, type_);
    put32(buf, off + 12, len);
}

const ZP: u64 = 0x9_0000;
const CMDLINE: u64 = 0x1_2345_6000;
const CMDLINE_TEXT: &[u8] = b"elfcorehdr=0x7f000000 console=ttyS0,115200 reset_devices quiet\0";
const INITRD: u64 = 0x2_0000_0000;

/// A zero page as kexec_load would write it, with byte 0x1FF zeroed.
fn zero_page(setup_data: u64) -> Vec<u8> {
    let mut zp = vec![0u8; 4096];
    put64(&mut zp, 0x070, 0xF59E0); // acpi_rsdp_addr
    put32(&mut zp, 0x0C0, (INITRD >> 32) as u32); // ext_ramdisk_image
    put32(&mut zp, 0x0C4, 0); // ext_ramdisk_size
    put32(&mut zp, 0x0C8, (CMDLINE >> 32) as u32); // ext_cmd_line_ptr
    put(&mut zp, 0x1C0, b"EL64"); // efi_loader_signature
    put32(&mut zp, 0x1C4, 0x7F00_0000); // efi_systab
    put32(&mut zp, 0x1D8, 1); // efi_systab_hi
    zp[0x1E8] = 3; // e820_entries
    zp[0x1F1] = 4; // setup_sects
    put16(&mut zp, 0x1FE, 0x0055); // boot_flag with byte 0x1FF zeroed by kexec
    put(&mut zp, 0x202, b"HdrS");
    put16(&mut zp, 0x206, 0x020F);
    zp[0x210] = 0xD0; // type_of_loader
    put32(&mut zp, 0x218, INITRD as u32); // ramdisk_image
    put32(&mut zp, 0x21C, 0x12_3456); // ramdisk_size
    put32(&mut zp, 0x228, CMDLINE as u32); // cmd_line_ptr
    put32(&mut zp, 0x238, 2047); // cmdline_size
    put64(&mut zp, 0x250, setup_data);
    e820(&mut zp, 0x2D0, 0x1000, 0x9E000, 1);
    e820(&mut zp, 0x2D0 + 20, 0xF5000, 0xB000, 2);
    e820(&mut zp, 0x2D0 + 40, 0x7000_0000, 0x1000_0000, 1);
    zp
}

#[test]
fn zero_page_full_model() {
    let zp = zero_page(0x8000);
    // Chain: RNG seed -> E820_EXT (2 entries) -> indirect E820_EXT (1 entry at 0xB000).
    let mut sd = vec![0u8; 0x3000];
    node(&mut sd, 0x0000, 0x9000, SETUP_RNG_SEED, 32);
    put(&mut sd, 0x10, &[0xA5; 32]);
    node(&mut sd, 0x1000, 0xA000, SETUP_E820_EXT, 40);
    e820(&mut sd, 0x1010, 0x1_0000_0000, 0x4000_0000, 1);
    e820(&mut sd, 0x1010 + 20, 0xFED0_0000, 0x1000, 2);
    node(&mut sd, 0x2000, 0, SETUP_INDIRECT, 24);
    put32(&mut sd, 0x2010, SETUP_INDIRECT | SETUP_E820_EXT);
    put64(&mut sd, 0x2018, 20);
    put64(&mut sd, 0x2020, 0xB000);
    let mut target = [0u8; 20];
    e820(&mut target, 0, 0x2_0000_0000, 0x1000_0000, 12);
    let mem = FakeMem::new()
        .with(ZP, &zp)
        .with(CMDLINE, CMDLINE_TEXT)
        .with(0x8000, &sd)
        .with(0xB000, &target);

    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.notes(), &[]);
    assert_eq!(info.source(), BootSource::LinuxZeroPage);
    assert_eq!(
        info.cmdline().as_bytes(),
        &CMDLINE_TEXT[..CMDLINE_TEXT.len() - 1]
    );
    assert!(!info.cmdline().is_truncated());
    assert_eq!(info.initrd(), Some(PhysRange::new(INITRD, 0x12_3456)));
    assert_eq!(info.acpi_rsdp(), Some(0xF59E0));
    assert_eq!(info.efi_systab(), Some(0x1_7F00_0000));

    let opts = Options::parse(info.cmdline());
    assert_eq!(
        opts.elfcorehdr,
        Some(ElfCoreHdrArg {
            addr: 0x7F00_0000,
            size: None
        })
    );
    assert_eq!(
        opts.console,
        Some(Console {
            port: SerialPort::Com1,
            baud: Some(115_200)
        })
    );
    assert!(opts.reset_devices);

    let r = |start, len, kind| MemRegion { start, len, kind };
    assert_eq!(
        info.memory_map().regions(),
        &[
            r(0x1000, 0x9E000, MemKind::Ram),
            r(0xF5000, 0xB000, MemKind::Reserved),
            r(0x7000_0000, 0x1000_0000, MemKind::Ram),
            r(0xFED0_0000, 0x1000, MemKind::Reserved),
            r(0x1_0000_0000, 0x4000_0000, MemKind::Ram),
            r(0x2_0000_0000, 0x1000_0000, MemKind::Pram),
        ]
    );
    assert_eq!(
        info.memory_map().total_ram(),
        0x9E000 + 0x1000_0000 + 0x4000_0000
    );

    let sd = |type_, node, start, len, indirect| SetupDataRecord {
        type_,
        node,
        data: PhysRange::new(start, len),
        indirect,
    };
    assert_eq!(
        info.setup_data(),
        &[
            sd(SETUP_RNG_SEED, 0x8000, 0x8010, 32, false),
            sd(SETUP_E820_EXT, 0x9000, 0x9010, 40, false),
            sd(SETUP_E820_EXT, 0xA000, 0xB000, 20, true),
        ]
    );
    assert_eq!(info.find_setup_data(SETUP_RNG_SEED).unwrap().data.len, 32);

    let res = |start, len, kind| Reservation {
        range: PhysRange::new(start, len),
        kind,
    };
    assert_eq!(
        info.reserved(),
        &[
            res(ZP, 4096, ReservedKind::ZeroPage),
            res(CMDLINE, CMDLINE_TEXT.len() as u64, ReservedKind::Cmdline),
            res(INITRD, 0x12_3456, ReservedKind::Initrd),
            res(0x8000, 48, ReservedKind::SetupData),
            res(0x9000, 56, ReservedKind::SetupData),
            res(0xA000, 40, ReservedKind::SetupData),
            res(0xB000, 20, ReservedKind::SetupIndirect),
        ]
    );
    assert!(info.pvh_modules().is_empty());

    // The allocator built from this model never hands out a reserved byte.
    let mut fa = FrameAllocator::new(info.memory_map(), info.reserved_ranges());
    while let Ok(got) = fa.alloc(AllocRequest::pages(16).bottom_up()) {
        assert!(info.memory_map().contains_ram(got));
        assert!(!info.reserved_ranges().any(|r| r.overlaps(&got)), "{got}");
    }
}

#[test]
fn zero_page_unreadable_and_odd_headers() {
    let mem = FakeMem::new();
    assert_eq!(
        BootInfo::from_zero_page(ZP, &mem).unwrap_err(),
        BootError::ZeroPageUnreadable(PhysMemError {
            addr: ZP,
            len: 4096
        })
    );
    // No HdrS, no cmdline, no initrd, no RSDP: still a usable model, with a note.
    let mut zp = zero_page(0);
    put(&mut zp, 0x202, b"\0\0\0\0");
    put32(&mut zp, 0x228, 0);
    put32(&mut zp, 0x0C8, 0);
    put32(&mut zp, 0x21C, 0);
    put64(&mut zp, 0x070, 0);
    put(&mut zp, 0x1C0, b"\0\0\0\0");
    let mem = FakeMem::new().with(ZP, &zp);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.notes(), &[BootNote::HeaderMagicMissing { found: 0 }]);
    assert!(info.cmdline().is_empty());
    assert_eq!(
        (info.initrd(), info.acpi_rsdp(), info.efi_systab()),
        (None, None, None)
    );
    assert_eq!(info.reserved().len(), 1);
    // An initrd whose end overflows is dropped with a note.
    let mut zp = zero_page(0);
    put32(&mut zp, 0x0C0, u32::MAX);
    put32(&mut zp, 0x218, u32::MAX);
    let mem = FakeMem::new().with(ZP, &zp).with(CMDLINE, CMDLINE_TEXT);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.initrd(), None);
    assert_eq!(
        info.notes(),
        &[BootNote::InitrdInvalid {
            addr: u64::MAX,
            size: 0x12_3456
        }]
    );
}

#[test]
fn cmdline_limits() {
    let zp = zero_page(0);
    // No NUL within 4095 bytes: cut, flagged, 4096 bytes reserved.
    let long = vec![b'x'; 5000];
    let mem = FakeMem::new().with(ZP, &zp).with(CMDLINE, &long);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.cmdline().len(), 4095);
    assert!(info.cmdline().is_truncated());
    assert_eq!(
        info.notes(),
        &[BootNote::CmdlineTruncated { addr: CMDLINE }]
    );
    assert_eq!(info.reserved()[1].range, PhysRange::new(CMDLINE, 4096));
    // Exactly 4095 characters and a NUL: fine.
    let mut exact = vec![b'y'; 4096];
    exact[4095] = 0;
    let mem = FakeMem::new().with(ZP, &zp).with(CMDLINE, &exact);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(
        (info.cmdline().len(), info.cmdline().is_truncated()),
        (4095, false)
    );
    assert_eq!(info.notes(), &[]);
    // Memory ends before a NUL: keep what was readable, note it.
    let mem = FakeMem::new()
        .with(ZP, &zp)
        .with(CMDLINE + 3, b"0123456789");
    let mut zp2 = zp.clone();
    put32(&mut zp2, 0x228, (CMDLINE + 3) as u32);
    let mem2 = FakeMem::new()
        .with(ZP, &zp2)
        .with(CMDLINE + 3, b"0123456789");
    let info = BootInfo::from_zero_page(ZP, &mem2).unwrap();
    assert_eq!(info.cmdline().as_bytes(), b"0123456789");
    assert_eq!(
        info.notes(),
        &[BootNote::CmdlineUnreadable(PhysMemError {
            addr: CMDLINE + 13,
            len: 1
        })]
    );
    // A NUL right before unreadable memory is a clean end.
    let mem3 = FakeMem::new().with(ZP, &zp2).with(CMDLINE + 3, b"quiet\0");
    let info = BootInfo::from_zero_page(ZP, &mem3).unwrap();
    assert_eq!(
        (info.cmdline().as_bytes(), info.notes()),
        (&b"quiet"[..], &[][..])
    );
    // An unreadable pointer: empty line and a note.
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert!(info.cmdline().is_empty());
    assert_eq!(
        info.notes(),
        &[BootNote::CmdlineUnreadable(PhysMemError {
            addr: CMDLINE,
            len: 1
        })]
    );
}

#[test]
fn setup_data_cycles_and_limits() {
    let zp = zero_page(0x8000);
    // A -> B -> A.
    let mut sd = vec![0u8; 0x2000];
    node(&mut sd, 0, 0x9000, SETUP_RNG_SEED, 4);
    node(&mut sd, 0x1000, 0x8000, 0x77, 0);
    let mem = FakeMem::new()
        .with(ZP, &zp)
        .with(CMDLINE, CMDLINE_TEXT)
        .with(0x8000, &sd);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.setup_data().len(), 2);
    assert_eq!(
        info.setup_data()[1].type_,
        0x77,
        "unknown types are kept raw"
    );
    assert_eq!(
        info.notes(),
        &[BootNote::SetupDataStopped(SetupDataStop::Cycle {
            node: 0x8000
        })]
    );
    // A node pointing at itself.
    let mut one = [0u8; 16];
    node(&mut one, 0, 0x8000, SETUP_RNG_SEED, 0);
    let mem = FakeMem::new()
        .with(ZP, &zp)
        .with(CMDLINE, CMDLINE_TEXT)
        .with(0x8000, &one);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.setup_data().len(), 1);
    assert_eq!(
        info.notes(),
        &[BootNote::SetupDataStopped(SetupDataStop::Cycle {
            node: 0x8000
        })]
    );
    // 100 distinct nodes: stops after the hop limit.
    let mut chain = vec![0u8; 100 * 16];
    for i in 0..100u64 {
        let next = if i == 99 { 0 } else { 0x8000 + (i + 1) * 16 };
        node(&mut chain, i as usize * 16, next, SETUP_RNG_SEED, 0);
    }
    let mem = FakeMem::new()
        .with(ZP, &zp)
        .with(CMDLINE, CMDLINE_TEXT)
        .with(0x8000, &chain);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.setup_data().len(), SETUP_DATA_HOP_LIMIT);
    assert_eq!(
        info.notes(),
        &[BootNote::SetupDataStopped(SetupDataStop::HopLimit)]
    );
    // Head pointing at nothing.
    let mem = FakeMem::new().with(ZP, &zp).with(CMDLINE, CMDLINE_TEXT);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(
        info.notes(),
        &[BootNote::SetupDataStopped(SetupDataStop::Unreadable(
            PhysMemError {
                addr: 0x8000,
                len: 16
            }
        ))]
    );
    // A length that overflows, and an indirect node with a bad inner type.
    let mut bad = vec![0u8; 0x1000];
    node(&mut bad, 0, 0x8100, 1, u32::MAX);
    let zp_hi = zero_page(u64::MAX - 20);
    let mut hi = [0u8; 16];
    node(&mut hi, 0, 0, SETUP_E820_EXT, 16);
    let mem = FakeMem::new()
        .with(ZP, &zp_hi)
        .with(CMDLINE, CMDLINE_TEXT)
        .with(u64::MAX - 20, &hi);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(
        info.notes(),
        &[BootNote::SetupDataBadLength {
            node: u64::MAX - 20,
            len: 16
        }]
    );
    assert_eq!(
        info.reserved().last().unwrap().range,
        PhysRange::new(u64::MAX - 20, 16)
    );
    node(&mut bad, 0x100, 0, SETUP_INDIRECT, 24);
    put32(&mut bad, 0x110, SETUP_INDIRECT);
    let mem = FakeMem::new()
        .with(ZP, &zp)
        .with(CMDLINE, CMDLINE_TEXT)
        .with(0x8000, &bad);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.setup_data().len(), 2);
    assert_eq!(info.setup_data()[1].type_, SETUP_INDIRECT);
    assert!(info.notes().contains(&BootNote::SetupDataBadLength {
        node: 0x8100,
        len: 24
    }));
}

#[test]
fn e820_clamp_and_overflow() {
    // e820_entries = 200: only 128 table entries are read.
    let mut zp = zero_page(0);
    zp[0x1E8] = 200;
    for i in 0..128 {
        e820(&mut zp, 0x2D0 + i * 20, i as u64 * 0x2000, 0x1000, 1);
    }
    let mem = FakeMem::new().with(ZP, &zp).with(CMDLINE, CMDLINE_TEXT);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.notes(), &[BootNote::E820EntriesClamped { raw: 200 }]);
    assert_eq!(info.memory_map().len(), 128);

    // 600 more disjoint entries through SETUP_E820_EXT overflow the 512-region map: reported.
    let mut zp = zero_page(0x10_0000);
    zp[0x1E8] = 0;
    let mut ext = vec![0u8; 16 + 600 * 20];
    node(&mut ext, 0, 0, SETUP_E820_EXT, 600 * 20);
    for i in 0..600 {
        e820(
            &mut ext,
            16 + i * 20,
            0x1_0000_0000 + i as u64 * 0x2000,
            0x1000,
            1,
        );
    }
    let mem = FakeMem::new()
        .with(ZP, &zp)
        .with(CMDLINE, CMDLINE_TEXT)
        .with(0x10_0000, &ext);
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    assert_eq!(info.memory_map().len(), 512);
    assert_eq!(info.memory_map().dropped(), 88);
    assert_eq!(
        info.notes()[0],
        BootNote::MemoryMap(MemoryMapError::Full {
            addr: 0x1_0000_0000 + 512 * 0x2000,
            size: 0x1000
        })
    );
    assert_eq!(info.notes().len(), NOTE_CAPACITY);
    assert_eq!(info.notes_dropped(), 88 - NOTE_CAPACITY as u32);
    assert!(std::format!("{}", info.notes()[0]).contains("memory map full"));
}

const SI: u64 = 0x6000;

fn start_info(version: u32, nr_modules: u32) -> Vec<u8> {
    let mut si = vec![0u8; 56];
    put32(&mut si, 0x00, XEN_HVM_START_MAGIC_VALUE);
    put32(&mut si, 0x04, version);
    put32(&mut si, 0x0C, nr_modules);
    put64(&mut si, 0x10, 0x7000); // modlist_paddr
    put64(&mut si, 0x18, 0x7100); // cmdline_paddr
    put64(&mut si, 0x20, 0xF5A00); // rsdp_paddr
    put64(&mut si, 0x28, 0x7200); // memmap_paddr
    put32(&mut si, 0x30, 3); // memmap_entries
    si
}

fn pvh_tables() -> Vec<u8> {
    let mut t = vec![0u8; 0x300];
    put64(&mut t, 0x00, 0x200_0000); // module 0: paddr, size, cmdline
    put64(&mut t, 0x08, 0x4000);
    put64(&mut t, 0x20, 0x300_0000); // module 1
    put64(&mut t, 0x28, 0x1000);
    put64(&mut t, 0x30, 0x7180);
    put(&mut t, 0x100, b"rkdump.target=serial rkdump.exit=qemu\0");
    put(&mut t, 0x180, b"blob\0");
    for (i, (addr, size, ty)) in [
        (0, 0x9FC00, 1),
        (0xF0000, 0x10000, 2),
        (0x10_0000, 0x7FF0_0000, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let off = 0x200 + i * 24;
        put64(&mut t, off, addr);
        put64(&mut t, off + 8, size);
        put32(&mut t, off + 16, ty);
    }
    t
}

#[test]
fn pvh_start_info() {
    let si = start_info(1, 2);
    let tables = pvh_tables();
    let mem = FakeMem::new().with(SI, &si).with(0x7000, &tables);
    let info = BootInfo::from_pvh(SI, &mem).unwrap();
    assert_eq!(info.notes(), &[]);
    assert_eq!(info.source(), BootSource::Pvh);
    assert_eq!(
        info.cmdline().as_str(),
        Some("rkdump.target=serial rkdump.exit=qemu")
    );
    assert!(Options::parse(info.cmdline()).qemu_exit);
    assert_eq!(info.acpi_rsdp(), Some(0xF5A00));
    assert_eq!(info.initrd(), Some(PhysRange::new(0x200_0000, 0x4000)));
    assert_eq!(
        info.pvh_modules(),
        &[
            PvhModule {
                range: PhysRange::new(0x200_0000, 0x4000),
                cmdline_paddr: 0
            },
            PvhModule {
                range: PhysRange::new(0x300_0000, 0x1000),
                cmdline_paddr: 0x7180
            },
        ]
    );
    assert_eq!(info.memory_map().len(), 3);
    assert_eq!(info.memory_map().total_ram(), 0x9FC00 + 0x7FF0_0000);
    let res = |start, len, kind| Reservation {
        range: PhysRange::new(start, len),
        kind,
    };
    assert_eq!(
        info.reserved(),
        &[
            res(SI, 56, ReservedKind::PvhStartInfo),
            res(0x7100, 38, ReservedKind::Cmdline),
            res(0x7200, 72, ReservedKind::PvhMemmap),
            res(0x7000, 64, ReservedKind::PvhModlist),
            res(0x200_0000, 0x4000, ReservedKind::PvhModule),
            res(0x300_0000, 0x1000, ReservedKind::PvhModule),
        ]
    );
}

#[test]
fn pvh_errors_and_notes() {
    let mut si = start_info(1, 0);
    put32(&mut si, 0, 0xDEAD_BEEF);
    let mem = FakeMem::new().with(SI, &si);
    assert_eq!(
        BootInfo::from_pvh(SI, &mem).unwrap_err(),
        BootError::BadPvhMagic { found: 0xDEAD_BEEF }
    );
    assert!(matches!(
        BootInfo::from_pvh(0x1234_0000, &mem),
        Err(BootError::StartInfoUnreadable(_))
    ));
    // Version 0: no memory map fields; a module list we cannot read.
    let si = start_info(0, 1);
    let mut tables = pvh_tables();
    tables.truncate(0x180);
    let mem = FakeMem::new().with(SI, &si).with(0x7020, &tables[0x20..]);
    let info = BootInfo::from_pvh(SI, &mem).unwrap();
    assert_eq!(
        info.notes(),
        &[
            BootNote::PvhNoMemmap,
            BootNote::PvhModuleInvalid { index: 0 }
        ]
    );
    assert!(info.memory_map().is_empty());
    assert_eq!(info.initrd(), None);
    // In-place loading into a reused value resets it first; an error leaves it untouched.
    let good = start_info(1, 2);
    let tables = pvh_tables();
    let mem = FakeMem::new().with(SI, &good).with(0x7000, &tables);
    let mut info = BootInfo::new();
    info.load_pvh(SI, &mem).unwrap();
    info.load_pvh(SI, &mem).unwrap();
    assert_eq!(info.reserved().len(), 6);
    assert!(info.load_zero_page(ZP, &mem).is_err());
    assert_eq!(info.source(), BootSource::Pvh);
}

#[test]
fn pvh_hostile_module_count() {
    // nr_modules = u32::MAX but only 20 readable entries: clamped read, 8 kept, list-full noted once.
    let mut si = start_info(1, u32::MAX);
    put32(&mut si, 0x30, 0); // no memmap entries
    put64(&mut si, 0x18, 0); // no command line
    let mut modlist = vec![0u8; 20 * 32];
    for i in 0..20 {
        put64(&mut modlist, i * 32, 0x1000_0000 + i as u64 * 0x10_0000);
        put64(&mut modlist, i * 32 + 8, 0x1000);
    }
    let mem = FakeMem::new().with(SI, &si).with(0x7000, &modlist);
    let info = BootInfo::from_pvh(SI, &mem).unwrap();
    assert_eq!(info.pvh_modules().len(), PVH_MODULE_CAPACITY);
    assert_eq!(info.initrd(), Some(PhysRange::new(0x1000_0000, 0x1000)));
    assert_eq!(
        info.notes()[..3],
        [
            BootNote::TableClamped {
                addr: 0x7000,
                entries: u32::MAX as u64
            },
            BootNote::ListFull {
                what: "PVH modules"
            },
            BootNote::PvhModuleInvalid { index: 20 },
        ]
    );
    assert_eq!(info.notes().len(), NOTE_CAPACITY);
    assert!(info.notes_dropped() > 900);
    // Reservations: start info, modlist (1024 entries read), 20 modules.
    assert_eq!(info.reserved().len(), 22);
    assert_eq!(info.reserved()[1].range, PhysRange::new(0x7000, 1024 * 32));
}

/// The kernel's boot-data reader: the address policy first, then the memory (an address beyond
/// the limit is never handed to the memory at all).
struct Policed<'a>(crate::physaddr::PhysLimit, FakeMem<'a>);

impl PhysMem for Policed<'_> {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let err = PhysMemError {
            addr: phys,
            len: buf.len() as u64,
        };
        self.0.check(phys, buf.len() as u64).map_err(|_| err)?;
        self.1.read(phys, buf)
    }
}

#[test]
fn foreign_pointers_in_the_zero_page() {
    use crate::physaddr::{Paging, PhysLimit};
    let limit = PhysLimit::new(Some(40), Paging::FourLevel);
    // Command line beyond the CPU's width, setup_data at a non-canonical address.
    let mut zp = zero_page(0xffff_ffff_f000);
    put32(&mut zp, 0x228, 0xffff_f000);
    put32(&mut zp, 0x0C8, 0x7fff);
    let mem = Policed(limit, FakeMem::new().with(ZP, &zp));
    let info = BootInfo::from_zero_page(ZP, &mem).unwrap();
    // Each refused pointer is a note; the model is still usable.
    assert!(info.cmdline().is_empty());
    assert_eq!(
        info.notes(),
        &[
            BootNote::CmdlineUnreadable(PhysMemError {
                addr: 0x7fff_ffff_f000,
                len: 1
            }),
            BootNote::SetupDataStopped(SetupDataStop::Unreadable(PhysMemError {
                addr: 0xffff_ffff_f000,
                len: 16
            })),
        ]
    );
    // A zero page beyond the limit is a typed error.
    assert!(matches!(
        BootInfo::from_zero_page(0x7fff_ffff_f000, &mem),
        Err(BootError::ZeroPageUnreadable(_))
    ));
}
