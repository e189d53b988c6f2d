//! `rkdumpctl status [--json]`: whether the machine is armed, and if not, every reason. Armed
//! means all of: a crash kernel is loaded (`/sys/kernel/kexec_crash_loaded`); it was loaded by
//! `boot`/`reload` in this boot from the configured image (size and SHA-256 recorded in the
//! state file); the PCI functions are those of the snapshot it carries; the crashkernel
//! reservation fits it; and the configured dump target exists, carries a valid label and holds
//! the current size estimate. Exit status 0 only when armed.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rkdump_devices::blob::{Blob, BlobView};
use rkdump_devices::label::{self, Label};
use rkdump_devices::pci::Bdf;
use serde::Serialize;

use crate::conf::{Config, Devices};
use crate::dumpdisk::{self, Record};
use crate::estimate::{self, human};
use crate::service::Ctx;
use crate::snapshot;
use crate::state::{self, Loaded, SavedDump, State};

/// Arguments of `rkdumpctl status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (the same facts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ctx: Ctx,
}

/// One dump target as found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TargetReport {
    /// Its path.
    pub path: String,
    /// Label state (`valid` or why not).
    pub label: String,
    /// Label capacity in bytes.
    pub capacity: Option<u64>,
    /// Whether the estimate fits (`None`: no estimate).
    pub fits: Option<bool>,
    /// What the record area holds.
    pub record: String,
}

/// A PCI function's identity and placement, from the first 64 bytes of its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Function {
    ids: [u32; 3],
    bars: [u32; 6],
}

/// Everything `status` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Ready to capture a crash.
    pub armed: bool,
    /// Why not (empty when armed).
    pub reasons: Vec<String>,
    /// Things worth knowing that do not disarm.
    pub warnings: Vec<String>,
    /// `/sys/kernel/kexec_crash_loaded`.
    pub crash_kernel_loaded: Option<bool>,
    /// What `boot`/`reload` loaded last.
    pub loaded: Option<Loaded>,
    /// The last failed load.
    pub last_failure: Option<(u64, String)>,
    /// Seconds since the snapshot was taken.
    pub blob_age_s: Option<u64>,
    /// PCI functions added, removed, re-addressed or changed since the snapshot.
    pub pci_changes: Vec<String>,
    /// `/sys/kernel/kexec_crash_size`.
    pub crashkernel_bytes: Option<u64>,
    /// What rkdump needs there.
    pub crashkernel_needed: Option<u64>,
    /// Estimated dump size at the configured level and format.
    pub estimate_bytes: Option<u64>,
    /// The configured `rkdump.target=` (absent: rkdump's default).
    pub target: Option<String>,
    /// The dump disks found.
    pub targets: Vec<TargetReport>,
    /// The last dump saved by `boot`.
    pub last_dump: Option<SavedDump>,
}

fn functions(blob: &BlobView<'_>) -> BTreeMap<Bdf, Function> {
    blob.records()
        .map(|r| {
            let h = r.header();
            let dw =
                |i: usize| u32::from_le_bytes([h[i * 4], h[i * 4 + 1], h[i * 4 + 2], h[i * 4 + 3]]);
            // Type 0 functions: subsystem ids at 0x2C; bridges have none there.
            let subsys = if h[0x0E] & 0x7F == 0 { dw(11) } else { 0 };
            let mut bars = [0u32; 6];
            let nbars = if h[0x0E] & 0x7F == 0 {
                6
            } else if h[0x0E] & 0x7F == 1 {
                2
            } else {
                0
            };
            for (i, b) in bars.iter_mut().enumerate().take(nbars) {
                *b = dw(4 + i);
            }
            (
                r.bdf(),
                Function {
                    ids: [dw(0), dw(2) >> 8, subsys],
                    bars,
                },
            )
        })
        .collect()
}

fn ids_text(f: &Function) -> String {
    format!(
        "{:04x}:{:04x} class {:06x}",
        f.ids[0] & 0xFFFF,
        f.ids[0] >> 16,
        f.ids[1]
    )
}

/// PCI functions added, removed, re-addressed (same identity at a new address) or changed
/// (another device, or BARs re-assigned) between the snapshot `saved` and `live`.
pub fn pci_changes(saved: &BlobView<'_>, live: &BlobView<'_>) -> Vec<String> {
    let old = functions(saved);
    let new = functions(live);
    let mut removed: Vec<(Bdf, Function)> = old
        .iter()
        .filter(|(b, _)| !new.contains_key(b))
        .map(|(b, f)| (*b, *f))
        .collect();
    let mut added: Vec<(Bdf, Function)> = new
        .iter()
        .filter(|(b, _)| !old.contains_key(b))
        .map(|(b, f)| (*b, *f))
        .collect();
    let mut out = Vec::new();
    // Same identity gone from one address and present at another: re-addressed.
    let mut i = 0;
    while i < removed.len() {
        if let Some(j) = added.iter().position(|(_, f)| f.ids == removed[i].1.ids) {
            let (to, f) = added.remove(j);
            let (from, _) = removed.remove(i);
            out.push(format!("re-addressed {from} -> {to} ({})", ids_text(&f)));
        } else {
            i += 1;
        }
    }
    for (b, f) in &removed {
        out.push(format!("removed {b} ({})", ids_text(f)));
    }
    for (b, f) in &added {
        out.push(format!("added {b} ({})", ids_text(f)));
    }
    for (b, o) in &old {
        if let Some(n) = new.get(b) {
            if n.ids != o.ids {
                out.push(format!("replaced {b}: {} -> {}", ids_text(o), ids_text(n)));
            } else if n.bars != o.bars {
                out.push(format!("BARs re-assigned {b} ({})", ids_text(n)));
            }
        }
    }
    out
}

/// Crash-kernel memory rkdump needs: its `init_size` (setup header 0x260) rounded up to the
/// 2 MiB kernel alignment, the blob (its initrd) rounded to pages, and 1 MiB for kexec's
/// purgatory, boot parameters, command line and ELF core header.
pub fn crashkernel_needed(kernel: &Path, blob_bytes: u64) -> Option<u64> {
    let b = fs::read(kernel).ok()?;
    let init = u32::from_le_bytes(b.get(0x260..0x264)?.try_into().ok()?);
    Some(u64::from(init).next_multiple_of(2 << 20) + blob_bytes.next_multiple_of(4096) + (1 << 20))
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Checks everything; never fails (what cannot be read is a reason or a warning).
pub fn evaluate(ctx: &Ctx, conf: &Config, st: &State) -> Report {
    let sys = &ctx.sources.sysfs_root;
    let mut r = Report {
        loaded: st.loaded.clone(),
        last_failure: st.last_failure.clone(),
        last_dump: st.last_dump.clone(),
        target: conf.target.clone(),
        ..Report::default()
    };

    // 1. Is anything loaded?
    let loaded_path = sys.join("kernel/kexec_crash_loaded");
    match read_trim(&loaded_path).as_deref() {
        Some("1") => r.crash_kernel_loaded = Some(true),
        Some(v) => {
            r.crash_kernel_loaded = Some(false);
            let mut why = format!(
                "no crash kernel is loaded ({} = {v})",
                loaded_path.display()
            );
            if let Some((t, e)) = &st.last_failure {
                why.push_str(&format!(
                    "; the last load failed at {}: {e}",
                    state::utc(*t)
                ));
            }
            r.reasons.push(why);
        }
        None => r.reasons.push(format!(
            "cannot read {}: no kexec support?",
            loaded_path.display()
        )),
    }

    // 2. Is it ours, from this boot, and the configured image?
    let mut live_blob: Option<Vec<u8>> = None;
    match &st.loaded {
        None if r.crash_kernel_loaded == Some(true) => r.reasons.push(
            "a crash kernel is loaded, but not by `rkdumpctl boot`/`reload` (no load in the state file): \
             it may not be rkdump, or carry no snapshot"
                .into(),
        ),
        None => {}
        Some(l) => {
            let boot_id = state::boot_id(&ctx.sources.proc_root);
            if !boot_id.is_empty() && !l.boot_id.is_empty() && boot_id != l.boot_id {
                r.reasons.push(format!(
                    "the load recorded in the state file is from an earlier boot ({})",
                    state::utc(l.time)
                ));
            }
            if l.kernel != conf.kernel {
                r.reasons.push(format!(
                    "the loaded image {} is not the configured {}",
                    l.kernel.display(),
                    conf.kernel.display()
                ));
            } else {
                match state::file_digest(&conf.kernel) {
                    Ok((size, sha)) if sha == l.kernel_sha256 && size == l.kernel_size => {}
                    Ok((size, _)) => r.reasons.push(format!(
                        "{} changed since it was loaded ({} bytes then, {size} now, SHA-256 differs): reload",
                        conf.kernel.display(),
                        l.kernel_size
                    )),
                    Err(e) => r
                        .reasons
                        .push(format!("configured image {}: {e}", conf.kernel.display())),
                }
            }
            r.blob_age_s = Some(state::now().saturating_sub(l.time));

            // 3. PCI changes since the snapshot.
            match fs::read(&l.blob) {
                Err(e) => r
                    .reasons
                    .push(format!("the loaded snapshot {}: {e}", l.blob.display())),
                Ok(saved) if state::bytes_digest(&saved) != l.blob_sha256 => r.reasons.push(format!(
                    "{} was rewritten after the load; it is not what the capture kernel has: reload",
                    l.blob.display()
                )),
                Ok(saved) => match snapshot::take(&ctx.sources) {
                    Err(e) => r.warnings.push(format!("live PCI snapshot: {e}")),
                    Ok(live) => {
                        if let (Ok(a), Ok(b)) = (Blob::parse(&saved), Blob::parse(&live.blob)) {
                            r.pci_changes = pci_changes(&a, &b);
                        }
                        live_blob = Some(saved);
                        if !r.pci_changes.is_empty() {
                            r.reasons.push(format!(
                                "PCI functions changed since the snapshot ({}): run `rkdumpctl reload`",
                                r.pci_changes.join(", ")
                            ));
                        }
                    }
                },
            }
        }
    }

    // 4. Crash kernel reservation.
    r.crashkernel_bytes =
        read_trim(&sys.join("kernel/kexec_crash_size")).and_then(|s| s.parse().ok());
    let blob_len = live_blob.as_ref().map_or(64 << 10, |b| b.len() as u64);
    r.crashkernel_needed = crashkernel_needed(&conf.kernel, blob_len);
    match (r.crashkernel_bytes, r.crashkernel_needed) {
        (Some(0), _) => r.reasons.push(
            "no memory is reserved for a crash kernel (add crashkernel=<size> to the kernel command line)".into(),
        ),
        (Some(have), Some(need)) if have < need => r.reasons.push(format!(
            "the crashkernel reservation ({}) is smaller than rkdump needs ({})",
            human(have),
            human(need)
        )),
        (None, _) => r
            .warnings
            .push("cannot read /sys/kernel/kexec_crash_size".into()),
        _ => {}
    }

    // 5. The target and the estimate.
    let level = conf.level_or_default();
    let format = conf.format_or_default();
    match estimate::estimate(&ctx.sources.proc_root, level, format) {
        Ok(e) => r.estimate_bytes = Some(e.dump_bytes),
        Err(e) => r.warnings.push(format!("no size estimate: {e}")),
    }
    let serial = conf
        .target
        .as_deref()
        .is_some_and(|t| t.starts_with("serial"));
    if !serial {
        let disk_required = conf.target.is_some() || matches!(conf.device, Devices::Paths(_));
        let found = dumpdisk::find(&conf.device, sys, &ctx.dev_root);
        if found.is_empty() {
            let msg = "no disk carries an rkdump label (`rkdumpctl prepare <disk>`)";
            if disk_required {
                r.reasons.push(msg.into());
            } else {
                r.warnings
                    .push(format!("{msg}: rkdump will send the dump to serial COM2"));
            }
        }
        for d in found {
            let disk = match d {
                Ok(d) => d,
                Err(e) => {
                    r.reasons.push(format!("dump target {e}"));
                    continue;
                }
            };
            let mut t = TargetReport {
                path: disk.path.display().to_string(),
                ..TargetReport::default()
            };
            match &disk.label {
                Err(e) => {
                    t.label = e.clone();
                    r.reasons.push(format!(
                        "dump target {}: no valid rkdump label ({e})",
                        disk.path.display()
                    ));
                }
                Ok(lab) => {
                    t.label = "valid".into();
                    t.capacity = Some(lab.capacity_bytes);
                    if let Some(est) = r.estimate_bytes {
                        let fits = fits(lab, est);
                        t.fits = Some(fits);
                        if !fits {
                            r.reasons.push(format!(
                                "dump target {} is too small: {} usable, the dump is estimated at {}",
                                disk.path.display(),
                                human(lab.capacity_bytes.saturating_sub(lab.data_offset)),
                                human(est)
                            ));
                        }
                    }
                }
            }
            t.record = match &disk.record {
                Record::None => "empty".into(),
                Record::Saved(h) => format!("saved dump of {}", dumpdisk::release(h)),
                Record::Unsaved(h) => {
                    r.warnings.push(format!(
                        "{} holds a dump not yet saved ({}); `rkdumpctl boot` saves it, the next crash overwrites it",
                        disk.path.display(),
                        dumpdisk::release(h)
                    ));
                    format!("UNSAVED {:?} dump of {}", h.state, dumpdisk::release(h))
                }
                Record::Damaged(e) => format!("damaged record: {e}"),
            };
            r.targets.push(t);
        }
    }
    r.armed = r.reasons.is_empty();
    r
}

/// Whether a dump of `bytes` fits the labelled disk whole.
fn fits(lab: &Label, bytes: u64) -> bool {
    label::record_layout(lab, bytes).is_ok_and(|l| l.fits)
}

/// Prints the report for people.
pub fn print(r: &Report, conf: &Config) {
    println!("rkdump: {}", if r.armed { "armed" } else { "NOT armed" });
    let loaded = match r.crash_kernel_loaded {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    println!("  crash kernel loaded:  {loaded}");
    if let Some(l) = &r.loaded {
        println!(
            "  image:                {} ({} bytes, sha256 {})",
            l.kernel.display(),
            l.kernel_size,
            l.kernel_sha256.get(..16).unwrap_or("")
        );
        println!("  loaded with:          {} ({})", l.syscall, l.syscall_why);
        println!(
            "  loaded at:            {} ({}), blob {} age {} s",
            state::utc(l.time),
            l.reason,
            l.blob.display(),
            r.blob_age_s.unwrap_or(0)
        );
    }
    if r.pci_changes.is_empty() {
        if r.loaded.is_some() {
            println!("  PCI since snapshot:   no change");
        }
    } else {
        for c in &r.pci_changes {
            println!("  PCI since snapshot:   {c}");
        }
    }
    match (r.crashkernel_bytes, r.crashkernel_needed) {
        (Some(h), Some(n)) => println!(
            "  crashkernel:          {} reserved, rkdump needs {}",
            human(h),
            human(n)
        ),
        (Some(h), None) => println!("  crashkernel:          {} reserved", human(h)),
        _ => {}
    }
    println!(
        "  target:               {}",
        r.target
            .as_deref()
            .unwrap_or("rkdump default (a labelled disk, else serial)")
    );
    if let Some(e) = r.estimate_bytes {
        println!(
            "  estimate:             {} at level {}{}",
            human(e),
            conf.level_or_default(),
            if conf.level.is_none() {
                " (rkdump's default)"
            } else {
                ""
            }
        );
    }
    for t in &r.targets {
        println!(
            "  dump disk:            {}: label {}, capacity {}, {}{}",
            t.path,
            t.label,
            t.capacity.map_or("?".into(), human),
            t.record,
            match t.fits {
                Some(true) => ", estimate fits",
                Some(false) => ", TOO SMALL for the estimate",
                None => "",
            }
        );
    }
    match &r.last_dump {
        Some(d) => println!(
            "  last dump:            crashed {} ({}), saved {} in {}, {} bytes, {} record, verified: {}{}",
            if d.crash_time == 0 {
                "at an unknown time".into()
            } else {
                state::utc(d.crash_time)
            },
            d.release,
            state::utc(d.saved),
            d.dir.display(),
            d.bytes,
            d.record_state,
            d.verified,
            d.reason
                .as_deref()
                .map(|x| format!(", reason: {x}"))
                .unwrap_or_default()
        ),
        None => println!("  last dump:            none saved"),
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
    for why in &r.reasons {
        println!("  not armed: {why}");
    }
}

/// Runs `rkdumpctl status`.
pub fn run(args: &Args) -> Result<(), String> {
    let conf = args.ctx.conf.load().map_err(|e| e.to_string())?;
    let st = State::read(&args.ctx.state_dir)?;
    let r = evaluate(&args.ctx, &conf, &st);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
        );
    } else {
        print(&r, &conf);
    }
    if r.armed {
        Ok(())
    } else {
        Err(format!("not armed: {}", r.reasons.join("; ")))
    }
}
