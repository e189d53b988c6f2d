//! e2e cases for conditions of real machines (docs/testing.md#end-to-end-runs): a first kernel
//! booted through UEFI (OVMF), so rkdump must find ACPI through the EFI hand-off and power off
//! through it; an Intel IOMMU the first kernel left on. Each case is a variant of a dump case;
//! its extra checks read the capture kernel's console and QEMU's stderr.

use std::time::Duration;

use super::case::{CaptureKind, Case, Loader};
use super::checks::Check;
use super::console::ConsoleLog;

/// Debian's `ovmf` package: the combined code+vars image QEMU takes with `-bios`.
pub const OVMF_IMAGE: &str = "/usr/share/ovmf/OVMF.fd";

/// What a case's machine has beyond the standard dump case: firmware, an IOMMU, extra first
/// kernel parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// The firmware the first kernel boots through.
    pub firmware: Firmware,
    /// QEMU's `intel-iommu` (DMA remapping), which the first kernel turns on.
    pub intel_iommu: bool,
    /// Negative control of the IOMMU case: rkdump leaves the IOMMU on (`rkdump.iommu=skip`)
    /// and the dump disk must fail.
    pub iommu_negative: bool,
}

impl Platform {
    /// QEMU arguments that must come before every other device (`intel-iommu` must precede the
    /// PCI devices it translates for).
    pub fn leading_qemu_args(&self) -> Vec<String> {
        let mut a = self.firmware.qemu_args();
        if self.intel_iommu {
            a.extend(["-device".to_string(), "intel-iommu".to_string()]);
            // virtio devices bypass QEMU's IOMMU unless told to use it.
            a.extend([
                "-global".to_string(),
                "virtio-blk-pci.iommu_platform=on".to_string(),
            ]);
        }
        a
    }

    /// Extra first-kernel parameters.
    pub fn first_kernel_args(&self) -> &'static str {
        if self.intel_iommu {
            " intel_iommu=on"
        } else {
            ""
        }
    }
}

/// The firmware the first kernel boots through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Firmware {
    /// QEMU's SeaBIOS (default): RSDP in the BIOS area, no `efi_info`.
    #[default]
    Bios,
    /// OVMF: the kernel enters through its EFI stub; the RSDP lives only in the EFI
    /// configuration table (and wherever the kexec loader copies its address).
    Uefi,
}

impl Firmware {
    /// QEMU arguments for this firmware.
    pub fn qemu_args(self) -> Vec<String> {
        match self {
            Firmware::Bios => Vec::new(),
            Firmware::Uefi => vec!["-bios".to_string(), OVMF_IMAGE.to_string()],
        }
    }
}

/// A case of this module by name, built on the dump case it varies.
pub fn case(name: &str, capture: CaptureKind) -> Option<Case> {
    if let Some(c) = iommu_case(name, capture) {
        return Some(c);
    }
    let (base, loader, extra) = match name {
        // kexec_file_load: the running kernel copies efi_info and acpi_rsdp_addr into the zero
        // page and adds a SETUP_EFI node.
        "dump-uefi" => ("dump-virtio", Loader::Kf, ""),
        // The same hand-off with every RSDP source but the EFI configuration table ignored.
        "dump-uefi-efi" => ("dump-virtio", Loader::Kf, "rkdump.acpi_source=efi"),
        // kexec_load (kexec-tools 2.0.25): no efi_info, no setup_data; `acpi_rsdp=` appended
        // to the command line.
        "dump-uefi-kl" => ("dump-nvme", Loader::Kl, ""),
        _ => return None,
    };
    let mut c = Case::standard(base, capture)?;
    c.name = name.to_string();
    c.loaders = vec![loader];
    c.platform.firmware = Firmware::Uefi;
    c.capture_extra = extra.to_string();
    // OVMF's own start-up under TCG comes on top of the first kernel's boot.
    c.timeout += Duration::from_secs(120);
    Some(c)
}

/// The IOMMU cases: the first kernel runs with `intel_iommu=on` behind QEMU's `intel-iommu`,
/// direct-I/O reads in flight on the dump disk at the crash; `noiommu-*` are the negative
/// controls (rkdump leaves the IOMMU on).
fn iommu_case(name: &str, capture: CaptureKind) -> Option<Case> {
    let (base, negative) = match name {
        "dump-iommu-nvme" => ("dump-nvme", false),
        "dump-iommu-virtio" => ("dump-virtio", false),
        "noiommu-nvme" => ("dump-nvme", true),
        "noiommu-virtio" => ("dump-virtio", true),
        _ => return None,
    };
    let mut c = Case::standard(base, capture)?;
    c.name = name.to_string();
    c.platform.intel_iommu = true;
    c.platform.iommu_negative = negative;
    if negative {
        c.capture_extra = "rkdump.iommu=skip".to_string();
        // The disk fails and rkdump falls back to serial: stop at `dump start`.
        c.full_run = false;
        c.timeout = Duration::from_secs(200);
    }
    Some(c)
}

/// The RSDP source a UEFI case must end up with, and whether rkdump's own EFI configuration
/// table walk must have run (only kexec_file_load hands over `efi_info`).
fn expected_source(case: &Case) -> (&'static str, bool) {
    match (
        case.loader(),
        case.capture_extra.contains("rkdump.acpi_source=efi"),
    ) {
        (_, true) => ("efi", true),
        (Loader::Kf, false) => ("bootdata", true),
        (Loader::Kl, false) => ("cmdline", false),
    }
}

/// The checks a UEFI case adds: rkdump found the RSDP from the source the loader's hand-off
/// predicts (never the BIOS scan), its own EFI configuration table walk agrees where it ran,
/// and the run ended in ACPI power-off without an error.
pub fn apply(case: &Case, log: &ConsoleLog, stderr: &str, checks: &mut Vec<Check>) {
    if case.capture != CaptureKind::Rkdump {
        return;
    }
    let lines: Vec<&str> = log
        .capture_lines()
        .iter()
        .filter_map(|l| l.text.split_once("rkdump: ").map(|(_, b)| b.trim_end()))
        .collect();
    if case.platform.intel_iommu {
        apply_iommu(case, &lines, stderr, checks);
    }
    if case.platform.firmware != Firmware::Uefi {
        return;
    }
    let (source, efi_walk) = expected_source(case);
    checks.push(Check {
        name: "acpi from the UEFI hand-off".into(),
        result: check_efi_acpi(&lines, source, efi_walk),
    });
    checks.push(Check {
        name: "ACPI power-off".into(),
        result: check_poweroff(&lines),
    });
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// The IOMMU checks: the unit was found with translation on and turned off (read back in
/// GSTS); for the negative control, rkdump skipped it and the dump disk failed with faults.
fn apply_iommu(case: &Case, lines: &[&str], stderr: &str, checks: &mut Vec<Check>) {
    let unit = lines
        .iter()
        .find(|l| l.starts_with("iommu unit ") && l.contains(" gsts="));
    if !case.platform.iommu_negative {
        checks.push(Check {
            name: "iommu translation off".into(),
            result: check_iommu_unit(unit.copied()),
        });
        return;
    }
    // The failure is the point: drop the checks that demand a dump on disk.
    checks.retain(|c| {
        !matches!(
            c.name.as_str(),
            "no rkdump errors" | "dump complete on disk" | "rkdumpctl save"
        )
    });
    checks.push(Check {
        name: "iommu left on".into(),
        result: match lines.iter().find(|l| l.starts_with("iommu skipped")) {
            Some(l) => Ok((*l).to_string()),
            None => Err("no `iommu skipped` line".into()),
        },
    });
    checks.push(Check {
        name: "disk fails behind the IOMMU".into(),
        result: check_iommu_failure(lines, stderr),
    });
}

/// `iommu unit <base> ... gsts=<before>-><after> ... done=te off,...`: TE (bit 31) on before,
/// off after.
pub fn check_iommu_unit(unit: Option<&str>) -> Result<String, String> {
    let l = unit.ok_or("no `iommu unit ... gsts=` line")?;
    let gsts = field(l, "gsts=").ok_or("no gsts=")?;
    let (before, after) = gsts.split_once("->").ok_or("gsts= without ->")?;
    let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    match (hex(before), hex(after)) {
        (Some(b), Some(a)) if b & (1 << 31) != 0 && a & (1 << 31) == 0 => Ok(l.to_string()),
        (Some(b), _) if b & (1 << 31) == 0 => Err(format!(
            "translation was not on at the crash ({l}): the first kernel did not enable the IOMMU"
        )),
        _ => Err(format!("translation still on: {l}")),
    }
}

/// The negative control's failure: the dump disk's driver gives up and rkdump falls back to
/// serial, and QEMU's IOMMU reports `vtd_iommu_translate: detected translation failure` for
/// the disk's DMA (rkdump's buffers are not in the old kernel's page tables for that device).
pub fn check_iommu_failure(lines: &[&str], stderr: &str) -> Result<String, String> {
    let fallback = lines
        .iter()
        .find(|l| l.contains("falling back to serial") || l.contains("no labelled dump disk"))
        .ok_or("rkdump did not give up on the dump disk")?;
    let fault = stderr
        .lines()
        .find(|l| l.contains("detected translation failure"))
        .ok_or_else(|| format!("QEMU reported no IOMMU fault; stderr: {}", stderr.trim()))?;
    Ok(format!("{fallback}; QEMU: {fault}"))
}

/// `acpi rsdp=X ... source=<want>`; with `efi_walk`, also `efi config=... rsdp=X` (same X).
pub fn check_efi_acpi(lines: &[&str], want: &str, efi_walk: bool) -> Result<String, String> {
    let acpi = lines
        .iter()
        .find(|l| l.starts_with("acpi rsdp="))
        .ok_or("no `acpi rsdp=` line: rkdump found no ACPI")?;
    let used = field(acpi, "rsdp=").ok_or("`acpi` line without rsdp=")?;
    let source = field(acpi, "source=").unwrap_or("?");
    if source != want {
        return Err(format!(
            "RSDP {used} came from source={source}, expected source={want}"
        ));
    }
    let efi = lines.iter().find(|l| l.starts_with("efi config="));
    match (efi, efi_walk) {
        (Some(efi), _) => {
            let efi_rsdp = field(efi, "rsdp=").ok_or("`efi` line without rsdp=")?;
            if efi_rsdp != used {
                return Err(format!(
                    "rkdump used RSDP {used} (source={source}) but the EFI table names {efi_rsdp}"
                ));
            }
            Ok(format!("{efi}; used source={source}"))
        }
        (None, true) => {
            let why = lines
                .iter()
                .find(|l| l.starts_with("note: efi"))
                .map_or("no `efi ...` line", |l| l);
            Err(format!(
                "the EFI configuration table walk found no RSDP: {why}"
            ))
        }
        (None, false) => Ok(format!(
            "rsdp={used} source={source} (no efi_info handed over)"
        )),
    }
}

/// `finish outcome=success action=poweroff` is the last word: a failed S5 write would add an
/// error line and halt (the run would then time out).
pub fn check_poweroff(lines: &[&str]) -> Result<String, String> {
    let finish = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("finish "))
        .ok_or("no `finish` line")?;
    if *finish != "finish outcome=success action=poweroff" {
        return Err(format!("ended with `{finish}`"));
    }
    if let Some(l) = lines.iter().find(|l| l.contains("did not power off")) {
        return Err((*l).to_string());
    }
    let pm1a = lines
        .iter()
        .find_map(|l| {
            l.starts_with("acpi rsdp=")
                .then(|| field(l, "pm1a_cnt="))
                .flatten()
        })
        .unwrap_or("none");
    if pm1a == "none" {
        return Err("no PM1a control block from ACPI".into());
    }
    Ok(format!("powered off through PM1a_CNT {pm1a}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efi_acpi_needs_agreement_and_no_bios_source() {
        let good = [
            "efi config=0x7f000 from=setup_data entries=10 rsdp=0x7fb7e014 acpi20",
            "acpi rsdp=0x7fb7e014 pm1a_cnt=0x604 pm_timer=0x608 s5=5/5 ecam=0xb0000000 source=bootdata",
        ];
        assert!(check_efi_acpi(&good, "bootdata", true).is_ok());
        assert!(check_efi_acpi(&good, "efi", true).is_err());
        let differ = [good[0], "acpi rsdp=0xf52a0 pm1a_cnt=0x604 source=bootdata"];
        assert!(
            check_efi_acpi(&differ, "bootdata", true)
                .unwrap_err()
                .contains("EFI table names")
        );
        let bios = [good[0], "acpi rsdp=0x7fb7e014 pm1a_cnt=0x604 source=bios"];
        assert!(check_efi_acpi(&bios, "efi", true).is_err());
        let none = ["note: efi: no EFI system table in efi_info", good[1]];
        assert!(
            check_efi_acpi(&none, "bootdata", true)
                .unwrap_err()
                .contains("no EFI system table")
        );
        let kl = ["acpi rsdp=0x7fb7e014 pm1a_cnt=0x604 source=cmdline"];
        assert!(check_efi_acpi(&kl, "cmdline", false).is_ok());
        assert!(check_efi_acpi(&kl, "cmdline", true).is_err());
    }

    #[test]
    fn poweroff_must_be_the_successful_end() {
        let acpi = "acpi rsdp=0x1 pm1a_cnt=0x604 source=efi";
        assert!(check_poweroff(&[acpi, "finish outcome=success action=poweroff"]).is_ok());
        assert!(check_poweroff(&[acpi, "finish outcome=failed action=poweroff"]).is_err());
        assert!(
            check_poweroff(&[
                "acpi rsdp=0x1 pm1a_cnt=none source=efi",
                "finish outcome=success action=poweroff"
            ])
            .is_err()
        );
        assert!(
            check_poweroff(&[
                acpi,
                "finish outcome=success action=poweroff",
                "error: ACPI S5 did not power off; halting"
            ])
            .is_err()
        );
    }

    #[test]
    fn uefi_cases_boot_ovmf() {
        for name in ["dump-uefi", "dump-uefi-efi", "dump-uefi-kl"] {
            let c = case(name, CaptureKind::Rkdump).unwrap();
            assert_eq!(c.platform.leading_qemu_args(), ["-bios", OVMF_IMAGE]);
            assert!(c.full_run && c.dump_disk.is_some() && c.io_at_crash);
        }
        assert!(case("dump-uefi", CaptureKind::Linux).is_none());
    }

    #[test]
    fn iommu_cases_and_checks() {
        let c = case("dump-iommu-nvme", CaptureKind::Rkdump).unwrap();
        assert_eq!(
            c.platform.leading_qemu_args()[..2],
            ["-device", "intel-iommu"]
        );
        assert!(
            c.first_kernel_cmdline()
                .unwrap()
                .contains(" intel_iommu=on")
        );
        let n = case("noiommu-nvme", CaptureKind::Rkdump).unwrap();
        assert!(n.capture_cmdline().contains("rkdump.iommu=skip") && !n.full_run);
        let on = "iommu unit 0xfed90000 ver=1.0 segment=0 gsts=0xc0000000->0x00000000 fsts=0x0 \
                  faults=0 records=16 done=te off";
        assert!(check_iommu_unit(Some(on)).is_ok());
        assert!(check_iommu_unit(Some(&on.replace("->0x00000000", "->0x80000000"))).is_err());
        assert!(
            check_iommu_unit(Some(&on.replace("0xc0000000->", "0x00000000->")))
                .unwrap_err()
                .contains("not on at the crash")
        );
        assert!(check_iommu_unit(None).is_err());
        let failed = ["error: disk dump to x failed: timeout; falling back to serial"];
        assert!(check_iommu_failure(
                &failed,
                "qemu: vtd_iommu_translate: detected translation failure (dev=01:00:00, iova=0x3ef5c000)"
            )
            .is_ok());
        assert!(check_iommu_failure(&failed, "").is_err());
        assert!(check_iommu_failure(&[], "detected translation failure").is_err());
        assert!(check_iommu_failure(&failed, "vtd_iova_to_slpte: detected slpte").is_err());
    }
}
