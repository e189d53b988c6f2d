//! `rkdumpctl save <disk or image> -o <vmcore>`: verifies the dump record rkdump wrote (label
//! and header CRC-32, per-block XXH64) and extracts the vmcore. Incomplete, truncated or corrupt dumps
//! are refused unless `--partial`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use rkdump_devices::label::{ChecksumKind, ReadFailed, RecordSummary, State};
use rkdump_devices::record::read::{self, ReadError};

/// Arguments of `save`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dump device or image file.
    device: PathBuf,
    /// Where to write the vmcore.
    #[arg(short, long)]
    output: PathBuf,
    /// Extract an incomplete or truncated dump too (the vmcore is then cut short).
    #[arg(long)]
    partial: bool,
}

/// Runs `save`: the record is read with the same code the host tests check the capture
/// kernel's writer against (`rkdump_devices::record::read`).
pub fn run(args: &Args) -> Result<(), String> {
    let dev = &args.device;
    let mut f = File::open(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    // The last I/O error, for the message: the record reader only learns that a read failed.
    let mut io_error: Option<io::Error> = None;
    let mut at = |off: u64, buf: &mut [u8]| -> Result<(), ReadFailed> {
        let r = f.seek(SeekFrom::Start(off)).and_then(|_| f.read_exact(buf));
        r.map_err(|e| {
            io_error = Some(e);
            ReadFailed
        })
    };
    let verified = read::verify(&mut at);
    let why = |e: &mut Option<io::Error>| e.take().map_or(String::new(), |e| e.to_string());
    let summary = match verified {
        Ok((_, s)) => s,
        Err(ReadError::LabelUnreadable) => {
            return Err(format!(
                "{}: reading label: {}",
                dev.display(),
                why(&mut io_error)
            ));
        }
        Err(ReadError::Label(e)) => return Err(format!("{}: {e}", dev.display())),
        Err(ReadError::HeaderUnreadable) => {
            return Err(format!("reading the record header: {}", why(&mut io_error)));
        }
        Err(e) => return Err(format!("{e}")),
    };
    let h = summary.header;
    match h.state {
        State::Complete => {}
        other if args.partial => eprintln!(
            "rkdumpctl save: warning: dump is {other:?}; extracting {} bytes",
            h.written
        ),
        other => {
            return Err(format!(
                "dump is {other:?} ({} of {} bytes); use --partial to extract it anyway",
                h.written, h.vmcore_size
            ));
        }
    }
    let mut out =
        File::create(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let mut out_error: Option<io::Error> = None;
    let copied = read::copy_vmcore(&h, &mut at, &mut |b| {
        out.write_all(b).map_err(|e| {
            out_error = Some(e);
            ReadFailed
        })
    });
    match copied {
        Ok(()) => {}
        Err(ReadError::Output) => return Err(why(&mut out_error)),
        Err(_) => return Err(format!("reading dump data: {}", why(&mut io_error))),
    }
    out.sync_all().map_err(|e| e.to_string())?;
    println!(
        "{}: {:?} dump of {} ({} bytes, {} blocks verified, coverage: {}) -> {}",
        dev.display(),
        h.state,
        h.osrelease_str().unwrap_or("?"),
        h.written,
        summary.blocks_verified,
        coverage(&summary),
        args.output.display()
    );
    Ok(())
}

/// How much of the dump the block checksums covered: "every byte", "128 of 4096 bytes per
/// page" or "none" (also for a record whose table was never written).
fn coverage(summary: &RecordSummary) -> String {
    match ChecksumKind::from_flags(summary.header.flags) {
        Ok(k) if summary.blocks_verified > 0 => k.coverage().to_string(),
        _ => ChecksumKind::None.coverage().to_string(),
    }
}
