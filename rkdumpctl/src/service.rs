//! `rkdumpctl boot` (what `rkdump.service` runs) and `rkdumpctl reload` (what the hotplug udev
//! rule runs): save a pending dump into `<save_dir>/<UTC time>-<release>/`, prune old ones,
//! then snapshot and load the capture kernel, record what was loaded in the state file, and end
//! by stating whether the machine is armed (the same verdict as `status`).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Parser;
use rkdump_devices::label::{ChecksumKind, RecordHeader};

use crate::conf::{ConfArgs, Config, SyscallPolicy};
use crate::dumpdisk::{self, Record};
use crate::load::{self, Syscall};
use crate::snapshot::{self, Sources};
use crate::state::{self, Loaded, SavedDump, State};
use crate::{lockdown, save, status};

/// `save`'s arguments, parsed as its command line.
#[derive(clap::Parser)]
struct SaveCli {
    #[command(flatten)]
    args: save::Args,
}

/// File in each saved dump directory that marks it as `boot`'s (pruning touches only those).
pub const MARKER: &str = "rkdump.json";

/// Where the service commands read and write (overridable for tests).
#[derive(Debug, Clone, clap::Args)]
pub struct Ctx {
    #[command(flatten)]
    pub sources: Sources,
    /// Device directory searched for `device = auto`.
    #[arg(long, value_name = "DIR", default_value = "/dev", hide = true)]
    pub dev_root: PathBuf,
    /// State directory (state.json, config.blob).
    #[arg(long, value_name = "DIR", default_value = state::DEFAULT_DIR)]
    pub state_dir: PathBuf,
    /// The kexec binary.
    #[arg(long, value_name = "PATH", default_value = "kexec")]
    pub kexec: PathBuf,
    #[command(flatten)]
    pub conf: ConfArgs,
}

/// Arguments of `rkdumpctl boot`.
#[derive(Debug, clap::Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub ctx: Ctx,
}

/// Arguments of `rkdumpctl reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Why (the udev rule passes `<action>:<subsystem>:<device>`).
    #[arg(long, default_value = "manual")]
    pub reason: String,
    #[command(flatten)]
    pub ctx: Ctx,
}

/// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic format: sorts by time, no `:` in a file name).
pub fn compact_utc(secs: u64) -> String {
    state::utc(secs).replace(['-', ':'], "")
}

/// The directory name for a dump: `<UTC crash time>-<release>`, the release cut to file-name
/// safe characters.
pub fn dump_dir_name(h: &RecordHeader, now: u64) -> String {
    let when = if h.timestamp != 0 { h.timestamp } else { now };
    let release: String = dumpdisk::release(h)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{release}", compact_utc(when))
}

/// The dump's reason: the `panic:` line of the crash report `save` wrote beside the vmcore
/// (`vmcore.report.txt`, from the record's report area), when the record carried one.
fn report_reason(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("vmcore.report.txt")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("panic:"))
        .map(|r| r.trim().to_string())
}

/// Saves the unsaved dump `h` on `device` into a new directory under `save_dir`.
pub fn save_dump(device: &Path, h: &RecordHeader, save_dir: &Path) -> Result<SavedDump, String> {
    let now = state::now();
    let base = dump_dir_name(h, now);
    let mut dir = save_dir.join(&base);
    let mut n = 2;
    while dir.exists() {
        dir = save_dir.join(format!("{base}.{n}"));
        n += 1;
    }
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let vmcore = dir.join("vmcore");
    // Whatever the record holds is kept: an interrupted dump is the only copy there is. The
    // arguments go through `save`'s own command line, so options it gains keep their defaults.
    let args = SaveCli::try_parse_from([
        "save".as_ref(),
        device.as_os_str(),
        "--output".as_ref(),
        vmcore.as_os_str(),
        "--partial".as_ref(),
    ])
    .map_err(|e| e.to_string())?
    .args;
    if let Err(e) = save::run(&args) {
        let _ = fs::remove_dir(&dir);
        return Err(e);
    }
    let after = dumpdisk::probe(device)?;
    if !matches!(after.record, Record::Saved(_)) {
        eprintln!(
            "rkdumpctl boot: warning: {} is not marked saved; the next boot saves it again",
            device.display()
        );
    }
    let verified = ChecksumKind::from_flags(h.flags)
        .map_or_else(|_| "none".to_string(), |k| k.coverage().to_string());
    let saved = SavedDump {
        saved: now,
        crash_time: h.timestamp,
        release: dumpdisk::release(h),
        dir: dir.clone(),
        device: device.to_path_buf(),
        bytes: fs::metadata(&vmcore).map_or(0, |m| m.len()),
        record_state: format!("{:?}", h.state),
        verified,
        reason: report_reason(&dir),
    };
    let mut text = serde_json::to_string_pretty(&saved).map_err(|e| e.to_string())?;
    text.push('\n');
    snapshot::write_file(&dir.join(MARKER), text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(saved)
}

/// Removes the oldest of `boot`'s dump directories under `save_dir` beyond `keep` (0: none).
/// Only directories holding [`MARKER`] count or are removed.
pub fn prune(save_dir: &Path, keep: u32) -> Vec<PathBuf> {
    if keep == 0 {
        return Vec::new();
    }
    let mut ours: Vec<PathBuf> = fs::read_dir(save_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join(MARKER).is_file())
                .collect()
        })
        .unwrap_or_default();
    ours.sort();
    let excess = ours.len().saturating_sub(keep as usize);
    let mut removed = Vec::new();
    for p in ours.into_iter().take(excess) {
        match fs::remove_dir_all(&p) {
            Ok(()) => removed.push(p),
            Err(e) => eprintln!("rkdumpctl: warning: pruning {}: {e}", p.display()),
        }
    }
    removed
}

fn syscall_name(s: Syscall) -> &'static str {
    match s {
        Syscall::File => "kexec_file_load",
        Syscall::Legacy => "kexec_load",
        Syscall::Auto => "auto",
    }
}

/// Snapshots and loads the configured kernel; `reason` is recorded. With `syscall = auto`
/// kexec_file_load is tried first and kexec_load only when it is refused; the refusal is kept
/// as the reason for the fallback.
pub fn arm(ctx: &Ctx, conf: &Config, reason: &str) -> Result<Loaded, String> {
    let kernel = &conf.kernel;
    let (kernel_size, kernel_sha256) =
        state::file_digest(kernel).map_err(|e| format!("kernel {}: {e}", kernel.display()))?;
    let cmdline_size = load::read_cmdline_size(kernel).map_err(|e| e.to_string())?;
    let running = fs::read_to_string(ctx.sources.proc_root.join("cmdline")).unwrap_or_default();
    let params = conf.kernel_params();
    let cmdline = load::build_cmdline(&running, Some(&params));
    let blob = ctx.state_dir.join(state::BLOB);
    let snap = snapshot::take(&ctx.sources).map_err(|e| format!("snapshot: {e}"))?;
    snapshot::warn("boot", &snap);
    snapshot::write_file(&blob, &snap.blob).map_err(|e| format!("snapshot: {e}"))?;
    println!("rkdumpctl: snapshot: {}", snap.summary(&blob));
    let tries: &[Syscall] = match conf.syscall {
        SyscallPolicy::Auto => &[Syscall::File, Syscall::Legacy],
        SyscallPolicy::File => &[Syscall::File],
        SyscallPolicy::Legacy => &[Syscall::Legacy],
    };
    let mut refused: Vec<String> = Vec::new();
    for &sc in tries {
        let attempt = load::check_cmdline(&cmdline, sc, cmdline_size).and_then(|()| {
            let args: Vec<OsString> = load::kexec_args(kernel, &blob, &cmdline, sc);
            load::exec_kexec(&ctx.kexec, &args)
        });
        match attempt {
            Ok(_) => {
                let why = match (conf.syscall, refused.is_empty()) {
                    (SyscallPolicy::File, _) => "configured: syscall = file".to_string(),
                    (SyscallPolicy::Legacy, _) => "configured: syscall = legacy".to_string(),
                    (_, true) => "the kernel accepted the image through kexec_file_load".into(),
                    (_, false) => format!("fallback after {}", refused.join("; ")),
                };
                println!(
                    "rkdumpctl: {} loaded with {} ({why}): {}",
                    kernel.display(),
                    syscall_name(sc),
                    load::shell_quote(&cmdline)
                );
                return Ok(Loaded {
                    time: state::now(),
                    boot_id: state::boot_id(&ctx.sources.proc_root),
                    kernel: kernel.clone(),
                    kernel_size,
                    kernel_sha256,
                    syscall: syscall_name(sc).into(),
                    syscall_why: why,
                    cmdline,
                    blob: blob.clone(),
                    blob_sha256: state::bytes_digest(&snap.blob),
                    reason: reason.into(),
                });
            }
            Err(e) => refused.push(format!(
                "{} refused: {}",
                syscall_name(sc),
                e.to_string().replace('\n', " ")
            )),
        }
    }
    let mut msg = refused.join("; ");
    if let Some(hint) = lockdown::hint(&ctx.sources.sysfs_root, &msg, kernel) {
        msg.push('\n');
        msg.push_str(&hint);
    }
    Err(msg)
}

/// Loads, records the outcome in the state, and prints the verdict; `Err` when not armed.
fn arm_and_state(
    ctx: &Ctx,
    conf: &Config,
    st: &mut State,
    reason: &str,
    cmd: &str,
) -> Result<(), String> {
    match arm(ctx, conf, reason) {
        Ok(l) => {
            st.loaded = Some(l);
            st.last_failure = None;
        }
        Err(e) => {
            eprintln!("rkdumpctl {cmd}: error: loading: {e}");
            st.last_failure = Some((state::now(), e));
        }
    }
    if let Err(e) = st.write(&ctx.state_dir) {
        eprintln!("rkdumpctl {cmd}: error: writing the state: {e}");
    }
    let report = status::evaluate(ctx, conf, st);
    if report.armed {
        println!("rkdumpctl {cmd}: armed");
        Ok(())
    } else {
        Err(format!("not armed: {}", report.reasons.join("; ")))
    }
}

/// Runs `rkdumpctl boot`.
pub fn run_boot(args: &BootArgs) -> Result<(), String> {
    let ctx = &args.ctx;
    let conf = ctx.conf.load().map_err(|e| e.to_string())?;
    let mut st = State::read(&ctx.state_dir).unwrap_or_else(|e| {
        eprintln!("rkdumpctl boot: warning: {e}; starting a new state");
        State::default()
    });
    for found in dumpdisk::find(&conf.device, &ctx.sources.sysfs_root, &ctx.dev_root) {
        let disk = match found {
            Ok(d) => d,
            Err(e) => {
                eprintln!("rkdumpctl boot: error: {e}");
                continue;
            }
        };
        match &disk.record {
            Record::Unsaved(h) => match save_dump(&disk.path, h, &conf.save_dir) {
                Ok(saved) => {
                    println!(
                        "rkdumpctl boot: saved the {:?} dump of {} from {} into {}",
                        h.state,
                        saved.release,
                        disk.path.display(),
                        saved.dir.display()
                    );
                    st.last_dump = Some(saved);
                }
                Err(e) => eprintln!(
                    "rkdumpctl boot: error: saving the dump on {}: {e}",
                    disk.path.display()
                ),
            },
            Record::Damaged(e) => eprintln!(
                "rkdumpctl boot: error: {}: damaged dump record: {e}",
                disk.path.display()
            ),
            Record::None | Record::Saved(_) => {}
        }
    }
    for p in prune(&conf.save_dir, conf.keep) {
        println!(
            "rkdumpctl boot: pruned {} (keep = {})",
            p.display(),
            conf.keep
        );
    }
    arm_and_state(ctx, &conf, &mut st, "boot", "boot")
}

/// Runs `rkdumpctl reload`.
pub fn run_reload(args: &ReloadArgs) -> Result<(), String> {
    let ctx = &args.ctx;
    let conf = ctx.conf.load().map_err(|e| e.to_string())?;
    let mut st = State::read(&ctx.state_dir).unwrap_or_default();
    let reason = format!("reload: {}", args.reason);
    println!("rkdumpctl reload: {reason}");
    arm_and_state(ctx, &conf, &mut st, &reason, "reload")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkdump_devices::label::{Label, RecordLayout, State as RecState};

    fn header(ts: u64, release: &[u8]) -> RecordHeader {
        let lab = Label::new([1; 16], 8 << 20, 0).unwrap();
        let layout: RecordLayout = rkdump_devices::label::record_layout(&lab, 4096).unwrap();
        let mut h = RecordHeader::new(&lab, &layout, 4096, ts, [2; 16], release);
        h.state = RecState::Complete;
        h
    }

    #[test]
    fn dump_directory_names() {
        assert_eq!(
            dump_dir_name(&header(1_700_000_000, b"6.1.0-28-cloud-amd64"), 5),
            "20231114T221320Z-6.1.0-28-cloud-amd64"
        );
        // No crash time: the save time; odd characters in the release are replaced.
        assert_eq!(
            dump_dir_name(&header(0, b"a/b c"), 0),
            "19700101T000000Z-a_b_c"
        );
    }

    #[test]
    fn prune_keeps_the_newest_of_its_own() {
        let d = std::env::temp_dir().join(format!("rkdumpctl-prune-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        for name in [
            "20240101T000000Z-a",
            "20250101T000000Z-b",
            "20260101T000000Z-c",
        ] {
            fs::create_dir_all(d.join(name)).unwrap();
            fs::write(d.join(name).join(MARKER), "{}").unwrap();
        }
        // Not ours: no marker.
        fs::create_dir_all(d.join("10000101-other")).unwrap();
        assert!(prune(&d, 0).is_empty());
        let removed = prune(&d, 2);
        assert_eq!(removed, vec![d.join("20240101T000000Z-a")]);
        assert!(d.join("10000101-other").exists());
        assert!(d.join("20260101T000000Z-c").exists());
        assert!(prune(&d, 2).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }
}
