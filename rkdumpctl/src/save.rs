//! `rkdumpctl save <disk or image> -o <vmcore>`: verifies the dump record rkdump wrote (label,
//! header CRC, per-block CRCs) and extracts the vmcore. Incomplete, truncated or corrupt dumps
//! are refused unless `--partial`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use rkdump_devices::label::{self, Label, ReadFailed, State};

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

/// Runs `save`.
pub fn run(args: &Args) -> Result<(), String> {
    let dev = &args.device;
    let mut f = File::open(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let mut head = vec![0u8; label::LABEL_BYTES];
    f.read_exact(&mut head)
        .map_err(|e| format!("{}: reading label: {e}", dev.display()))?;
    let lab = Label::parse(&head).map_err(|e| format!("{}: {e}", dev.display()))?;
    let mut hdr = vec![0u8; label::HEADER_BYTES];
    f.seek(SeekFrom::Start(lab.data_offset))
        .map_err(|e| e.to_string())?;
    f.read_exact(&mut hdr)
        .map_err(|e| format!("reading the record header: {e}"))?;
    let summary = label::verify_record(&lab, &hdr, |off, buf| {
        f.seek(SeekFrom::Start(off)).map_err(|_| ReadFailed)?;
        f.read_exact(buf).map_err(|_| ReadFailed)
    });
    let summary = match summary {
        Ok(s) => s,
        Err(e) => return Err(format!("dump record rejected: {e}")),
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
    f.seek(SeekFrom::Start(h.data_offset()))
        .map_err(|e| e.to_string())?;
    let mut left = h.written;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n])
            .map_err(|e| format!("reading dump data: {e}"))?;
        out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    out.sync_all().map_err(|e| e.to_string())?;
    println!(
        "{}: {:?} dump of {} ({} bytes, {} blocks verified) -> {}",
        dev.display(),
        h.state,
        h.osrelease_str().unwrap_or("?"),
        h.written,
        summary.blocks_verified,
        args.output.display()
    );
    Ok(())
}
