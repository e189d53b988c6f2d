//! The size check of the filtered kdump cases (issue 13, acceptance 1): rkdump's
//! `rkdump.level=31 rkdump.compress=zlib` file must be within [`TOLERANCE_PERCENT`] of what the
//! host's `makedumpfile -c -d 31` makes of a full dump of the same kind of crash.
//!
//! The full dump is the matching level-0 zlib case (`kdump-zlib[-<N>g]`, run before the
//! level-31 case in the case table): rkdump's unfiltered kdump-compressed file holds every page
//! (zero pages as one shared page), which makedumpfile re-filters like a /proc/vmcore, so a
//! 16 GiB guest needs no 16 GiB ELF file on the host. That case writes makedumpfile's size into
//! [`REFERENCE_FILE`] in its run directory; the level-31 case reads it from there. A missing
//! reference fails the check and names the case to run first.

use std::path::Path;
use std::process::Command;

use super::case::Case;
use super::checks::Check;

/// How far rkdump's level-31 zlib file may be from makedumpfile's, either way.
pub const TOLERANCE_PERCENT: f64 = 10.0;

/// The reference written by the level-0 case: makedumpfile's output size in bytes, one line.
pub const REFERENCE_FILE: &str = "makedumpfile-c-d31.size";

/// What a kdump case is, for this check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Level 0, zlib: the full dump the reference is made from.
    Reference,
    /// Level 31, zlib: compared with the reference.
    Filtered,
}

fn role(case: &Case) -> Option<Role> {
    // Only the e2e table's cases: the bench names its runs otherwise and has no reference.
    if !case.name.starts_with("kdump-") {
        return None;
    }
    let words: Vec<&str> = case.capture_extra.split_whitespace().collect();
    let has = |w: &str| words.contains(&w);
    if !has("rkdump.format=kdump") || !has("rkdump.compress=zlib") {
        return None;
    }
    let level = words
        .iter()
        .filter_map(|w| w.strip_prefix("rkdump.level="))
        .next_back()
        .unwrap_or("0");
    match level {
        "0" => Some(Role::Reference),
        "31" => Some(Role::Filtered),
        _ => None,
    }
}

/// The level-0 case whose reference a level-31 case compares with:
/// `kdump-level31[-<N>g]` -> `kdump-zlib[-<N>g]`.
pub fn reference_case(name: &str) -> Option<String> {
    name.strip_prefix("kdump-level31")
        .map(|size| format!("kdump-zlib{size}"))
}

/// Adds the reference or the comparison check for `case`'s saved `vmcore` in `dir`.
pub fn apply(case: &Case, vmcore: &Path, dir: &Path, checks: &mut Vec<Check>) {
    match role(case) {
        Some(Role::Reference) => checks.push(Check {
            name: "reference: makedumpfile -c -d 31 of this full dump".into(),
            result: make_reference(vmcore, dir),
        }),
        Some(Role::Filtered) => checks.push(Check {
            name: "size within 10% of makedumpfile -c -d 31".into(),
            result: compare(case, vmcore, dir),
        }),
        None => {}
    }
}

fn make_reference(vmcore: &Path, dir: &Path) -> Result<String, String> {
    let out = dir.join("makedumpfile-c-d31.kdump");
    let _ = std::fs::remove_file(&out);
    let run = rkdump_tests::tools::output(
        Command::new("makedumpfile")
            .args(["-c", "-d", "31"])
            .arg(vmcore)
            .arg(&out),
    );
    let size = std::fs::metadata(&out).map(|m| m.len());
    // The reference file itself is not needed again: only its size.
    let _ = std::fs::remove_file(&out);
    run?;
    let size = size.map_err(|e| format!("makedumpfile wrote no file: {e}"))?;
    let full = std::fs::metadata(vmcore).map(|m| m.len()).unwrap_or(0);
    std::fs::write(dir.join(REFERENCE_FILE), format!("{size}\n"))
        .map_err(|e| format!("writing {REFERENCE_FILE}: {e}"))?;
    Ok(format!(
        "{size} bytes from this {full}-byte level-0 file (kept in {REFERENCE_FILE})"
    ))
}

fn compare(case: &Case, vmcore: &Path, dir: &Path) -> Result<String, String> {
    let ours = std::fs::metadata(vmcore)
        .map_err(|e| format!("{}: {e}", vmcore.display()))?
        .len();
    let base =
        reference_case(&case.name).ok_or_else(|| format!("no reference case for {}", case.name))?;
    let path = dir
        .parent()
        .map(|p| p.join(&base).join(REFERENCE_FILE))
        .ok_or("run directory has no parent")?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no reference ({}: {e}): run case {base} first (same `cargo xtask e2e` call)",
            path.display()
        )
    })?;
    let theirs: u64 = text
        .trim()
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    within(ours, theirs, &base)
}

fn within(ours: u64, theirs: u64, base: &str) -> Result<String, String> {
    if theirs == 0 {
        return Err("makedumpfile's reference is 0 bytes".into());
    }
    let diff = (ours as f64 - theirs as f64) * 100.0 / theirs as f64;
    let text = format!(
        "rkdump {ours} bytes, makedumpfile -c -d 31 on {base}'s full dump {theirs} bytes: {diff:+.1} %"
    );
    if diff.abs() <= TOLERANCE_PERCENT {
        Ok(text)
    } else {
        Err(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::CaptureKind;

    #[test]
    fn each_filtered_case_has_its_reference_case_before_it() {
        let names = super::super::case::DUMP_CASE_NAMES;
        let mut filtered = 0;
        for (i, name) in names.iter().enumerate() {
            let case = Case::standard(name, CaptureKind::Rkdump).unwrap();
            if role(&case) != Some(Role::Filtered) {
                continue;
            }
            filtered += 1;
            let base = reference_case(name).unwrap();
            let at = names.iter().position(|n| *n == base).unwrap();
            assert!(at < i, "{base} must run before {name}");
            let reference = Case::standard(&base, CaptureKind::Rkdump).unwrap();
            assert_eq!(role(&reference), Some(Role::Reference), "{base}");
            assert_eq!(reference.memory, case.memory, "{base} vs {name}");
        }
        assert_eq!(filtered, 3, "1, 4 and 16 GiB");
    }

    #[test]
    fn the_tolerance_fails_both_ways() {
        assert!(within(109, 100, "b").is_ok());
        assert!(within(91, 100, "b").is_ok());
        assert!(within(111, 100, "b").is_err());
        assert!(within(89, 100, "b").is_err());
        assert!(within(1, 0, "b").is_err());
    }
}
