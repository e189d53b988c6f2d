//! Which CPUs the capture kernel may wake: the processor entries of the firmware's MADT (ACPI
//! 6.5 §5.2.12, types 0 "Processor Local APIC" and 9 "Processor Local x2APIC"), parsed from
//! untrusted bytes with every length checked, and the wake plan built from them and the command
//! line (`rkdump.cpus=`, `disable_cpu_apicid=`).
//!
//! The rules, each with its reason:
//! - never the CPU running rkdump (it is already up);
//! - never the boot CPU (BSP): INIT does not park a BSP in wait-for-SIPI, it restarts it at the
//!   firmware's reset vector (Intel SDM Vol. 3A §9.4.1), which resets some machines and, under
//!   QEMU, ran SeaBIOS into a triple fault in our `dump-la57` run. When the running CPU is not the
//!   BSP, the BSP is the APIC ID kexec names in `disable_cpu_apicid=` (kexec_load passes it; Linux
//!   skips it in `arch/x86/kernel/apic/apic.c` for this reason), and, because kexec_file_load does
//!   not pass it, also the first enabled MADT entry (firmware lists the boot processor first);
//! - only entries flagged enabled (bit 0) or online-capable (bit 1, ACPI 6.3 and later); a
//!   disabled entry without online-capable is a CPU that does not exist;
//! - each APIC ID once (a duplicate entry is firmware noise, not a second CPU);
//! - at most `rkdump.cpus - 1` APs and at most [`MAX_CPUS`] CPUs in all.

/// The most CPUs rkdump runs on, the one running it included. Each woken CPU costs its stacks
/// (rkdump has a few MiB in all), and the work rkdump spreads (hashing, compression) stops
/// scaling long before this on the disks it writes to.
pub const MAX_CPUS: usize = 16;

/// The most MADT processor entries kept; further ones are counted in [`MadtCpus::dropped`].
pub const MAX_ENTRIES: usize = 256;

/// MADT header: the 36-byte SDT header, then the local APIC address and flags.
const MADT_HEADER_LEN: usize = 44;

/// One processor entry of the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtCpu {
    /// Local APIC ID (8 bits in a type 0 entry, 32 in a type 9 one).
    pub apic_id: u32,
    /// Flags bit 0: the CPU is usable now.
    pub enabled: bool,
    /// Flags bit 1: the CPU can be brought online (meaningful when `enabled` is clear).
    pub online_capable: bool,
}

/// Why the MADT could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadtError {
    /// Fewer bytes than the MADT header, or a `length` field shorter than it.
    Short {
        /// Bytes available.
        len: usize,
    },
    /// The signature is not `APIC`.
    Signature,
    /// An entry's length is below 2 or runs past the table's end.
    BadEntry {
        /// Offset of the entry in the table.
        offset: usize,
        /// The entry's length field.
        len: u8,
    },
}

impl core::fmt::Display for MadtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MadtError::Short { len } => write!(f, "MADT too short ({len} bytes)"),
            MadtError::Signature => write!(f, "MADT signature is not APIC"),
            MadtError::BadEntry { offset, len } => {
                write!(f, "MADT entry at {offset:#x} has bad length {len}")
            }
        }
    }
}

/// The processor entries of a MADT, in table order.
#[derive(Clone, Debug)]
pub struct MadtCpus {
    cpus: [MadtCpu; MAX_ENTRIES],
    len: usize,
    /// Entries beyond [`MAX_ENTRIES`], not kept.
    pub dropped: usize,
}

impl MadtCpus {
    /// Parses the MADT `table` (header included). The table's own `length` field bounds the walk
    /// (never more than `table.len()`); entries of other types are skipped. Entries read before
    /// a malformed one are not returned: a table that lies about one length may lie about others.
    pub fn parse(table: &[u8]) -> Result<MadtCpus, MadtError> {
        if table.len() < MADT_HEADER_LEN {
            return Err(MadtError::Short { len: table.len() });
        }
        if &table[..4] != b"APIC" {
            return Err(MadtError::Signature);
        }
        let declared = u32::from_le_bytes([table[4], table[5], table[6], table[7]]) as usize;
        if declared < MADT_HEADER_LEN {
            return Err(MadtError::Short { len: declared });
        }
        let table = &table[..declared.min(table.len())];
        let mut out = MadtCpus {
            cpus: [MadtCpu {
                apic_id: 0,
                enabled: false,
                online_capable: false,
            }; MAX_ENTRIES],
            len: 0,
            dropped: 0,
        };
        let mut offset = MADT_HEADER_LEN;
        // Each step advances by at least 2 bytes, so the walk ends within table.len() / 2 steps.
        while offset + 2 <= table.len() {
            let kind = table[offset];
            let len = table[offset + 1];
            let end = offset + usize::from(len);
            if len < 2 || end > table.len() {
                return Err(MadtError::BadEntry { offset, len });
            }
            let entry = &table[offset..end];
            let cpu = match (kind, entry.len()) {
                // Processor Local APIC: uid u8, APIC ID u8, flags u32.
                (0, 8..) => Some((
                    u32::from(entry[3]),
                    u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]),
                )),
                // Processor Local x2APIC: reserved u16, x2APIC ID u32, flags u32, uid u32.
                (9, 16..) => Some((
                    u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]),
                    u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]),
                )),
                (0 | 9, _) => return Err(MadtError::BadEntry { offset, len }),
                _ => None,
            };
            if let Some((apic_id, flags)) = cpu {
                if out.len < MAX_ENTRIES {
                    out.cpus[out.len] = MadtCpu {
                        apic_id,
                        enabled: flags & 1 != 0,
                        online_capable: flags & 2 != 0,
                    };
                    out.len += 1;
                } else {
                    out.dropped += 1;
                }
            }
            offset = end;
        }
        Ok(out)
    }

    /// The entries kept, in table order.
    pub fn as_slice(&self) -> &[MadtCpu] {
        &self.cpus[..self.len]
    }
}

/// Why an MADT entry is not woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// `disable_cpu_apicid=` names it.
    Disabled,
    /// The first enabled MADT entry while rkdump runs on another CPU: taken as the boot CPU.
    BootCpu,
    /// The entry is neither enabled nor online-capable.
    Absent,
    /// The APIC ID appeared earlier in the table.
    Duplicate,
    /// `rkdump.cpus=` or [`MAX_CPUS`] is reached.
    Limit,
    /// Set by the kernel, not by [`plan`]: the STARTUP IPIs were sent but the CPU did not check
    /// in within the time allowed.
    Timeout,
    /// Set by the kernel: the IPI could not be sent.
    Ipi,
    /// Set by the kernel: no RAM for the CPU's stacks.
    NoMemory,
    /// Set by the kernel: no RAM below 640 KiB for the real-mode trampoline.
    NoLowMemory,
}

impl SkipReason {
    /// The word the console line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Disabled => "disable_cpu_apicid",
            SkipReason::BootCpu => "boot-cpu",
            SkipReason::Absent => "absent",
            SkipReason::Duplicate => "duplicate",
            SkipReason::Limit => "limit",
            SkipReason::Timeout => "timeout",
            SkipReason::Ipi => "ipi",
            SkipReason::NoMemory => "nomem",
            SkipReason::NoLowMemory => "nolowmem",
        }
    }
}

/// What to do with each MADT entry other than the running CPU.
#[derive(Clone, Debug)]
pub struct WakePlan {
    wake: [u32; MAX_CPUS],
    wake_len: usize,
    skipped: [(u32, SkipReason); MAX_ENTRIES],
    skipped_len: usize,
    /// CPUs asked for, the running one included (`rkdump.cpus=` capped at [`MAX_CPUS`]).
    pub asked: usize,
}

impl WakePlan {
    /// APIC IDs to wake, in table order.
    pub fn wake(&self) -> &[u32] {
        &self.wake[..self.wake_len]
    }

    /// Entries left out and why, in table order.
    pub fn skipped(&self) -> &[(u32, SkipReason)] {
        &self.skipped[..self.skipped_len]
    }

    fn skip(&mut self, id: u32, why: SkipReason) {
        if self.skipped_len < MAX_ENTRIES {
            self.skipped[self.skipped_len] = (id, why);
            self.skipped_len += 1;
        }
    }
}

/// Plans the wake-up: `running` is the APIC ID of the CPU running rkdump and `running_is_bsp`
/// its IA32_APIC_BASE.BSP flag, `disabled` the ID `disable_cpu_apicid=` names, `asked` the value
/// of `rkdump.cpus=` (`None` for all).
pub fn plan(
    cpus: &MadtCpus,
    running: u32,
    running_is_bsp: bool,
    disabled: Option<u32>,
    asked: Option<u32>,
) -> WakePlan {
    let asked = asked.map_or(MAX_CPUS, |n| (n as usize).clamp(1, MAX_CPUS));
    let mut plan = WakePlan {
        wake: [0; MAX_CPUS],
        wake_len: 0,
        skipped: [(0, SkipReason::Limit); MAX_ENTRIES],
        skipped_len: 0,
        asked,
    };
    let entries = cpus.as_slice();
    let first_enabled = entries.iter().find(|e| e.enabled).map(|e| e.apic_id);
    let boot_cpu = if running_is_bsp { None } else { first_enabled };
    for (i, cpu) in entries.iter().enumerate() {
        let id = cpu.apic_id;
        if id == running {
            continue;
        }
        let why = if entries[..i].iter().any(|e| e.apic_id == id) {
            Some(SkipReason::Duplicate)
        } else if disabled == Some(id) {
            Some(SkipReason::Disabled)
        } else if boot_cpu == Some(id) {
            Some(SkipReason::BootCpu)
        } else if !cpu.enabled && !cpu.online_capable {
            Some(SkipReason::Absent)
        } else if 1 + plan.wake_len >= asked {
            Some(SkipReason::Limit)
        } else {
            None
        };
        match why {
            Some(why) => plan.skip(id, why),
            None => {
                plan.wake[plan.wake_len] = id;
                plan.wake_len += 1;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn madt(entries: &[&[u8]]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"APIC");
        t.extend_from_slice(&[0; 4]);
        t.resize(MADT_HEADER_LEN, 0);
        for e in entries {
            t.extend_from_slice(e);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    fn lapic(id: u8, flags: u32) -> Vec<u8> {
        let mut e = vec![0u8, 8, id, id];
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }

    fn x2apic(id: u32, flags: u32) -> Vec<u8> {
        let mut e = vec![9u8, 16, 0, 0];
        e.extend_from_slice(&id.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&id.to_le_bytes());
        e
    }

    fn ioapic() -> Vec<u8> {
        vec![1u8, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]
    }

    fn ids(plan: &WakePlan) -> Vec<u32> {
        plan.wake().to_vec()
    }

    #[test]
    fn parses_both_entry_kinds_and_skips_others() {
        let t = madt(&[&lapic(0, 1), &ioapic(), &lapic(1, 0), &x2apic(300, 2)]);
        let cpus = MadtCpus::parse(&t).unwrap();
        assert_eq!(
            cpus.as_slice(),
            &[
                MadtCpu {
                    apic_id: 0,
                    enabled: true,
                    online_capable: false
                },
                MadtCpu {
                    apic_id: 1,
                    enabled: false,
                    online_capable: false
                },
                MadtCpu {
                    apic_id: 300,
                    enabled: false,
                    online_capable: true
                },
            ]
        );
    }

    #[test]
    fn malformed_tables_are_typed_errors() {
        assert_eq!(
            MadtCpus::parse(b"APIC").unwrap_err(),
            MadtError::Short { len: 4 }
        );
        let mut t = madt(&[&lapic(0, 1)]);
        t[0] = b'X';
        assert_eq!(MadtCpus::parse(&t).unwrap_err(), MadtError::Signature);
        // Zero-length entry: would loop forever if trusted.
        let t = madt(&[&[0u8, 0, 0, 0, 0, 0, 0, 0]]);
        assert!(matches!(
            MadtCpus::parse(&t),
            Err(MadtError::BadEntry { len: 0, .. })
        ));
        // Entry running past the end.
        let t = madt(&[&[0u8, 40, 0, 0]]);
        assert!(matches!(
            MadtCpus::parse(&t),
            Err(MadtError::BadEntry { len: 40, .. })
        ));
        // Local APIC entry too short for its fields.
        let t = madt(&[&[0u8, 4, 0, 0]]);
        assert!(matches!(
            MadtCpus::parse(&t),
            Err(MadtError::BadEntry { len: 4, .. })
        ));
        // `length` says less than the header.
        let mut t = madt(&[]);
        t[4..8].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            MadtCpus::parse(&t).unwrap_err(),
            MadtError::Short { len: 10 }
        );
    }

    #[test]
    fn length_field_bounds_the_walk() {
        let mut t = madt(&[&lapic(0, 1)]);
        // Trailing bytes past `length` (a second entry) are not read.
        t.extend_from_slice(&lapic(5, 1));
        assert_eq!(MadtCpus::parse(&t).unwrap().as_slice().len(), 1);
        // A `length` beyond the bytes available is cut to them.
        let mut t = madt(&[&lapic(0, 1)]);
        t[4..8].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(MadtCpus::parse(&t).unwrap().as_slice().len(), 1);
    }

    #[test]
    fn many_entries_are_counted_not_kept() {
        let entries: Vec<Vec<u8>> = (0..300u32).map(|i| x2apic(i, 1)).collect();
        let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
        let cpus = MadtCpus::parse(&madt(&refs)).unwrap();
        assert_eq!(cpus.as_slice().len(), MAX_ENTRIES);
        assert_eq!(cpus.dropped, 300 - MAX_ENTRIES);
    }

    #[test]
    fn plan_never_wakes_the_running_or_the_disabled_cpu() {
        let t = madt(&[&lapic(0, 1), &lapic(1, 1), &lapic(2, 1), &lapic(3, 1)]);
        let cpus = MadtCpus::parse(&t).unwrap();
        // Crash on CPU 2; kexec names the old boot CPU 0.
        let p = plan(&cpus, 2, false, Some(0), None);
        assert_eq!(ids(&p), [1, 3]);
        assert_eq!(p.skipped(), &[(0, SkipReason::Disabled)]);
        // Without disable_cpu_apicid (kexec_file_load) the first enabled entry is taken as the
        // boot CPU when rkdump does not run on it.
        let p = plan(&cpus, 2, false, None, None);
        assert_eq!(ids(&p), [1, 3]);
        assert_eq!(p.skipped(), &[(0, SkipReason::BootCpu)]);
        // Running on the boot CPU: every other CPU may be woken, disable_cpu_apicid still holds.
        assert_eq!(ids(&plan(&cpus, 0, true, None, None)), [1, 2, 3]);
        assert_eq!(ids(&plan(&cpus, 0, true, Some(3), None)), [1, 2]);
    }

    #[test]
    fn plan_takes_enabled_or_online_capable_once() {
        let t = madt(&[
            &lapic(0, 1),
            &lapic(1, 0),
            &lapic(2, 2),
            &lapic(3, 1),
            &lapic(3, 1),
        ]);
        let p = plan(&MadtCpus::parse(&t).unwrap(), 0, true, None, None);
        assert_eq!(ids(&p), [2, 3]);
        assert_eq!(
            p.skipped(),
            &[(1, SkipReason::Absent), (3, SkipReason::Duplicate)]
        );
    }

    #[test]
    fn plan_honours_the_count() {
        let t = madt(&[&lapic(0, 1), &lapic(1, 1), &lapic(2, 1), &lapic(3, 1)]);
        let cpus = MadtCpus::parse(&t).unwrap();
        // 1: the running CPU alone.
        let p = plan(&cpus, 0, true, None, Some(1));
        assert!(p.wake().is_empty());
        assert_eq!(p.asked, 1);
        assert_eq!(p.skipped().len(), 3);
        assert!(p.skipped().iter().all(|s| s.1 == SkipReason::Limit));
        assert_eq!(ids(&plan(&cpus, 0, true, None, Some(2))), [1]);
        // 0 is read as 1, never as "none at all".
        assert!(plan(&cpus, 0, true, None, Some(0)).wake().is_empty());
        // More than there are: all of them.
        assert_eq!(ids(&plan(&cpus, 0, true, None, Some(64))), [1, 2, 3]);
    }

    #[test]
    fn boot_cpu_is_the_first_enabled_entry() {
        // A disabled first entry is not a CPU; the boot CPU is the first enabled one.
        let t = madt(&[&lapic(4, 0), &lapic(5, 1), &lapic(6, 1), &lapic(7, 1)]);
        let p = plan(&MadtCpus::parse(&t).unwrap(), 7, false, None, None);
        assert_eq!(ids(&p), [6]);
        assert_eq!(
            p.skipped(),
            &[(4, SkipReason::Absent), (5, SkipReason::BootCpu)]
        );
    }

    #[test]
    fn plan_is_capped_at_max_cpus() {
        let entries: Vec<Vec<u8>> = (0..40u32).map(|i| x2apic(i, 1)).collect();
        let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
        let cpus = MadtCpus::parse(&madt(&refs)).unwrap();
        let p = plan(&cpus, 7, true, None, None);
        assert_eq!(p.wake().len(), MAX_CPUS - 1);
        assert!(!p.wake().contains(&7));
        assert_eq!(p.asked, MAX_CPUS);
    }
}
