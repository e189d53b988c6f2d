//! The bench's two anchors, measured in the same run as rkdump:
//!
//! - **the hypervisor's own dump** ([`guest_dump`]): the same marker-filled guest, held idle
//!   (`e2e.hold=1`: no kexec, no crash), dumped by QEMU itself with `dump-guest-memory` over QMP
//!   into the file system that holds the disk images, timed from the command to its answer and
//!   then to `fdatasync` of the file. A peer that needs no capture kernel at all.
//! - **the host's write limit** ([`host_limit`]): the host writes the same number of bytes in
//!   4 MiB `write`s into a pre-written file in that file system and `fdatasync`s it: what the
//!   storage under QEMU's disk images takes, warm. No emulated writer can beat it by much.

use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rkdump_tests::qemu::Run;
use rkdump_tests::qmp::Qmp;
use rkdump_tests::verify;

use super::cases::Kind;
use super::measure::{Sample, flattened_len};
use crate::e2e::{Case, Harness};

/// The console line of a held first kernel (`say "hold ready"` in init.sh).
const HOLD_READY: &str = "E2E: hold ready";

/// Bytes per host `write` of the limit measurement (the issue's `dd bs=4M`).
const HOST_BLOCK: usize = 4 << 20;

/// Dumps the held guest of `case` with QEMU's `dump-guest-memory` (`kind` picks ELF or
/// kdump-zlib) into `out`. The ELF dump must hold every marker page the guest reported (the
/// anchor dumped the memory it claims to have), the kdump one must be a whole flattened
/// stream.
pub(super) fn guest_dump(
    h: &Harness,
    kind: Kind,
    case: &Case,
    out: &Path,
) -> Result<Sample, String> {
    let format = match kind {
        Kind::GuestElf => "elf",
        Kind::GuestKdump => "kdump-zlib",
        _ => return Err(format!("{} is not a guest dump", kind.slug())),
    };
    let dir = h.fresh_run_dir(case)?;
    let sock = Qmp::socket_in(&dir);
    let machine = h.machine(case, &dir)?.args(Qmp::args(&sock));
    let _ = std::fs::remove_file(out);
    let command = format!(
        r#"{{"execute": "dump-guest-memory", "arguments": {{"paging": false, "protocol": "file:{}", "format": "{format}"}}}}"#,
        out.display()
    );
    // (dump seconds, dump + fdatasync seconds) or why not.
    let timing: RefCell<Option<Result<(f64, f64), String>>> = RefCell::new(None);
    let held = Cell::new(false);
    let dump_timeout = case.timeout;
    let stop = |l: &rkdump_tests::console::Line| -> Option<String> {
        if !l.text.contains(HOLD_READY) || held.get() {
            return None;
        }
        held.set(true);
        let r = (|| {
            let mut q = Qmp::connect(&sock, Duration::from_secs(30)).map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            q.execute(&command, dump_timeout)
                .map_err(|e| e.to_string())?;
            let dumped = t0.elapsed().as_secs_f64();
            std::fs::File::open(out)
                .and_then(|f| f.sync_data())
                .map_err(|e| format!("fdatasync {}: {e}", out.display()))?;
            Ok((dumped, t0.elapsed().as_secs_f64()))
        })();
        *timing.borrow_mut() = Some(r);
        Some("guest dumped through QMP".into())
    };
    let quiet = |_: &str| false;
    let outcome = Run::new(&machine, &dir, case.timeout)
        .echo(&quiet)
        .stop(&stop)
        .start()
        .map_err(|e| e.to_string())?;
    let mut s = Sample::default();
    let Some(result) = timing.into_inner() else {
        return Ok(Sample::failed(format!(
            "the guest never said `{HOLD_READY}` ({})",
            if outcome.timed_out {
                "timed out"
            } else {
                "QEMU ended"
            }
        )));
    };
    let (dumped, durable) = match result {
        Ok(t) => t,
        Err(e) => return Ok(Sample::failed(e)),
    };
    let len = std::fs::metadata(out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .len();
    s.write_secs = Some(dumped);
    s.durable = Some(durable);
    s.written = Some(len);
    s.vmcore = Some(len);
    match kind {
        Kind::GuestElf => {
            let report = outcome
                .log
                .first_kernel()
                .marker
                .ok_or("no marker report from the guest")?;
            match verify::check_marker_file(out, &report) {
                Ok(st) => {
                    s.ok = true;
                    s.why = format!(
                        "{} marker pages intact; {:.2} s to the QMP answer, {:.2} s with fdatasync",
                        st.pages, dumped, durable
                    );
                }
                Err(e) => s.why = format!("marker check of QEMU's dump: {e}"),
            }
        }
        _ => {
            // QEMU 7.2 writes kdump-zlib in makedumpfile's flattened format (`makedumpfile -R`
            // turns it into a kdump file): the whole stream must walk to its end record.
            let walked = std::fs::File::open(out)
                .map_err(|e| e.to_string())
                .and_then(|f| flattened_len(&mut std::io::BufReader::new(f)))
                .map(|f| f.stream_len);
            match walked {
                Ok(n) if n == len => {
                    s.ok = true;
                    s.why = format!(
                        "flattened kdump-zlib stream, {:.2} s to the QMP answer, {:.2} s with fdatasync",
                        dumped, durable
                    );
                }
                Ok(n) => s.why = format!("flattened stream ends at {n} of {len} bytes"),
                Err(e) => s.why = format!("QEMU's kdump-zlib output: {e}"),
            }
        }
    }
    Ok(s)
}

/// The host's write limit in `dir` for `bytes`: a file is written full once (so its pages
/// exist, as the bench's pre-written images do), then timed: `bytes` rewritten in 4 MiB
/// writes and `fdatasync`ed. The file is removed afterwards.
pub(super) fn host_limit(dir: &Path, bytes: u64) -> Result<Sample, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("host-limit.img");
    let block: Vec<u8> = (0..HOST_BLOCK).map(|i| (i % 251) as u8 | 1).collect();
    let write_all = |f: &mut std::fs::File| -> std::io::Result<()> {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(HOST_BLOCK as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        f.sync_data()
    };
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(&path).map_err(err)?;
    write_all(&mut f).map_err(err)?;
    drop(f);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(err)?;
    let t0 = Instant::now();
    write_all(&mut f).map_err(err)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(Sample {
        ok: true,
        why: format!("{bytes} bytes in 4 MiB writes + fdatasync into a pre-written file"),
        durable: Some(secs),
        write_secs: Some(secs),
        written: Some(bytes),
        vmcore: Some(bytes),
        ..Sample::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_limit_writes_and_times_the_bytes() {
        let dir = std::env::temp_dir().join(format!("rkdump-limit-{}", std::process::id()));
        let s = host_limit(&dir, (8 << 20) + 4096).unwrap();
        assert!(s.ok);
        assert_eq!(s.written, Some((8 << 20) + 4096));
        assert!(s.rate().is_some_and(|r| r > 0.0));
        assert!(!dir.join("host-limit.img").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
