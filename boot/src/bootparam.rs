//! Linux x86 boot protocol ABI: setup header, zero page (`boot_params`), e820 entries, setup_data.
//!
//! Mirrors arch/x86/include/uapi/asm/bootparam.h and setup_data.h (Documentation/arch/x86/boot.rst,
//! zero-page.rst; docs/boot-contract.md#zero-page). Field names are the C names; every struct is `repr(C, packed)` like the
//! C original, so read fields by value. [`check_kexec_header`] validates a bzImage the way kexec does.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

mod check;

pub use check::{HeaderError, HeaderSummary, check_kexec_header};

/// Offset of [`SetupHeader`] in both the bzImage file and [`BootParams`].
pub const SETUP_HEADER_OFFSET: usize = 0x1F1;
/// `header` value: "HdrS" read as a little-endian u32.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// `boot_flag` value at 0x1FE in the image file (kexec zeroes its high byte in the zero page).
pub const BOOT_FLAG: u16 = 0xAA55;
/// Oldest boot protocol version kexec accepts for a 64-bit bzImage (2.12).
pub const MIN_KEXEC_VERSION: u16 = 0x020C;
/// Size of [`SetupHeader`]: the header spans 0x1F1..0x26C.
pub const SETUP_HEADER_SIZE: usize = 0x26C - SETUP_HEADER_OFFSET;
/// `jump` value for an image whose header runs through `kernel_info_offset`: a short jump
/// (0xEB) with displacement 0x6A, so the header length (0x202 + byte 0x201) is 0x26C.
pub const HEADER_JUMP: u16 = u16::from_le_bytes([0xEB, 0x6A]);
/// Smallest `cmdline_size` rkdump images declare (Linux: 2047; docs/boot-contract.md#bzimage-header-rules).
pub const MIN_CMDLINE_SIZE: u32 = 2047;

/// `loadflags` bit 0: protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags` bit 5: suppress early messages.
pub const QUIET_FLAG: u8 = 1 << 5;
/// `loadflags` bit 6: obsolete.
pub const KEEP_SEGMENTS: u8 = 1 << 6;
/// `loadflags` bit 7: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;

/// `xloadflags` bit 0: the kernel has the 64-bit entry point at payload + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit 1: kernel, boot_params, cmdline and initrd may live above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `xloadflags` bit 2: EFI handover entry (32-bit).
pub const XLF_EFI_HANDOVER_32: u16 = 1 << 2;
/// `xloadflags` bit 3: EFI handover entry (64-bit).
pub const XLF_EFI_HANDOVER_64: u16 = 1 << 3;
/// `xloadflags` bit 4: EFI runtime hand-off over kexec.
pub const XLF_EFI_KEXEC: u16 = 1 << 4;
/// `xloadflags` bit 5: the kernel can be entered with 5-level paging (CR4.LA57 = 1).
pub const XLF_5LEVEL: u16 = 1 << 5;
/// `xloadflags` bit 6: 5-level paging is enabled in this kernel.
pub const XLF_5LEVEL_ENABLED: u16 = 1 << 6;

/// Number of e820 entries that fit in the zero page.
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// setup_data type: none.
pub const SETUP_NONE: u32 = 0;
/// setup_data type: extra e820 entries beyond the 128 in the zero page.
pub const SETUP_E820_EXT: u32 = 1;
/// setup_data type: flattened device tree.
pub const SETUP_DTB: u32 = 2;
/// setup_data type: PCI option ROMs.
pub const SETUP_PCI: u32 = 3;
/// setup_data type: EFI hand-off data.
pub const SETUP_EFI: u32 = 4;
/// setup_data type: Apple device properties.
pub const SETUP_APPLE_PROPERTIES: u32 = 5;
/// setup_data type: Jailhouse hypervisor.
pub const SETUP_JAILHOUSE: u32 = 6;
/// setup_data type: confidential-computing blob.
pub const SETUP_CC_BLOB: u32 = 7;
/// setup_data type: IMA measurement buffer.
pub const SETUP_IMA: u32 = 8;
/// setup_data type: RNG seed.
pub const SETUP_RNG_SEED: u32 = 9;
/// setup_data type: kexec handover (KHO).
pub const SETUP_KEXEC_KHO: u32 = 10;
/// setup_data type flag: the payload is a [`SetupIndirect`] pointing elsewhere.
pub const SETUP_INDIRECT: u32 = 1 << 31;
/// Highest known setup_data type.
pub const SETUP_TYPE_MAX: u32 = SETUP_INDIRECT | SETUP_KEXEC_KHO;

/// `struct setup_header`: file offset 0x1F1 of the bzImage, same offset in `boot_params`.
/// Offsets in the field docs are absolute (boot.rst §"The real-mode kernel header").
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, packed)]
pub struct SetupHeader {
    /// 0x1F1: size of the setup code in 512-byte sectors (0 means 4).
    pub setup_sects: u8,
    /// 0x1F2: root read-only flag (kexec writes 0xFFFF).
    pub root_flags: u16,
    /// 0x1F4: payload size in 16-byte paragraphs.
    pub syssize: u32,
    /// 0x1F8: obsolete.
    pub ram_size: u16,
    /// 0x1FA: video mode.
    pub vid_mode: u16,
    /// 0x1FC: root device (kexec writes 0x0300).
    pub root_dev: u16,
    /// 0x1FE: 0xAA55 in the file; kexec zeroes byte 0x1FF in the zero page, so never check it there.
    pub boot_flag: u16,
    /// 0x200: short jump; byte 0x201 is the header length minus 0x11.
    pub jump: u16,
    /// 0x202: "HdrS" ([`HDRS_MAGIC`]).
    pub header: u32,
    /// 0x206: boot protocol version.
    pub version: u16,
    /// 0x208: real-mode switch hook.
    pub realmode_swtch: u32,
    /// 0x20C: obsolete.
    pub start_sys_seg: u16,
    /// 0x20E: offset − 0x200 of a kernel version string.
    pub kernel_version: u16,
    /// 0x210: boot loader id (0xD0 kexec, 0xB0 QEMU).
    pub type_of_loader: u8,
    /// 0x211: [`LOADED_HIGH`] and friends.
    pub loadflags: u8,
    /// 0x212: obsolete.
    pub setup_move_size: u16,
    /// 0x214: 32-bit entry point.
    pub code32_start: u32,
    /// 0x218: initrd address, low 32 bits.
    pub ramdisk_image: u32,
    /// 0x21C: initrd size, low 32 bits.
    pub ramdisk_size: u32,
    /// 0x220: obsolete.
    pub bootsect_kludge: u32,
    /// 0x224: end of the setup heap.
    pub heap_end_ptr: u16,
    /// 0x226: extended boot loader version.
    pub ext_loader_ver: u8,
    /// 0x227: extended boot loader type.
    pub ext_loader_type: u8,
    /// 0x228: command line address, low 32 bits.
    pub cmd_line_ptr: u32,
    /// 0x22C: highest initrd address for 32-bit loaders.
    pub initrd_addr_max: u32,
    /// 0x230: physical alignment required for the payload.
    pub kernel_alignment: u32,
    /// 0x234: the payload is relocatable (not checked by kexec).
    pub relocatable_kernel: u8,
    /// 0x235: log2 of the minimum alignment.
    pub min_alignment: u8,
    /// 0x236: `XLF_*` flags.
    pub xloadflags: u16,
    /// 0x238: maximum command line length without the NUL.
    pub cmdline_size: u32,
    /// 0x23C: hardware subarchitecture (0 = PC).
    pub hardware_subarch: u32,
    /// 0x240: subarchitecture data.
    pub hardware_subarch_data: u64,
    /// 0x248: offset of the compressed payload.
    pub payload_offset: u32,
    /// 0x24C: length of the compressed payload.
    pub payload_length: u32,
    /// 0x250: physical address of the first setup_data node (0 = none).
    pub setup_data: u64,
    /// 0x258: preferred load address.
    pub pref_address: u64,
    /// 0x260: bytes needed from the load address (payload + bss + early tables).
    pub init_size: u32,
    /// 0x264: EFI handover entry offset.
    pub handover_offset: u32,
    /// 0x268: offset of `kernel_info` (protocol 2.15+).
    pub kernel_info_offset: u32,
}

/// `struct boot_e820_entry`: one packed 20-byte e820 record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct BootE820Entry {
    /// 0x00: start address.
    pub addr: u64,
    /// 0x08: length in bytes.
    pub size: u64,
    /// 0x10: E820 type (1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable, 7 PMEM, 12 PRAM).
    pub type_: u32,
}

/// `struct efi_info` at zero-page offset 0x1C0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct EfiInfo {
    /// 0x1C0: "EL64" or "EL32".
    pub efi_loader_signature: u32,
    /// 0x1C4: EFI system table, low 32 bits.
    pub efi_systab: u32,
    /// 0x1C8: memory descriptor size.
    pub efi_memdesc_size: u32,
    /// 0x1CC: memory descriptor version.
    pub efi_memdesc_version: u32,
    /// 0x1D0: memory map (runtime regions only on kexec), low 32 bits.
    pub efi_memmap: u32,
    /// 0x1D4: memory map size.
    pub efi_memmap_size: u32,
    /// 0x1D8: EFI system table, high 32 bits.
    pub efi_systab_hi: u32,
    /// 0x1DC: memory map, high 32 bits.
    pub efi_memmap_hi: u32,
}

/// `efi_loader_signature` of a 64-bit EFI loader ("EL64").
pub const EFI64_LOADER_SIGNATURE: u32 = u32::from_le_bytes(*b"EL64");
/// `efi_loader_signature` of a 32-bit EFI loader ("EL32").
pub const EFI32_LOADER_SIGNATURE: u32 = u32::from_le_bytes(*b"EL32");

/// `struct efi_setup_data`: the payload of a [`SETUP_EFI`] setup_data node, which a kexec loader
/// adds for a kernel booted through UEFI. It carries the physical addresses of what the firmware's
/// `SetVirtualAddressMap` turned into virtual addresses inside the system table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct EfiSetupData {
    /// 0x00: firmware vendor string, physical.
    pub fw_vendor: u64,
    /// 0x08: unused (was the runtime services table).
    pub __unused: u64,
    /// 0x10: the configuration table, physical.
    pub tables: u64,
    /// 0x18: the SMBIOS entry point, physical.
    pub smbios: u64,
    /// 0x20: reserved.
    pub reserved: [u64; 8],
}

/// `efi_table_hdr_t`: the header of every EFI table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct EfiTableHdr {
    /// 0x00: table signature ([`EFI_SYSTEM_TABLE_SIGNATURE`] for the system table).
    pub signature: u64,
    /// 0x08: UEFI revision (major << 16 | minor).
    pub revision: u32,
    /// 0x0C: size of the whole table.
    pub headersize: u32,
    /// 0x10: CRC32 of the table.
    pub crc32: u32,
    /// 0x14: reserved.
    pub reserved: u32,
}

/// `efi_system_table_64_t`: the EFI system table of 64-bit firmware.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct EfiSystemTable64 {
    /// 0x00: header.
    pub hdr: EfiTableHdr,
    /// 0x18: firmware vendor string.
    pub fw_vendor: u64,
    /// 0x20: firmware revision.
    pub fw_revision: u32,
    /// 0x24: padding.
    pub __pad1: u32,
    /// 0x28: console input handle.
    pub con_in_handle: u64,
    /// 0x30: console input protocol.
    pub con_in: u64,
    /// 0x38: console output handle.
    pub con_out_handle: u64,
    /// 0x40: console output protocol.
    pub con_out: u64,
    /// 0x48: standard error handle.
    pub stderr_handle: u64,
    /// 0x50: standard error protocol.
    pub stderr: u64,
    /// 0x58: runtime services (never called by rkdump).
    pub runtime: u64,
    /// 0x60: boot services (gone after ExitBootServices).
    pub boottime: u64,
    /// 0x68: number of configuration table entries.
    pub nr_tables: u32,
    /// 0x6C: padding (the high half of the spec's UINTN count).
    pub __pad2: u32,
    /// 0x70: the configuration table (virtual after `SetVirtualAddressMap`).
    pub tables: u64,
}

/// `efi_config_table_64_t`: one configuration table entry (vendor GUID, table address).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct EfiConfigTable64 {
    /// 0x00: vendor GUID in its in-memory byte order.
    pub guid: [u8; 16],
    /// 0x10: the table's physical address.
    pub table: u64,
}

/// `EFI_SYSTEM_TABLE_SIGNATURE`: "IBI SYST" read as a little-endian u64.
pub const EFI_SYSTEM_TABLE_SIGNATURE: u64 = u64::from_le_bytes(*b"IBI SYST");

/// An EFI GUID in memory order: `a` (LE u32), `b`, `c` (LE u16), then `d` as bytes.
pub const fn efi_guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// `ACPI_20_TABLE_GUID` (8868e871-e4f1-11d3-bc22-0080c73c8881): the ACPI 2.0+ RSDP.
pub const ACPI_20_TABLE_GUID: [u8; 16] = efi_guid(
    0x8868_e871,
    0xe4f1,
    0x11d3,
    [0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81],
);
/// `ACPI_TABLE_GUID` (eb9d2d30-2d88-11d3-9a16-0090273fc14d): the ACPI 1.0 RSDP.
pub const ACPI_TABLE_GUID: [u8; 16] = efi_guid(
    0xeb9d_2d30,
    0x2d88,
    0x11d3,
    [0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d],
);

/// `struct boot_params`, the 4 KiB zero page (zero-page.rst; docs/boot-contract.md#zero-page).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, packed)]
pub struct BootParams {
    /// 0x000: `struct screen_info` (ext_mem_k at 0x02, cl_magic 0x20, cl_offset 0x22).
    pub screen_info: [u8; 64],
    /// 0x040: `struct apm_bios_info`.
    pub apm_bios_info: [u8; 20],
    /// 0x054: padding.
    pub _pad2: [u8; 4],
    /// 0x058: tboot shared page.
    pub tboot_addr: u64,
    /// 0x060: `struct ist_info`.
    pub ist_info: [u8; 16],
    /// 0x070: physical address of the ACPI RSDP (0 = unknown).
    pub acpi_rsdp_addr: u64,
    /// 0x078: padding.
    pub _pad3: [u8; 8],
    /// 0x080: obsolete.
    pub hd0_info: [u8; 16],
    /// 0x090: obsolete.
    pub hd1_info: [u8; 16],
    /// 0x0A0: `struct sys_desc_table` (obsolete).
    pub sys_desc_table: [u8; 16],
    /// 0x0B0: `struct olpc_ofw_header`.
    pub olpc_ofw_header: [u8; 16],
    /// 0x0C0: initrd address, high 32 bits.
    pub ext_ramdisk_image: u32,
    /// 0x0C4: initrd size, high 32 bits.
    pub ext_ramdisk_size: u32,
    /// 0x0C8: command line address, high 32 bits.
    pub ext_cmd_line_ptr: u32,
    /// 0x0CC: padding.
    pub _pad4: [u8; 112],
    /// 0x13C: confidential-computing blob address.
    pub cc_blob_address: u32,
    /// 0x140: `struct edid_info`.
    pub edid_info: [u8; 128],
    /// 0x1C0: EFI hand-off (memmap lists runtime regions only on kexec).
    pub efi_info: EfiInfo,
    /// 0x1E0: KiB of memory above 1 MiB.
    pub alt_mem_k: u32,
    /// 0x1E4: scratch for the setup code.
    pub scratch: u32,
    /// 0x1E8: number of valid entries in `e820_table`.
    pub e820_entries: u8,
    /// 0x1E9: number of entries in `eddbuf`.
    pub eddbuf_entries: u8,
    /// 0x1EA: number of entries in `edd_mbr_sig_buffer`.
    pub edd_mbr_sig_buf_entries: u8,
    /// 0x1EB: keyboard status.
    pub kbd_status: u8,
    /// 0x1EC: secure boot state.
    pub secure_boot: u8,
    /// 0x1ED: padding.
    pub _pad5: [u8; 2],
    /// 0x1EF: sentinel for broken boot loaders.
    pub sentinel: u8,
    /// 0x1F0: padding.
    pub _pad6: [u8; 1],
    /// 0x1F1: the setup header.
    pub hdr: SetupHeader,
    /// 0x26C: padding.
    pub _pad7: [u8; 0x290 - 0x1F1 - size_of::<SetupHeader>()],
    /// 0x290: EDD MBR signatures.
    pub edd_mbr_sig_buffer: [u32; 16],
    /// 0x2D0: the first 128 e820 entries.
    pub e820_table: [BootE820Entry; E820_MAX_ENTRIES_ZEROPAGE],
    /// 0xCD0: padding.
    pub _pad8: [u8; 48],
    /// 0xD00: `struct edd_info eddbuf[6]`.
    pub eddbuf: [u8; 492],
    /// 0xEEC: padding.
    pub _pad9: [u8; 276],
}

/// `struct setup_data` node header; `len` bytes of data follow it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct SetupData {
    /// 0x00: physical address of the next node (0 ends the list).
    pub next: u64,
    /// 0x08: `SETUP_*` type.
    pub type_: u32,
    /// 0x0C: length of the data after this header.
    pub len: u32,
}

/// `struct setup_indirect`: the data of a node whose type is exactly [`SETUP_INDIRECT`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, packed)]
pub struct SetupIndirect {
    /// 0x00: `SETUP_INDIRECT | real type`.
    pub type_: u32,
    /// 0x04: reserved.
    pub reserved: u32,
    /// 0x08: length of the target.
    pub len: u64,
    /// 0x10: physical address of the target.
    pub addr: u64,
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<SetupHeader>() == SETUP_HEADER_SIZE);
    assert!(offset_of!(SetupHeader, boot_flag) == 0x1FE - 0x1F1);
    assert!(offset_of!(SetupHeader, header) == 0x202 - 0x1F1);
    assert!(offset_of!(SetupHeader, loadflags) == 0x211 - 0x1F1);
    assert!(offset_of!(SetupHeader, cmd_line_ptr) == 0x228 - 0x1F1);
    assert!(offset_of!(SetupHeader, kernel_alignment) == 0x230 - 0x1F1);
    assert!(offset_of!(SetupHeader, xloadflags) == 0x236 - 0x1F1);
    assert!(offset_of!(SetupHeader, cmdline_size) == 0x238 - 0x1F1);
    assert!(offset_of!(SetupHeader, setup_data) == 0x250 - 0x1F1);
    assert!(offset_of!(SetupHeader, pref_address) == 0x258 - 0x1F1);
    assert!(offset_of!(SetupHeader, init_size) == 0x260 - 0x1F1);
    assert!(offset_of!(SetupHeader, kernel_info_offset) == 0x268 - 0x1F1);

    assert!(size_of::<BootParams>() == 4096);
    assert!(offset_of!(BootParams, acpi_rsdp_addr) == 0x70);
    assert!(offset_of!(BootParams, ext_ramdisk_image) == 0xC0);
    assert!(offset_of!(BootParams, ext_ramdisk_size) == 0xC4);
    assert!(offset_of!(BootParams, ext_cmd_line_ptr) == 0xC8);
    assert!(offset_of!(BootParams, cc_blob_address) == 0x13C);
    assert!(offset_of!(BootParams, efi_info) == 0x1C0);
    assert!(offset_of!(BootParams, e820_entries) == 0x1E8);
    assert!(offset_of!(BootParams, sentinel) == 0x1EF);
    assert!(offset_of!(BootParams, hdr) == SETUP_HEADER_OFFSET);
    assert!(offset_of!(BootParams, edd_mbr_sig_buffer) == 0x290);
    assert!(offset_of!(BootParams, e820_table) == 0x2D0);
    assert!(offset_of!(BootParams, eddbuf) == 0xD00);

    assert!(size_of::<BootE820Entry>() == 20);
    assert!(size_of::<EfiInfo>() == 32);
    assert!(size_of::<SetupData>() == 16);
    assert!(size_of::<SetupIndirect>() == 24);
    assert!(size_of::<EfiSetupData>() == 96);
    assert!(offset_of!(EfiSetupData, tables) == 0x10);
    assert!(size_of::<EfiTableHdr>() == 24);
    assert!(size_of::<EfiSystemTable64>() == 120);
    assert!(offset_of!(EfiSystemTable64, runtime) == 0x58);
    assert!(offset_of!(EfiSystemTable64, nr_tables) == 0x68);
    assert!(offset_of!(EfiSystemTable64, tables) == 0x70);
    assert!(size_of::<EfiConfigTable64>() == 24);
};

impl SetupHeader {
    /// An all-zero header, to be filled in by an image builder.
    pub fn zeroed() -> Self {
        Self::new_zeroed()
    }

    /// The header at offset 0x1F1 of a bzImage, if the image is long enough.
    pub fn from_image(image: &[u8]) -> Option<Self> {
        let bytes = image.get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + SETUP_HEADER_SIZE)?;
        Self::read_from_bytes(bytes).ok()
    }

    /// Writes the header at offset 0x1F1 of `image`; false if the image is too short.
    pub fn write_to_image(&self, image: &mut [u8]) -> bool {
        match image.get_mut(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + SETUP_HEADER_SIZE) {
            Some(dst) => {
                dst.copy_from_slice(self.as_bytes());
                true
            }
            None => false,
        }
    }

    /// 64-bit command line pointer as kexec hands it over, given the zero page's `ext_cmd_line_ptr`.
    pub fn cmd_line_ptr64(&self, ext_cmd_line_ptr: u32) -> u64 {
        u64::from(self.cmd_line_ptr) | (u64::from(ext_cmd_line_ptr) << 32)
    }
}

impl BootParams {
    /// Command line address: `cmd_line_ptr | ext_cmd_line_ptr << 32`.
    pub fn cmdline_addr(&self) -> u64 {
        self.hdr.cmd_line_ptr64(self.ext_cmd_line_ptr)
    }

    /// Initrd address: `ramdisk_image | ext_ramdisk_image << 32`.
    pub fn initrd_addr(&self) -> u64 {
        u64::from(self.hdr.ramdisk_image) | (u64::from(self.ext_ramdisk_image) << 32)
    }

    /// Initrd size: `ramdisk_size | ext_ramdisk_size << 32`.
    pub fn initrd_size(&self) -> u64 {
        u64::from(self.hdr.ramdisk_size) | (u64::from(self.ext_ramdisk_size) << 32)
    }

    /// Whether `efi_info` carries the 64-bit EFI loader signature ("EL64").
    pub fn efi_64(&self) -> bool {
        let efi = self.efi_info;
        let sig = efi.efi_loader_signature;
        sig == EFI64_LOADER_SIGNATURE
    }

    /// EFI system table address when an EFI loader signature is present.
    pub fn efi_systab(&self) -> Option<u64> {
        let efi = self.efi_info;
        let sig = efi.efi_loader_signature;
        if sig != EFI64_LOADER_SIGNATURE && sig != EFI32_LOADER_SIGNATURE {
            return None;
        }
        let systab = u64::from(efi.efi_systab) | (u64::from(efi.efi_systab_hi) << 32);
        (systab != 0).then_some(systab)
    }
}
