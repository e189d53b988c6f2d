//! `rkdumpctl recv`: decodes rkdump's serial dump stream (vmcore::stream) from a capture file, a tty or
//! stdin and rebuilds the vmcore file (ELF, or kdump-compressed from a version-2 run whose frames
//! come in any file order), refusing damaged or incomplete streams unless `--partial`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use rkdump_vmcore::SinkError;
use rkdump_vmcore::header::{self, ElfCoreHeader};
use rkdump_vmcore::stream::{Action, CRC32, Problem, Reassembler, StreamDecoder, VERSION, WriteAt};

/// Problems listed in full before the rest are only counted.
const MAX_LISTED: usize = 20;

/// Arguments of `rkdumpctl recv`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serial capture file, tty device (e.g. /dev/ttyUSB0) or `-` for stdin.
    input: PathBuf,
    /// Where to write the vmcore.
    #[arg(short, long)]
    output: PathBuf,
    /// Keep what arrived (holes zero-filled) instead of refusing a damaged or incomplete stream.
    #[arg(long)]
    partial: bool,
    /// Stop reading when no byte has arrived for this many seconds (tty and pipe input).
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Baud rate to set on a tty input (the tty is always put in raw mode with `stty`).
    #[arg(long)]
    baud: Option<u32>,
}

/// Why `recv` failed.
#[derive(Debug)]
pub enum Error {
    /// Reading the input failed.
    Input(PathBuf, io::Error),
    /// Writing the output failed.
    Output(PathBuf, io::Error),
    /// No frame of an rkdump stream was found.
    NoStream {
        /// Bytes read.
        bytes: u64,
    },
    /// The stream is damaged or incomplete and `--partial` was not given.
    Rejected {
        /// Number of problems found.
        problems: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(p, e) => write!(f, "reading {}: {e}", p.display()),
            Error::Output(p, e) => write!(f, "writing {}: {e}", p.display()),
            Error::NoStream { bytes } => {
                write!(f, "no rkdump stream frame found in {bytes} bytes of input")
            }
            Error::Rejected { problems } => write!(
                f,
                "stream damaged or incomplete ({problems} problem(s)); no vmcore written \
                 (use --partial to keep what arrived)"
            ),
        }
    }
}

/// The output file being rebuilt.
struct Output {
    file: File,
    error: Option<io::Error>,
}

impl WriteAt for Output {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        self.file.write_all_at(data, offset).map_err(|e| {
            let code = e.raw_os_error().unwrap_or(0) as u32;
            self.error = Some(e);
            SinkError::Io { code }
        })
    }
}

/// Runs `rkdumpctl recv`.
pub fn run(args: &Args) -> Result<(), Error> {
    let chunks = spawn_reader(&args.input, args.baud)?;
    let tmp = incomplete_path(&args.output);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::Output(tmp.clone(), e))?;
    let mut out = Output { file, error: None };
    let result = receive(args, &chunks, &mut out, &tmp);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn receive(
    args: &Args,
    chunks: &mpsc::Receiver<io::Result<Vec<u8>>>,
    out: &mut Output,
    tmp: &Path,
) -> Result<(), Error> {
    let out_err = |out: &mut Output, e: Option<io::Error>| {
        let e = e
            .or_else(|| out.error.take())
            .unwrap_or_else(|| io::Error::other("write failed"));
        Error::Output(tmp.to_path_buf(), e)
    };
    let mut dec = StreamDecoder::new();
    let mut re = Reassembler::new();
    let timeout = Duration::from_secs(args.timeout_s);
    let mut finished = false;
    let mut timed_out = false;
    let mut progress = crate::progress::Progress::new("rkdumpctl recv", 0);
    let mut drain = |dec: &mut StreamDecoder, out: &mut Output| -> Result<bool, Error> {
        progress.set_total(re.announced_size());
        progress.set_position(re.received_end());
        while let Some(ev) = dec.next_event() {
            match re.handle(&ev, out).map_err(|_| out_err(out, None))? {
                Action::Continue => {}
                Action::Restart => {
                    eprintln!("recv: a new run began; discarding the earlier incomplete one");
                    out.file.set_len(0).map_err(|e| out_err(out, Some(e)))?;
                }
                Action::Finished => return Ok(true),
            }
        }
        Ok(false)
    };
    while !finished {
        match chunks.recv_timeout(timeout) {
            Ok(Ok(bytes)) => {
                dec.push(&bytes);
                finished = drain(&mut dec, out)?;
            }
            Ok(Err(e)) => return Err(Error::Input(args.input.clone(), e)),
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if !finished {
        dec.finish();
        drain(&mut dec, out)?;
    }
    progress.set_position(re.received_end());
    progress.finish();
    let stats = *dec.stats();
    if stats.frames == 0 {
        return Err(Error::NoStream {
            bytes: stats.bytes_in,
        });
    }
    if timed_out {
        eprintln!("recv: no input for {} s, stopped reading", args.timeout_s);
    }

    let bound = bound_announced_size(&mut re, &out.file).map_err(|e| out_err(out, Some(e)))?;
    let total = re.total_size();
    out.file.set_len(total).map_err(|e| out_err(out, Some(e)))?;
    let mut problems: Vec<String> = bound.into_iter().collect();
    problems.extend(re.problems().iter().map(Problem::to_string));
    let holes = re.holes();
    // A version-2 run's CRC covers the payloads as they arrived (the reassembler checks it).
    if let Some(end) = re.end()
        && holes.is_empty()
        && re.version() == Some(VERSION)
    {
        let crc = file_crc(&out.file, total).map_err(|e| out_err(out, Some(e)))?;
        if crc != end.file_crc {
            problems.push(format!(
                "whole-file CRC32 mismatch: End frame says {:08x}, received file has {crc:08x}",
                end.file_crc
            ));
        }
    }
    let run_id: String = re
        .run_id()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_else(|| "unknown".into());
    eprintln!(
        "recv: run {run_id}: {total} bytes, {} data frames, {} bytes skipped, {} bad frame(s)",
        re.data_frames(),
        stats.skipped_bytes,
        stats.corrupt_frames
    );
    for p in problems.iter().take(MAX_LISTED) {
        eprintln!(
            "recv: {}: {p}",
            if args.partial { "warning" } else { "error" }
        );
    }
    if problems.len() > MAX_LISTED {
        eprintln!("recv: ... and {} more", problems.len() - MAX_LISTED);
    }
    if !problems.is_empty() && !args.partial {
        return Err(Error::Rejected {
            problems: problems.len(),
        });
    }
    if !problems.is_empty()
        && crate::save::mark_kdump_incomplete(&out.file).map_err(|e| out_err(out, Some(e)))?
    {
        eprintln!(
            "recv: the kdump file is marked incomplete (crash reads the missing pages as incomplete)"
        );
    }
    out.file.sync_all().map_err(|e| out_err(out, Some(e)))?;
    fs::rename(tmp, &args.output).map_err(|e| Error::Output(args.output.clone(), e))?;
    if problems.is_empty() {
        println!(
            "recv: wrote {} ({total} bytes, CRC32 verified)",
            args.output.display()
        );
    } else {
        let missing: u64 = holes.iter().map(|(s, e)| e - s).sum();
        println!(
            "recv: PARTIAL dump written to {} ({total} bytes, {missing} bytes missing and zero-filled, \
             {} problem(s))",
            args.output.display(),
            problems.len()
        );
    }
    Ok(())
}

/// Refuses a size the run announces but the stream cannot back, capping the output instead of
/// writing (or zero-filling) what never arrived. A vmcore's first bytes are its own ELF header,
/// which lays out the whole file: the announced size must match it (up to the page rounding of
/// the last segment that /proc/vmcore's layout adds). Without that header the size
/// cannot be checked, so the output stops at the last byte received. Returns the reason when the
/// size was refused (a problem: the run is then rejected unless `--partial`).
fn bound_announced_size(re: &mut Reassembler, file: &File) -> io::Result<Option<String>> {
    let announced = re.announced_size();
    let received = re.received_end();
    // No file can be larger (`set_len` takes an i64 on Linux).
    let file_max = i64::MAX as u64;
    let why = match header_extent(re, file)? {
        Some(extent) => {
            let limit = extent.checked_next_multiple_of(4096).unwrap_or(extent);
            if (extent..=limit).contains(&announced) {
                return Ok(None);
            }
            re.cap_total(limit.min(announced));
            format!(
                "the run announces {announced} bytes but its own ELF header lays out {extent}: \
                 the output stops at {}",
                limit.min(announced)
            )
        }
        None if announced > received && (re.end().is_none() || announced > file_max) => {
            re.cap_total(received);
            format!(
                "the run announces {announced} bytes, but its ELF header never arrived, so that \
                 size cannot be checked: the output stops at the last byte received ({received})"
            )
        }
        None => return Ok(None),
    };
    if re.total_size() > file_max {
        re.cap_total(received.min(file_max));
    }
    Ok(Some(why))
}

/// The file size the received ELF header lays out, when the header and its program headers
/// arrived whole and are valid.
fn header_extent(re: &Reassembler, file: &File) -> io::Result<Option<u64>> {
    let mut want = 64u64;
    loop {
        if !re.covers(0, want) {
            return Ok(None);
        }
        let mut buf = vec![0u8; want as usize];
        file.read_exact_at(&mut buf, 0)?;
        match ElfCoreHeader::parse(&buf) {
            Ok(h) => return Ok(h.file_extent()),
            Err(header::Error::Truncated { needed, .. }) if needed > want => want = needed,
            Err(_) => return Ok(None),
        }
    }
}

/// `<output>.incomplete`, renamed to `<output>` only once the dump is accepted.
fn incomplete_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".incomplete");
    PathBuf::from(s)
}

fn file_crc(file: &File, len: u64) -> io::Result<u32> {
    let mut digest = CRC32.digest();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        digest.update(&buf[..n]);
        at += n as u64;
    }
    Ok(digest.finalize())
}

/// Reads the input on a thread so the main loop can apply an idle timeout to ttys and pipes.
fn spawn_reader(
    input: &Path,
    baud: Option<u32>,
) -> Result<mpsc::Receiver<io::Result<Vec<u8>>>, Error> {
    let mut reader: Box<dyn Read + Send> = if input == Path::new("-") {
        Box::new(io::stdin())
    } else {
        let file = File::open(input).map_err(|e| Error::Input(input.to_path_buf(), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::Input(input.to_path_buf(), e))?;
        if meta.file_type().is_char_device() {
            configure_tty(input, baud);
        }
        Box::new(file)
    };
    let (tx, rx) = mpsc::sync_channel(64);
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(Ok(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    Ok(rx)
}

/// Puts a tty in raw mode (no echo, no line editing, 8-bit clean) with `stty`; failure is only a warning.
fn configure_tty(tty: &Path, baud: Option<u32>) {
    let mut cmd = Command::new("stty");
    cmd.arg("-F").arg(tty).args(["raw", "-echo"]);
    if let Some(b) = baud {
        cmd.arg(b.to_string());
    }
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("recv: warning: stty on {} failed ({s})", tty.display()),
        Err(e) => eprintln!("recv: warning: cannot run stty: {e}"),
    }
}
