//! What [`super::run`] did, per function, rendered one console line each:
//! `bdf vendor:device class -> method, ms, outcome`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::reset::{Evidence, NotReady};
use super::restore::{PlanError, Stuck};
use super::saved::Source;
use super::{ResetMethods, ResetPolicy};
use crate::pci::{Bdf, PciDevice};

/// A reset method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Driver soft reset.
    Preinit,
    /// PCIe FLR.
    Flr,
    /// Advanced-features FLR.
    AfFlr,
    /// PM D3hot -> D0.
    Pm,
    /// Secondary bus reset.
    Sbr,
}

impl Method {
    /// In the order they are tried.
    pub const ORDER: [Method; 5] = [
        Method::Preinit,
        Method::Flr,
        Method::AfFlr,
        Method::Pm,
        Method::Sbr,
    ];

    /// The policy bit.
    pub fn bit(self) -> ResetMethods {
        match self {
            Method::Preinit => ResetMethods::PREINIT,
            Method::Flr => ResetMethods::FLR,
            Method::AfFlr => ResetMethods::AFFLR,
            Method::Pm => ResetMethods::PM,
            Method::Sbr => ResetMethods::SBR,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Preinit => "preinit",
            Method::Flr => "flr",
            Method::AfFlr => "afflr",
            Method::Pm => "pm",
            Method::Sbr => "sbr",
        })
    }
}

/// A method tried without success (the next one was tried after it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The method.
    pub method: Method,
    /// What happened.
    pub result: AttemptResult,
    /// Time it took.
    pub ms: u32,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.method, self.result)
    }
}

/// Why an attempt did not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// Issued, the function answered, but the read-back shows nothing was reset.
    NoEffect,
    /// A driver's preinit did its writes but could not prove a reset.
    Unproven(String),
    /// The driver's preinit failed.
    Failed(String),
    /// Refused by a safety rule (e.g. SBR with a denied function below the bridge).
    Refused(String),
    /// Not started: the per-device cap or the budget had too little time left.
    NoTime,
}

impl fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptResult::NoEffect => f.write_str("no effect"),
            AttemptResult::Unproven(s) => write!(f, "unproven ({s})"),
            AttemptResult::Failed(s) => write!(f, "failed ({s})"),
            AttemptResult::Refused(s) => write!(f, "refused ({s})"),
            AttemptResult::NoTime => f.write_str("no time left"),
        }
    }
}

/// How configuration was put back after an FLR, AF FLR, PM or bus reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Restored from `source`. `stuck` lists registers that never read back as written.
    Restored {
        /// Where the header came from.
        source: Source,
        /// Config writes issued.
        writes: usize,
        /// Registers that differ after their retries.
        stuck: Vec<Stuck>,
    },
    /// Neither the saved source nor the snapshot holds assigned BARs: the function needs BAR
    /// assignment from its parent bridge's window, which rkdump does not do yet. Nothing was
    /// written; see [`Report::needs_bar_assignment`].
    NoConfig,
    /// The saved header could not be applied.
    Failed(PlanError),
    /// The function did not answer after the reset, so nothing was restored.
    NotReady(NotReady),
}

impl fmt::Display for Restore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restore::Restored { source, stuck, .. } => {
                write!(f, "bars restored from {source}")?;
                for s in stuck {
                    write!(
                        f,
                        ", {:#04x} reads {:#010x} not {:#010x}",
                        s.off, s.got, s.want
                    )?;
                }
                Ok(())
            }
            Restore::NoConfig => {
                f.write_str("no config to restore: BARs need assignment from the parent window")
            }
            Restore::Failed(e) => write!(f, "not restored: {e}"),
            Restore::NotReady(e) => write!(f, "not restored: {e}"),
        }
    }
}

impl Restore {
    /// Restored without stuck registers.
    pub fn is_complete(&self) -> bool {
        matches!(self, Restore::Restored { stuck, .. } if stuck.is_empty())
    }
}

/// Why a function was only quiesced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// `rkdump.deny=` lists it.
    Denied,
    /// `rkdump.allow=` is set and does not list it.
    NotAllowed,
    /// No permitted method applies.
    NoMethod,
    /// Methods ran but none proved a reset.
    NoEffect,
    /// The reset budget ran out before its turn.
    Budget,
    /// The function read all-ones.
    Gone,
}

/// Functions [`super::run`] never resets: their decode keeps the platform working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Host bridge (class 0600).
    HostBridge,
    /// PCI-to-PCI bridge or root/switch port: forwarding kept for the devices behind it.
    Bridge,
    /// Other bridges (ISA/LPC: console, ACPI, timers; CardBus) and the IOMMU.
    System,
}

/// Final state of one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A hardware method reset it, proven by read-back.
    Reset {
        /// Method.
        method: Method,
        /// What changed.
        evidence: Evidence,
        /// Configuration restore.
        restore: Restore,
    },
    /// Its driver's preinit reset it.
    Preinit {
        /// Driver name.
        driver: &'static str,
        /// The driver's proof.
        detail: String,
    },
    /// Reset by a secondary bus reset issued for another function below `bridge`.
    ResetBy {
        /// The bridge whose bus was reset.
        bridge: Bdf,
        /// Read-back, if it showed anything.
        evidence: Option<Evidence>,
        /// Configuration restore.
        restore: Restore,
    },
    /// A method was issued and the function never answered again; left alone.
    NotReady {
        /// The method.
        method: Method,
        /// How it failed to answer.
        how: NotReady,
    },
    /// Quiesced only.
    Quiesced(Why),
    /// Not quiesced and not reset.
    Kept(Kept),
}

/// One function's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Base class.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Time spent on it (including functions restored after its bus reset).
    pub ms: u32,
    /// Result.
    pub outcome: Outcome,
    /// Methods tried before the one that counted.
    pub attempts: Vec<Attempt>,
    /// Methods that did not apply, with the reason.
    pub skipped: Vec<(Method, &'static str)>,
    /// Extra remarks (e.g. "also reset by sbr at ...").
    pub notes: Vec<String>,
}

impl DeviceEntry {
    pub(crate) fn new(dev: &PciDevice, outcome: Outcome) -> Self {
        DeviceEntry {
            bdf: dev.bdf,
            vendor: dev.vendor,
            device: dev.device,
            class: dev.class,
            subclass: dev.subclass,
            ms: 0,
            outcome,
            attempts: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The method the line names (`none` when none counted).
    pub fn method(&self) -> Option<Method> {
        match &self.outcome {
            Outcome::Reset { method, .. } | Outcome::NotReady { method, .. } => Some(*method),
            Outcome::Preinit { .. } => Some(Method::Preinit),
            Outcome::ResetBy { .. } => Some(Method::Sbr),
            Outcome::Quiesced(_) | Outcome::Kept(_) => None,
        }
    }

    /// Whether the function is in a known reset state (or was never touched on purpose).
    pub fn is_ok(&self) -> bool {
        match &self.outcome {
            Outcome::Reset { restore, .. } | Outcome::ResetBy { restore, .. } => {
                restore.is_complete()
            }
            Outcome::Preinit { .. } | Outcome::Kept(_) => true,
            Outcome::Quiesced(w) => !matches!(w, Why::Gone),
            Outcome::NotReady { .. } => false,
        }
    }
}

impl fmt::Display for DeviceEntry {
    /// `0000:01:00.0 1af4:1042 0100 -> flr, 112 ms, ok (bars restored from snapshot); ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04x}:{:04x} {:02x}{:02x} -> ",
            self.bdf, self.vendor, self.device, self.class, self.subclass
        )?;
        match self.method() {
            Some(m) => write!(f, "{m}, ")?,
            None => f.write_str("none, ")?,
        }
        write!(f, "{} ms, ", self.ms)?;
        match &self.outcome {
            Outcome::Reset {
                evidence, restore, ..
            } => {
                let ok = if restore.is_complete() { "ok" } else { "reset" };
                write!(f, "{ok} ({restore}); proof: {evidence}")?;
            }
            Outcome::Preinit { driver, detail } => write!(f, "ok ({driver}: {detail})")?,
            Outcome::ResetBy {
                bridge,
                evidence,
                restore,
            } => {
                let ok = if restore.is_complete() { "ok" } else { "reset" };
                write!(f, "{ok} (bus reset at {bridge}; {restore})")?;
                match evidence {
                    Some(e) => write!(f, "; proof: {e}")?,
                    None => f.write_str("; unproven")?,
                }
            }
            Outcome::NotReady { method, how } => {
                write!(f, "error: not ready after {method} ({how}), left alone")?;
            }
            Outcome::Quiesced(w) => f.write_str(match w {
                Why::Denied => "denied: quiesced only",
                Why::NotAllowed => "not in allow list: quiesced only",
                Why::NoMethod => "quiesced, no reset method applies",
                Why::NoEffect => "quiesced, no method proved a reset",
                Why::Budget => "quiesced only: reset budget exhausted",
                Why::Gone => "error: reads all-ones, skipped",
            })?,
            Outcome::Kept(k) => f.write_str(match k {
                Kept::HostBridge => "host bridge, untouched",
                Kept::Bridge => "bridge, forwarding kept",
                Kept::System => "system function, decode kept",
            })?,
        }
        // Attempts (and, when nothing worked, why the other methods did not apply) in the
        // order the methods are tried.
        let explain = matches!(
            self.outcome,
            Outcome::Quiesced(Why::NoMethod | Why::NoEffect)
        );
        for m in Method::ORDER {
            for a in self.attempts.iter().filter(|a| a.method == m) {
                write!(f, "; {a}")?;
            }
            if explain {
                for (_, why) in self.skipped.iter().filter(|(s, _)| *s == m) {
                    write!(f, "; {m}: {why}")?;
                }
            }
        }
        for n in &self.notes {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

/// What the quiesce step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuiesceStats {
    /// Functions seen.
    pub functions: usize,
    /// Functions left with COMMAND = INTx-Disable only.
    pub quiesced: usize,
    /// Functions whose MSI enable was cleared.
    pub msi_disabled: usize,
    /// Functions whose MSI-X enable was cleared.
    pub msix_disabled: usize,
    /// Bridges and system functions whose COMMAND was kept.
    pub kept: usize,
    /// Functions that read all-ones.
    pub gone: usize,
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Mode that ran.
    pub mode: ResetPolicy,
    /// `reset_devices` was given.
    pub reset_devices: bool,
    /// Quiesce step.
    pub quiesce: QuiesceStats,
    /// One entry per scanned function, in scan order.
    pub entries: Vec<DeviceEntry>,
    /// Total time.
    pub elapsed_ms: u32,
    /// Budget in force.
    pub budget_ms: u32,
    /// Per-device cap in force.
    pub cap_ms: u32,
    /// Functions left only quiesced because the budget ran out.
    pub budget_skipped: usize,
    /// Functions whose BARs are unassigned after a reset: the hook for BAR assignment from
    /// the parent window (a later step).
    pub needs_bar_assignment: Vec<Bdf>,
}

impl Report {
    /// The entry for `bdf`.
    pub fn entry(&self, bdf: Bdf) -> Option<&DeviceEntry> {
        self.entries.iter().find(|e| e.bdf == bdf)
    }

    /// The mode line.
    pub fn mode_line(&self) -> String {
        let why = if self.reset_devices {
            "reset_devices"
        } else {
            "no reset_devices"
        };
        match self.mode {
            ResetPolicy::None => {
                format!("mode none ({why}): quiesce and driver preinit only, no bus-level reset")
            }
            m => format!(
                "mode {m} ({why}): methods {}, budget {} ms, cap {} ms per device",
                m.methods(),
                self.budget_ms,
                self.cap_ms
            ),
        }
    }

    /// The quiesce line.
    pub fn quiesce_line(&self) -> String {
        let q = &self.quiesce;
        format!(
            "quiesced {} of {} functions (COMMAND = INTx-disable), MSI off on {}, MSI-X off on {}, {} bridges/system functions keep decode{}",
            q.quiesced,
            q.functions,
            q.msi_disabled,
            q.msix_disabled,
            q.kept,
            if q.gone > 0 {
                format!(", {} read all-ones", q.gone)
            } else {
                String::new()
            }
        )
    }

    /// Every console line, without a prefix (the kernel adds its own): mode, quiesce, one per
    /// function, budget and TODO notes.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.entries.len() + 4);
        out.push(self.mode_line());
        out.push(self.quiesce_line());
        for e in &self.entries {
            out.push(format!("{e}"));
        }
        if self.budget_skipped > 0 {
            out.push(format!(
                "budget of {} ms exhausted: {} functions only quiesced",
                self.budget_ms, self.budget_skipped
            ));
        }
        for b in &self.needs_bar_assignment {
            out.push(format!(
                "{b}: BARs unassigned after reset; to be assigned from the parent window"
            ));
        }
        out.push(format!(
            "done in {} ms (budget {} ms)",
            self.elapsed_ms, self.budget_ms
        ));
        out
    }
}

impl fmt::Display for Report {
    /// [`Report::lines`] joined by newlines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.lines().iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(l)?;
        }
        Ok(())
    }
}
