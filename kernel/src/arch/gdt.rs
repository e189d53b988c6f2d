//! The kernel's own GDT and TSS. Purgatory's GDT lives in crash-region memory rkdump will reuse,
//! so it is replaced before anything else. The TSS carries separate stacks for #DF, NMI and #MC so
//! a fault on a broken stack still gets reported.

use core::cell::UnsafeCell;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (1-based in the IDT, 0-based in the TSS) for double faults.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot for NMIs.
pub const IST_NMI: u16 = 1;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStacks(UnsafeCell<[[u8; IST_STACK_SIZE]; 3]>);

// SAFETY: Rust code never reads or writes the stacks; only the CPU does, on exception entry.
unsafe impl Sync for IstStacks {}

static IST_STACKS: IstStacks = IstStacks(UnsafeCell::new([[0; IST_STACK_SIZE]; 3]));

struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<Gdt> = Once::new();

/// Code segment selector of the kernel GDT (used by IDT gates).
pub fn code_selector() -> u16 {
    GDT.get().map_or(0x08, |g| g.code.0)
}

/// Builds and loads the GDT and TSS and reloads every segment register.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let base = VirtAddr::from_ptr(IST_STACKS.0.get());
        let mut ist = tss.interrupt_stack_table;
        for (slot, entry) in ist.iter_mut().take(3).enumerate() {
            let top = base + ((slot + 1) * IST_STACK_SIZE) as u64;
            *entry = top.align_down(16u64);
        }
        tss.interrupt_stack_table = ist;
        tss
    });
    let gdt = GDT.call_once(|| {
        let mut table = GlobalDescriptorTable::new();
        let code = table.append(Descriptor::kernel_code_segment());
        let data = table.append(Descriptor::kernel_data_segment());
        let tss = table.append(Descriptor::tss_segment(tss));
        Gdt {
            table,
            code,
            data,
            tss,
        }
    });
    gdt.table.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives in a static
    // `Once` for the rest of the kernel's life; the TSS descriptor points at a static TSS.
    unsafe {
        CS::set_reg(gdt.code);
        for set in [
            DS::set_reg,
            ES::set_reg,
            SS::set_reg,
            FS::set_reg,
            GS::set_reg,
        ] {
            set(gdt.data);
        }
        load_tss(gdt.tss);
    }
}
