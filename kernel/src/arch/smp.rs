//! The other CPUs at the CPU level: the local APIC (xAPIC registers or x2APIC MSRs, whichever
//! mode the crashed kernel left this CPU in) that sends INIT and STARTUP IPIs, the real-mode
//! trampoline an AP starts in, each AP's own GDT/TSS, and the work loop APs wait in.
//!
//! Bring-up (Intel SDM Vol. 3A §9.4 "Multiple-Processor (MP) Initialization", §11.6 "Issuing
//! Interprocessor Interrupts"): INIT puts the AP in wait-for-SIPI; each STARTUP IPI's vector `v`
//! starts it in real mode at `v << 12` (CS = `v << 8`, IP = 0), so the trampoline must sit in a
//! page below 1 MiB. It goes to 32-bit protected mode on its own tiny GDT, sets CR4 (PAE, plus
//! LA57 exactly as this CPU has it: a CPU started in 4-level mode could not read rkdump's
//! 5-level tables), loads a copy of rkdump's top-level page table placed below 4 GiB (32-bit code
//! can load only a 32-bit CR3), enables long mode, and in 64-bit mode switches to the real CR3,
//! takes its stack and calls [`rkdump_ap_entry`]. The waits between the IPIs need the kernel's
//! clock, so the kernel's `smp` module sequences them.
//!
//! Work (the [`run`] protocol): the BSP publishes a job (a monomorphised call function and a
//! pointer to the caller's closure) under the `POSTED` lock with a new generation number; each
//! AP polls the generation, takes the posting under the same lock (acquire: the closure and
//! everything the BSP wrote before posting is visible), runs its share, and adds one to `DONE`
//! with release ordering; the BSP runs share 0 itself and waits for `DONE` with acquire ordering,
//! so everything the APs wrote in their share is visible to it when [`run`] returns. The BSP never
//! returns from [`run`] while an AP may still be inside the job: the borrowed closure must stay
//! alive, so a job that does not finish by the caller's deadline ends in the caller's `stalled`
//! function, which must not return.
//!
//! APs get no TLB shootdowns: each reloads CR3 before it starts a job, so mappings the BSP made or
//! re-typed before posting are what it sees; a job must not make mappings itself.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::model_specific::Msr;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

use super::paging::{self, Cache, MapError};
use super::{cpu, gdt, idt};

/// The most AP start attempts per run (each gets its own check-in slot).
pub const MAX_SLOTS: usize = 64;

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_EFER: u32 = 0xC000_0080;
/// IA32_APIC_BASE bit 10: x2APIC mode.
const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: the APIC is globally enabled.
const APIC_BASE_EN: u64 = 1 << 11;

// Local APIC registers (xAPIC MMIO offsets; the x2APIC MSR is 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_SVR: u32 = 0xF0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
/// SVR bit 8: APIC software enable (the crashed kernel's `lapic_shutdown` clears it).
const SVR_ENABLE: u32 = 1 << 8;
/// ICR delivery status (xAPIC only): the previous IPI is still being sent.
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 0x500;
const ICR_STARTUP: u32 = 0x600;
const ICR_NMI: u32 = 0x400;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_LEVEL: u32 = 1 << 15;

/// The local APIC of the CPU running this code.
#[derive(Clone, Copy, Debug)]
pub enum Lapic {
    /// xAPIC: memory-mapped registers at this physical base (mapped uncached).
    X {
        /// Register base (IA32_APIC_BASE).
        base: u64,
    },
    /// x2APIC: registers are MSRs.
    X2,
}

/// Why an IPI could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiError {
    /// The ICR still showed the previous IPI pending after the bounded wait.
    Busy,
    /// An xAPIC destination above 255.
    Destination(u32),
}

impl core::fmt::Display for IpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IpiError::Busy => f.write_str("ICR stayed busy"),
            IpiError::Destination(id) => write!(f, "APIC ID {id} not reachable in xAPIC mode"),
        }
    }
}

fn rdmsr(msr: u32) -> u64 {
    // SAFETY: only architectural MSRs every x86_64 CPU with a local APIC has are read here
    // (APIC base, EFER, and x2APIC registers after x2APIC mode was seen enabled); reads have no
    // side effects.
    unsafe { Msr::new(msr).read() }
}

impl Lapic {
    /// This CPU's local APIC in the mode it is in; maps the xAPIC page uncached. `None` when the
    /// APIC is globally disabled (IA32_APIC_BASE bit 11 clear): then no IPI can be sent.
    pub fn current() -> Result<Option<Lapic>, MapError> {
        let msr = rdmsr(IA32_APIC_BASE);
        if msr & APIC_BASE_EN == 0 {
            return Ok(None);
        }
        if msr & APIC_BASE_EXTD != 0 {
            return Ok(Some(Lapic::X2));
        }
        let base = cpu::apic_base();
        paging::map(base, 0x1000, Cache::Uncached)?;
        Ok(Some(Lapic::X { base }))
    }

    fn read(self, reg: u32) -> u32 {
        match self {
            // SAFETY: `base` is this CPU's APIC page, mapped uncached in `current`; `reg` is one
            // of the register offsets above, 16-byte aligned, read 32 bits wide as required.
            Lapic::X { base } => unsafe {
                core::ptr::read_volatile((base + u64::from(reg)) as *const u32)
            },
            Lapic::X2 => rdmsr(0x800 + reg / 16) as u32,
        }
    }

    fn write(self, reg: u32, value: u32) {
        match self {
            // SAFETY: as in `read`; the registers written here (SVR, ICR) have no effect on
            // memory.
            Lapic::X { base } => unsafe {
                core::ptr::write_volatile((base + u64::from(reg)) as *mut u32, value)
            },
            // SAFETY: x2APIC mode is on (checked in `current`); SVR is written only to set the
            // software-enable bit, which changes no memory.
            Lapic::X2 => unsafe { Msr::new(0x800 + reg / 16).write(u64::from(value)) },
        }
    }

    /// This CPU's APIC ID.
    pub fn id(self) -> u32 {
        match self {
            Lapic::X { .. } => self.read(REG_ID) >> 24,
            Lapic::X2 => self.read(REG_ID),
        }
    }

    /// Software-enables the APIC (SVR bit 8), keeping the spurious vector. Interrupts stay off
    /// on every rkdump CPU, so nothing is ever delivered through it.
    pub fn enable(self) {
        let svr = self.read(REG_SVR);
        if svr & SVR_ENABLE == 0 {
            self.write(REG_SVR, svr | SVR_ENABLE | 0xFF);
        }
    }

    fn send(self, dest: u32, low: u32) -> Result<(), IpiError> {
        match self {
            Lapic::X { .. } => {
                let dest8 = u8::try_from(dest).map_err(|_| IpiError::Destination(dest))?;
                self.wait_idle()?;
                self.write(REG_ICR_HIGH, u32::from(dest8) << 24);
                self.write(REG_ICR_LOW, low);
                self.wait_idle()
            }
            Lapic::X2 => {
                // SAFETY: x2APIC mode is on; an ICR write sends the IPI the caller asked for
                // (INIT or STARTUP to an AP the wake plan chose), which touches no memory of
                // this CPU.
                unsafe { Msr::new(0x830).write((u64::from(dest) << 32) | u64::from(low)) };
                Ok(())
            }
        }
    }

    fn wait_idle(self) -> Result<(), IpiError> {
        // Bounded: delivery takes well under a microsecond; 10^6 reads are milliseconds.
        for _ in 0..1_000_000 {
            if self.read(REG_ICR_LOW) & ICR_PENDING == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(IpiError::Busy)
    }

    /// INIT (assert, then in xAPIC mode de-assert for CPUs that want it) to `dest`: the CPU
    /// resets into wait-for-SIPI. Also used to park an AP that missed its check-in.
    pub fn send_init(self, dest: u32) -> Result<(), IpiError> {
        self.send(dest, ICR_INIT | ICR_LEVEL | ICR_ASSERT)?;
        match self {
            Lapic::X { .. } => self.send(dest, ICR_INIT | ICR_LEVEL),
            // x2APIC mode has no INIT level de-assert (Intel SDM Vol. 3A §11.12, the ICR).
            Lapic::X2 => Ok(()),
        }
    }

    /// NMI to `dest`: wakes an AP halted in [`work_loop`] (an NMI wakes `hlt` with interrupts
    /// off and needs neither a software-enabled APIC on the AP nor an EOI).
    fn send_nmi(self, dest: u32) -> Result<(), IpiError> {
        self.send(dest, ICR_NMI | ICR_ASSERT)
    }

    /// STARTUP IPI: `dest` starts in real mode at `vector << 12`.
    pub fn send_startup(self, dest: u32, vector: u8) -> Result<(), IpiError> {
        self.send(dest, ICR_STARTUP | u32::from(vector))
    }
}

// The trampoline, copied to a page below 1 MiB. Position-independent: real mode finds its base
// in CS, and the patched fields (GDT base, far-jump targets, CRs, stack, entry) are written by
// `Trampoline::install`/`arm` after the copy. No relocations: every reference is a difference of
// labels within the blob.
core::arch::global_asm!(
    r#"
    .section .rodata.rkdump_ap_tramp, "a"
    .balign 16
    .globl rkdump_ap_tramp_start
rkdump_ap_tramp_start:
    .code16
    cli
    cld
    mov %cs, %bx
    mov %bx, %ds
    movzwl %bx, %ebx
    shl $4, %ebx
    lgdtl (rkdump_ap_gdtr - rkdump_ap_tramp_start)
    mov $0x11, %eax
    mov %eax, %cr0
    ljmpl *(rkdump_ap_pm_ptr - rkdump_ap_tramp_start)

    .code32
rkdump_ap_pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (rkdump_ap_cr4 - rkdump_ap_tramp_start)(%ebx), %eax
    mov %eax, %cr4
    mov (rkdump_ap_cr3_low - rkdump_ap_tramp_start)(%ebx), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    mov (rkdump_ap_efer - rkdump_ap_tramp_start)(%ebx), %eax
    xor %edx, %edx
    wrmsr
    /* PG | WP | NE | ET | PE: caches on (INIT leaves CD and NW set) */
    mov $0x80010031, %eax
    mov %eax, %cr0
    ljmpl *(rkdump_ap_lm_ptr - rkdump_ap_tramp_start)(%ebx)

    .code64
rkdump_ap_lm:
    mov %ebx, %ebx
    mov (rkdump_ap_cr3 - rkdump_ap_tramp_start)(%rbx), %rax
    mov %rax, %cr3
    /* Take the stack: a second CPU arriving on the same arming finds 0 and parks. */
    xor %eax, %eax
    lock xchg %rax, (rkdump_ap_stack - rkdump_ap_tramp_start)(%rbx)
    test %rax, %rax
    jz 2f
    mov %rax, %rsp
    mov (rkdump_ap_arg - rkdump_ap_tramp_start)(%rbx), %rdi
    mov (rkdump_ap_target - rkdump_ap_tramp_start)(%rbx), %rax
    xor %ebp, %ebp
    call *%rax
2:
    cli
    hlt
    jmp 2b

    .balign 8
rkdump_ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00AF9A000000FFFF
rkdump_ap_gdt_end:
    .globl rkdump_ap_gdtr
rkdump_ap_gdtr:
    .word rkdump_ap_gdt_end - rkdump_ap_gdt - 1
    .long rkdump_ap_gdt - rkdump_ap_tramp_start
    .globl rkdump_ap_pm_ptr
rkdump_ap_pm_ptr:
    .long rkdump_ap_pm - rkdump_ap_tramp_start
    .word 0x08
    .globl rkdump_ap_lm_ptr
rkdump_ap_lm_ptr:
    .long rkdump_ap_lm - rkdump_ap_tramp_start
    .word 0x18
    .balign 8
    .globl rkdump_ap_cr3
rkdump_ap_cr3:
    .quad 0
    .globl rkdump_ap_stack
rkdump_ap_stack:
    .quad 0
    .globl rkdump_ap_target
rkdump_ap_target:
    .quad 0
    .globl rkdump_ap_arg
rkdump_ap_arg:
    .quad 0
    .globl rkdump_ap_cr3_low
rkdump_ap_cr3_low:
    .long 0
    .globl rkdump_ap_cr4
rkdump_ap_cr4:
    .long 0
    .globl rkdump_ap_efer
rkdump_ap_efer:
    .long 0
    .globl rkdump_ap_tramp_end
rkdump_ap_tramp_end:
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static rkdump_ap_tramp_start: u8;
    static rkdump_ap_tramp_end: u8;
    static rkdump_ap_gdtr: u8;
    static rkdump_ap_pm_ptr: u8;
    static rkdump_ap_lm_ptr: u8;
    static rkdump_ap_cr3: u8;
    static rkdump_ap_stack: u8;
    static rkdump_ap_target: u8;
    static rkdump_ap_arg: u8;
    static rkdump_ap_cr3_low: u8;
    static rkdump_ap_cr4: u8;
    static rkdump_ap_efer: u8;
}

/// Offset of a trampoline label from the blob's start.
fn offset(label: *const u8) -> u64 {
    label as u64 - core::ptr::addr_of!(rkdump_ap_tramp_start) as u64
}

/// Bytes the trampoline takes in its page.
fn tramp_len() -> u64 {
    offset(core::ptr::addr_of!(rkdump_ap_tramp_end))
}

const _: () = assert!(core::mem::size_of::<u64>() == 8);

/// The installed trampoline: code page below 1 MiB, then the page holding the copy of the
/// top-level page table.
#[derive(Debug)]
pub struct Trampoline {
    page: u64,
}

impl Trampoline {
    /// Copies the trampoline to `pages` (its first page is the code, the second gets a copy of
    /// the active top-level page table) and fills in the fields that do not change per AP.
    /// `None` when the first page is not below 1 MiB (no STARTUP vector reaches it).
    ///
    /// # Safety
    /// `pages` is the start of two 4 KiB pages of RAM that belong to the caller for the rest of
    /// the run, identity-mapped write-back, referenced by nothing else.
    pub unsafe fn install(pages: u64) -> Option<Trampoline> {
        if pages >= 0x10_0000 || pages & 0xfff != 0 || tramp_len() > 4096 {
            return None;
        }
        let root = cpu::cr3() & 0x000F_FFFF_FFFF_F000;
        let low_root = pages + 4096;
        // SAFETY: the caller owns both pages; the blob is `tramp_len()` <= 4096 bytes of this
        // image's read-only data and the root is the live top-level table (one page, identity
        // mapped like all of rkdump's page-table pages).
        unsafe {
            core::ptr::copy_nonoverlapping(
                core::ptr::addr_of!(rkdump_ap_tramp_start),
                pages as *mut u8,
                tramp_len() as usize,
            );
            core::ptr::copy_nonoverlapping(root as *const u8, low_root as *mut u8, 4096);
        }
        let t = Trampoline { page: pages };
        // The GDT base and far pointers hold blob offsets; make them linear addresses.
        for field in [
            offset(core::ptr::addr_of!(rkdump_ap_gdtr)) + 2,
            offset(core::ptr::addr_of!(rkdump_ap_pm_ptr)),
            offset(core::ptr::addr_of!(rkdump_ap_lm_ptr)),
        ] {
            let v = t.read32(field);
            t.write32(field, v + pages as u32);
        }
        const CR4_PAE: u64 = 1 << 5;
        const CR4_MCE: u64 = 1 << 6;
        const EFER_LME: u64 = 1 << 8;
        const EFER_NXE: u64 = 1 << 11;
        let cr4 = CR4_PAE | (cpu::cr4() & (cpu::CR4_LA57 | CR4_MCE));
        let efer = EFER_LME | (rdmsr(IA32_EFER) & EFER_NXE);
        t.write32(offset(core::ptr::addr_of!(rkdump_ap_cr4)), cr4 as u32);
        t.write32(offset(core::ptr::addr_of!(rkdump_ap_efer)), efer as u32);
        t.write32(
            offset(core::ptr::addr_of!(rkdump_ap_cr3_low)),
            low_root as u32,
        );
        t.write64(offset(core::ptr::addr_of!(rkdump_ap_cr3)), root);
        t.write64(
            offset(core::ptr::addr_of!(rkdump_ap_target)),
            rkdump_ap_entry as *const () as u64,
        );
        Some(t)
    }

    /// The STARTUP vector that starts a CPU here.
    pub fn vector(&self) -> u8 {
        (self.page >> 12) as u8
    }

    fn field(&self, off: u64) -> u64 {
        debug_assert!(off + 8 <= tramp_len());
        self.page + off
    }

    fn read32(&self, off: u64) -> u32 {
        // SAFETY: a field inside the installed blob (page owned per `install`'s contract).
        unsafe { core::ptr::read_unaligned(self.field(off) as *const u32) }
    }

    fn write32(&self, off: u64, v: u32) {
        // SAFETY: as in `read32`; no AP runs the trampoline while it is installed.
        unsafe { core::ptr::write_unaligned(self.field(off) as *mut u32, v) }
    }

    fn write64(&self, off: u64, v: u64) {
        // SAFETY: as in `write32`.
        unsafe { core::ptr::write_unaligned(self.field(off) as *mut u64, v) }
    }

    /// Sets up the next AP start: its stack and its [`ApBlock`]. The stack field is written last
    /// (release): an AP that takes it sees the block pointer.
    pub fn arm(&self, ap: &'static ApBlock) {
        self.write64(
            offset(core::ptr::addr_of!(rkdump_ap_arg)),
            core::ptr::from_ref(ap) as u64,
        );
        let stack = self.field(offset(core::ptr::addr_of!(rkdump_ap_stack)));
        // SAFETY: the stack field is 8-byte aligned (`.balign 8` above) inside the owned page;
        // APs only ever `lock xchg` it, so an atomic view of it is sound.
        let stack = unsafe { AtomicU64::from_ptr(stack as *mut u64) };
        stack.store(ap.stack_top, Ordering::Release);
    }

    /// Takes the armed stack back so a late AP cannot use it (after a check-in timeout).
    pub fn disarm(&self) {
        let stack = self.field(offset(core::ptr::addr_of!(rkdump_ap_stack)));
        // SAFETY: as in `arm`.
        let stack = unsafe { AtomicU64::from_ptr(stack as *mut u64) };
        stack.store(0, Ordering::Release);
    }
}

/// What an AP needs in 64-bit mode: its GDT and TSS, stack, check-in slot and CPU index.
#[derive(Debug)]
pub struct ApBlock {
    gdt: GlobalDescriptorTable,
    code: x86_64::registers::segmentation::SegmentSelector,
    data: x86_64::registers::segmentation::SegmentSelector,
    tss: x86_64::registers::segmentation::SegmentSelector,
    stack_top: u64,
    slot: usize,
    index: usize,
}

impl ApBlock {
    /// Builds the block of the AP started in check-in `slot` as CPU `index` (1-based; 0 is the
    /// BSP), running on the stack ending at `stack_top` with IST stacks ending at `ist_tops`
    /// (double fault, NMI, machine check: the same IST slots as the BSP's, so the shared IDT
    /// applies).
    ///
    /// # Safety
    /// The stacks are RAM owned by the caller for the rest of the run, identity-mapped, 16-byte
    /// aligned tops, referenced by nothing else.
    pub unsafe fn new(
        slot: usize,
        index: usize,
        stack_top: u64,
        ist_tops: [u64; 3],
    ) -> &'static ApBlock {
        let mut tss = TaskStateSegment::new();
        let mut ist = tss.interrupt_stack_table;
        for (i, top) in [gdt::IST_DOUBLE_FAULT, gdt::IST_NMI, gdt::IST_MACHINE_CHECK]
            .into_iter()
            .zip(ist_tops)
        {
            ist[usize::from(i)] = VirtAddr::new_truncate(top);
        }
        tss.interrupt_stack_table = ist;
        let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));
        let mut table = GlobalDescriptorTable::new();
        let code = table.append(Descriptor::kernel_code_segment());
        let data = table.append(Descriptor::kernel_data_segment());
        let tss = table.append(Descriptor::tss_segment(tss));
        Box::leak(Box::new(ApBlock {
            gdt: table,
            code,
            data,
            tss,
            stack_top,
            slot,
            index,
        }))
    }
}

const SLOT_WAITING: u8 = 0;
const SLOT_ONLINE: u8 = 1;
const SLOT_REJECTED: u8 = 2;

static SLOTS: [AtomicU8; MAX_SLOTS] = [const { AtomicU8::new(SLOT_WAITING) }; MAX_SLOTS];

/// Whether the AP started in `slot` checked in. `reject`: if it has not, mark the slot so that
/// it halts should it arrive later, and report it as not online.
pub fn checked_in(slot: usize, reject: bool) -> bool {
    let Some(s) = SLOTS.get(slot) else {
        return false;
    };
    if reject {
        match s.compare_exchange(
            SLOT_WAITING,
            SLOT_REJECTED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => false,
            Err(state) => state == SLOT_ONLINE,
        }
    } else {
        s.load(Ordering::Acquire) == SLOT_ONLINE
    }
}

/// Where the trampoline lands in Rust: own GDT, TSS and the shared IDT, check-in, work loop.
extern "C" fn rkdump_ap_entry(block: &'static ApBlock) -> ! {
    block.gdt.load();
    // SAFETY: the selectors index the descriptors of the GDT just loaded, which lives for the
    // rest of the run (leaked in `ApBlock::new`); the TSS descriptor is this AP's own, so `ltr`
    // finds it not busy.
    unsafe {
        CS::set_reg(block.code);
        for set in [
            DS::set_reg,
            ES::set_reg,
            SS::set_reg,
            FS::set_reg,
            GS::set_reg,
        ] {
            set(block.data);
        }
        load_tss(block.tss);
    }
    idt::load();
    let online = SLOTS.get(block.slot).is_some_and(|s| {
        s.compare_exchange(
            SLOT_WAITING,
            SLOT_ONLINE,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    });
    if !online {
        // The BSP gave up on this start; it must never take part in work.
        cpu::halt_forever();
    }
    work_loop(block.index)
}

#[derive(Clone, Copy)]
struct Posted {
    generation: u64,
    call: unsafe fn(usize, usize),
    data: usize,
    cpus: usize,
    /// APs that have not joined by the time the posting CPU finished its own part skip the job
    /// ([`Join::Late`]).
    late_skip: bool,
}

/// Whether every AP must run a job, or one that comes late skips it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Every AP runs its index; [`run`] waits for all of them.
    All,
    /// An AP runs the job only if it takes it up before the posting CPU has finished its own
    /// call; [`run`] waits only for those. For jobs that take work from a shared counter, so
    /// that a vCPU the host has not scheduled (or an AP still waking) never holds up a round.
    Late,
}

/// The joins of the current [`Join::Late`] job: its generation (low 32 bits) in the high half,
/// [`JOIN_CLOSED`], and the count of APs that joined in the low bits.
static JOINS: AtomicU64 = AtomicU64::new(0);
const JOIN_CLOSED: u64 = 1 << 31;
/// The count of APs that joined, below [`JOIN_CLOSED`].
const JOIN_COUNT: u64 = JOIN_CLOSED - 1;

/// The high half of [`JOINS`] for the job of `generation`.
fn join_tag(generation: u64) -> u64 {
    (generation & 0xFFFF_FFFF) << 32
}

/// Takes part in the late-skip job of `generation` unless the posting CPU closed it.
fn join(generation: u64) -> bool {
    let tag = join_tag(generation);
    let mut cur = JOINS.load(Ordering::Acquire);
    loop {
        if cur & !0xFFFF_FFFF != tag || cur & JOIN_CLOSED != 0 {
            return false;
        }
        match JOINS.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

static POSTED: Mutex<Option<Posted>> = Mutex::new(None);
static STOP: AtomicBool = AtomicBool::new(false);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);

fn reload_cr3() {
    // SAFETY: writing back the current CR3 only flushes this CPU's non-global translations.
    unsafe {
        core::arch::asm!("mov %cr3, {0}", "mov {0}, %cr3", out(reg) _, options(att_syntax, nostack))
    };
}

/// Idle polls an AP makes before it halts: long enough to span the gap between two jobs of one
/// phase (compression posts a job per batch), short next to the phases that run on the main
/// CPU alone (reading, device I/O), where a spinning vCPU would take a host CPU from the others.
const IDLE_SPINS: u32 = 20_000;

/// How the main CPU wakes halted APs: its APIC and each AP's APIC ID by index.
struct Waker {
    lapic: Lapic,
    ids: [u32; MAX_SLOTS],
}

static WAKER: Mutex<Option<Waker>> = Mutex::new(None);
/// The initial APIC ID of the CPU running rkdump once APs exist (`u32::MAX` before): NMIs on any
/// other CPU are wake-ups (see [`absorbs_nmi`]).
static MAIN_APIC: AtomicU32 = AtomicU32::new(u32::MAX);
/// Per AP index: it is about to halt or halted, waiting for an NMI.
static SLEEPING: [AtomicBool; MAX_SLOTS] = [const { AtomicBool::new(false) }; MAX_SLOTS];
/// NMIs taken by APs (wake-ups and any platform NMI, which an AP cannot tell apart).
static AP_NMIS: AtomicU64 = AtomicU64::new(0);
/// NMIs sent to wake APs.
static WAKE_NMIS: AtomicU64 = AtomicU64::new(0);

/// Records that the AP with APIC ID `apic_id` runs jobs as `index`, and `lapic` (this CPU's) as
/// the way to wake it. Called by the main CPU after the AP checked in.
pub fn register_ap(lapic: Lapic, index: usize, apic_id: u32) {
    MAIN_APIC.store(initial_apic_id(), Ordering::SeqCst);
    let mut w = WAKER.lock();
    let w = w.get_or_insert(Waker {
        lapic,
        ids: [u32::MAX; MAX_SLOTS],
    });
    if let Some(slot) = w.ids.get_mut(index) {
        *slot = apic_id;
    }
}

/// Whether an NMI on this CPU is an AP's (a wake-up): taken silently, since an AP neither owns
/// the console nor may end the run. Called from the NMI path.
pub fn absorbs_nmi() -> bool {
    let main = MAIN_APIC.load(Ordering::Relaxed);
    if main == u32::MAX || initial_apic_id() == main {
        return false;
    }
    AP_NMIS.fetch_add(1, Ordering::Relaxed);
    true
}

/// (NMIs sent to wake APs, NMIs the APs took) so far.
pub fn wake_counts() -> (u64, u64) {
    (
        WAKE_NMIS.load(Ordering::Relaxed),
        AP_NMIS.load(Ordering::Relaxed),
    )
}

/// Sends an NMI to every AP in `1..cpus` that announced it is halting. A send that fails is
/// left to the next call (the caller repeats while it waits).
fn wake_sleepers(cpus: usize) {
    let Some(w) = WAKER.try_lock() else { return };
    let Some(w) = w.as_ref() else { return };
    for (sleeping, &id) in SLEEPING.iter().zip(&w.ids).take(cpus).skip(1) {
        if sleeping.load(Ordering::SeqCst) && id != u32::MAX && w.lapic.send_nmi(id).is_ok() {
            WAKE_NMIS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn work_loop(index: usize) -> ! {
    // Jobs posted before this CPU came online are not its business (and their closures are gone).
    let mut seen = GENERATION.load(Ordering::Acquire);
    let mut idle = 0u32;
    let sleeping = SLEEPING.get(index);
    loop {
        if STOP.load(Ordering::Acquire) {
            cpu::halt_forever();
        }
        if GENERATION.load(Ordering::Acquire) == seen {
            idle = idle.saturating_add(1);
            if idle < IDLE_SPINS {
                core::hint::spin_loop();
                continue;
            }
            // Announce, then look once more: either the main CPU's posting comes after the
            // announcement and it sends an NMI, or this load sees the new job (both SeqCst).
            // An NMI taken between the look and `hlt` is lost; `run` sends again while it waits.
            if let Some(s) = sleeping {
                s.store(true, Ordering::SeqCst);
                if GENERATION.load(Ordering::SeqCst) == seen && !STOP.load(Ordering::SeqCst) {
                    x86_64::instructions::hlt();
                }
                s.store(false, Ordering::SeqCst);
            }
            idle = 0;
            continue;
        }
        idle = 0;
        let Some(job) = *POSTED.lock() else {
            continue;
        };
        seen = job.generation;
        if index < job.cpus && (!job.late_skip || join(job.generation)) {
            reload_cr3();
            // SAFETY: `run` posted `call::<F>` with `data` pointing at an `F` that it keeps
            // alive until every participant (index < cpus) has added to DONE below.
            unsafe { (job.call)(job.data, index) };
            DONE.fetch_add(1, Ordering::Release);
        }
    }
}

/// # Safety
/// `data` is the address of a live `F`.
unsafe fn call<F: Fn(usize) + Sync>(data: usize, index: usize) {
    // SAFETY: per the contract, and `F: Sync` makes the shared reference usable on this CPU.
    let f = unsafe { &*(data as *const F) };
    f(index);
}

/// Runs `job(i)` for every `i` in `0..cpus` at once: `0` on this CPU, `1..cpus` on the APs that
/// checked in as those indices, and returns when all have finished (with [`Join::Late`]: all
/// that joined in time; the others never call `job`). `expired` is polled while waiting; once
/// it says the deadline passed, `stalled(done, expected)` is called and must not return (a job
/// still running on an AP borrows `job`).
///
/// Called from one CPU only (the BSP); with `cpus <= 1` it just runs `job(0)`.
pub fn run<F: Fn(usize) + Sync>(
    cpus: usize,
    joins: Join,
    job: &F,
    expired: &dyn Fn() -> bool,
    stalled: fn(usize, usize) -> !,
) {
    if cpus <= 1 {
        job(0);
        return;
    }
    let late_skip = joins == Join::Late;
    let generation;
    {
        let mut posted = POSTED.lock();
        generation = GENERATION.load(Ordering::Relaxed) + 1;
        DONE.store(0, Ordering::Relaxed);
        JOINS.store(join_tag(generation), Ordering::Relaxed);
        *posted = Some(Posted {
            generation,
            call: call::<F>,
            data: core::ptr::from_ref(job) as usize,
            cpus,
            late_skip,
        });
        // Release: an AP that sees the new generation finds the posting (and DONE and JOINS
        // reset); SeqCst against the APs' sleep announcement (`work_loop`).
        GENERATION.store(generation, Ordering::SeqCst);
    }
    wake_sleepers(cpus);
    job(0);
    let expected = if late_skip {
        // From here no AP joins: wait for those that did.
        (JOINS.fetch_or(JOIN_CLOSED, Ordering::AcqRel) & JOIN_COUNT) as usize
    } else {
        cpus - 1
    };
    let mut polls = 0u32;
    loop {
        let done = DONE.load(Ordering::Acquire);
        if done >= expected {
            break;
        }
        if expired() {
            stalled(done, expected);
        }
        polls = polls.wrapping_add(1);
        // An AP still announced as sleeping has missed its wake-up (see `work_loop`); late
        // joiners are not waited for, so only a job every AP must run needs it.
        if !late_skip && polls.is_multiple_of(1 << 16) {
            wake_sleepers(cpus);
        }
        core::hint::spin_loop();
    }
    // Every participant is done with `job`: leave no pointer to it behind.
    if let Some(p) = POSTED.lock().as_mut() {
        p.data = 0;
        p.cpus = 0;
    }
}

/// Makes every AP leave its work loop and halt (between jobs; never call it while [`run`] waits).
pub fn stop_all() {
    STOP.store(true, Ordering::Release);
}

/// Whether this CPU is the boot processor (IA32_APIC_BASE bit 8, set by the hardware at
/// power-on and kept across kexec; an MSR read, the APIC itself is not touched).
pub fn is_bsp() -> bool {
    rdmsr(IA32_APIC_BASE) & (1 << 8) != 0
}

/// This CPU's initial APIC ID from CPUID (leaf 0xB's x2APIC ID where the leaf exists, else leaf
/// 1 EBX[31:24]), read without touching the local APIC.
pub fn initial_apic_id() -> u32 {
    let max = core::arch::x86_64::__cpuid(0).eax;
    if max >= 0xB {
        let leaf = core::arch::x86_64::__cpuid_count(0xB, 0);
        // A leaf 0xB with EBX = 0 is not implemented.
        if leaf.ebx != 0 {
            return leaf.edx;
        }
    }
    core::arch::x86_64::__cpuid(1).ebx >> 24
}
