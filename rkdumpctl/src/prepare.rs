//! `rkdumpctl prepare <disk or image>`: writes the rkdump label (devices::label) to the first
//! 4 KiB so the capture kernel may dump there. Nothing else on the device is written.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use rkdump_devices::label::Label;

/// Arguments of `prepare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Block device or image file to dedicate to rkdump dumps.
    device: PathBuf,
    /// Overwrite a device whose first 4 KiB are not zero and carry no rkdump label.
    #[arg(long)]
    force: bool,
}

fn uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        for (i, pair) in hex.chunks(2).take(16).enumerate() {
            u[i] = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("0"), 16).unwrap_or(0);
        }
    }
    u
}

/// Runs `prepare`.
pub fn run(args: &Args) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&args.device)
        .map_err(|e| format!("{}: {e}", args.device.display()))?;
    let size = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 4096];
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let n = std::io::Read::read(&mut f, &mut head).map_err(|e| e.to_string())?;
    let labelled = Label::parse(&head[..n]).is_ok();
    if !labelled && head.iter().any(|&b| b != 0) && !args.force {
        return Err(format!(
            "{}: the first 4 KiB hold data (a partition table or file system?); use --force to dedicate it to rkdump",
            args.device.display()
        ));
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let capacity = size / 4096 * 4096;
    let label = Label::new(uuid(), capacity, created).map_err(|e| format!("{e}"))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    f.write_all(&label.to_bytes()).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    println!(
        "{}: rkdump label written (capacity {} bytes, data at {:#x})",
        args.device.display(),
        capacity,
        label.data_offset
    );
    Ok(())
}
