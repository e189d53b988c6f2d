//! How a run ends: `rkdump.action=` (reboot, poweroff, halt), and the test-only
//! `rkdump.exit=qemu` that reports the outcome through QEMU's isa-debug-exit device instead.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::arch::cpu;
use crate::hw::acpi::Pm1Control;
use crate::hw::ports;

/// What the run achieved, reported to the test runner by `rkdump.exit=qemu`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The job finished (dump complete, or nothing asked of the run failed).
    Success,
    /// A fatal error or an exception ended the run.
    Failed,
}

/// Final action after the run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Action {
    /// Reset the machine (default, like kdump's `final_action`).
    Reboot = 0,
    /// ACPI S5.
    Poweroff = 1,
    /// Stop the CPU and leave the machine as it is.
    Halt = 2,
}

static ACTION: AtomicU8 = AtomicU8::new(Action::Reboot as u8);
static QEMU_EXIT: AtomicBool = AtomicBool::new(false);

/// The ACPI sleep-control data needed for S5, filled in once ACPI is parsed.
#[derive(Clone, Copy, Debug)]
pub struct AcpiPowerOff {
    /// PM1a control block.
    pub pm1a_cnt: Pm1Control,
    /// PM1b control block, if any.
    pub pm1b_cnt: Option<Pm1Control>,
    /// SLP_TYPa value for \_S5.
    pub slp_typ_a: u16,
    /// SLP_TYPb value for \_S5.
    pub slp_typ_b: u16,
}

static ACPI_OFF: spin::Mutex<Option<AcpiPowerOff>> = spin::Mutex::new(None);

/// Sets the final action and whether to exit through isa-debug-exit.
pub fn configure(action: Action, qemu_exit: bool) {
    ACTION.store(action as u8, Ordering::SeqCst);
    QEMU_EXIT.store(qemu_exit, Ordering::SeqCst);
}

/// Records how to enter S5 on this machine.
pub fn set_acpi_poweroff(data: AcpiPowerOff) {
    *ACPI_OFF.lock() = Some(data);
}

fn action() -> Action {
    match ACTION.load(Ordering::SeqCst) {
        1 => Action::Poweroff,
        2 => Action::Halt,
        _ => Action::Reboot,
    }
}

/// Ends the run: reports the outcome, then performs the configured action. Never returns.
pub fn finish(outcome: Outcome) -> ! {
    let action = action();
    crate::rkline!(
        "finish outcome={} action={}",
        match outcome {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
        },
        match action {
            Action::Reboot => "reboot",
            Action::Poweroff => "poweroff",
            Action::Halt => "halt",
        }
    );
    crate::console::drain();
    if QEMU_EXIT.load(Ordering::SeqCst) {
        // QEMU exits with (value << 1) | 1: 0x10 -> 33 (pass), 0x11 -> 35 (fail).
        let value: u32 = match outcome {
            Outcome::Success => 0x10,
            Outcome::Failed => 0x11,
        };
        ports::qemu_exit(value);
    }
    match action {
        Action::Reboot => reboot(),
        Action::Poweroff => poweroff(),
        Action::Halt => cpu::halt_forever(),
    }
}

fn reboot() -> ! {
    // The chipset's reset control register first, then the keyboard controller: the standard
    // last-resort reset paths Linux also uses (reboot=pci, reboot=kbd).
    ports::reset_cf9();
    spin_a_while();
    ports::reset_kbd();
    spin_a_while();
    crate::rkerror!("reset did not happen; halting");
    cpu::halt_forever()
}

fn poweroff() -> ! {
    let data = *ACPI_OFF.lock();
    match data {
        Some(d) => {
            d.pm1a_cnt.sleep(d.slp_typ_a);
            if let Some(b) = d.pm1b_cnt {
                b.sleep(d.slp_typ_b);
            }
            spin_a_while();
            crate::rkerror!("ACPI S5 did not power off; halting");
        }
        None => crate::rkerror!("poweroff: no ACPI PM1 control block known; halting"),
    }
    cpu::halt_forever()
}

fn spin_a_while() {
    let start = cpu::rdtsc();
    // About a second or more on any CPU of the last decade; exact time does not matter.
    while cpu::rdtsc().wrapping_sub(start) < 3_000_000_000 {
        core::hint::spin_loop();
    }
}
