//! Host measurement tool: runs rkdump's kdump-compressed writer (and its page filter) over an
//! ELF vmcore file (a level-0 rkdump dump or a copy of /proc/vmcore), so its output can be
//! compared with host `makedumpfile -c|-l -d N` on the very same dump.
//!
//! ```text
//! cargo run --release -p rkdump-vmcore --example kdump_from_elf -- VMCORE OUT \
//!     [--level 31] [--codec zlib|lzo|none] [--align BYTES] [--threads N]
//! ```
//!
//! The vmcore's PT_LOADs give the physical memory; the tool builds the elfcorehdr kexec would
//! have handed over (PT_LOAD `p_offset` = physical address, the notes at a spare address) and
//! calls `prepare_dump` and `kdump::write_kdump` as the kernel does.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use rkdump_vmcore::elf::{EHDR_SIZE, Elf64_Phdr, PT_LOAD, PT_NOTE};
use rkdump_vmcore::filter::{Level, PageFilter};
use rkdump_vmcore::header::ElfCoreHeader;
use rkdump_vmcore::kdump::{self, Codec, KdumpSink, Parallel};
use rkdump_vmcore::kernel::KernelInfo;
use rkdump_vmcore::mem::{OldMemError, OldMemory, SinkError};
use rkdump_vmcore::pages::{KeepAll, PageSelector};
use zerocopy::IntoBytes;

/// Where the made-up elfcorehdr and notes live (above any real RAM of a test guest).
const HDR_AT: u64 = 1 << 46;
const NOTES_AT: u64 = (1 << 46) + (1 << 20);

struct FileMemory {
    file: File,
    /// `(paddr, file offset, bytes)`.
    loads: Vec<(u64, u64, u64)>,
    /// Made-up regions: `(addr, bytes)`.
    extra: Vec<(u64, Vec<u8>)>,
}

impl OldMemory for FileMemory {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        let len = buf.len() as u64;
        for (at, bytes) in &self.extra {
            if phys >= *at && phys + len <= at + bytes.len() as u64 {
                let s = (phys - at) as usize;
                buf.copy_from_slice(&bytes[s..s + buf.len()]);
                return Ok(());
            }
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pa = phys + done as u64;
            let Some(&(p, off, n)) = self.loads.iter().find(|&&(p, _, n)| pa >= p && pa - p < n)
            else {
                // The tail of a load's last partial page: zeros, as in the file's hole.
                if self
                    .loads
                    .iter()
                    .any(|&(p, _, n)| pa >= p + n && pa < (p + n).next_multiple_of(4096))
                {
                    buf[done] = 0;
                    done += 1;
                    continue;
                }
                return Err(OldMemError::OutOfRange { phys, len });
            };
            let k = ((p + n - pa) as usize).min(buf.len() - done);
            self.file
                .read_exact_at(&mut buf[done..done + k], off + (pa - p))
                .map_err(|_| OldMemError::Fault { phys: pa })?;
            done += k;
        }
        Ok(())
    }
}

/// The workers on std threads.
struct Threads(usize);

impl Parallel for Threads {
    fn workers(&self) -> usize {
        self.0
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for w in 1..self.0 {
                s.spawn(move || job(w));
            }
            job(0);
        });
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

struct FileSink(File);

impl KdumpSink for FileSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        self.0
            .write_all_at(data, offset)
            .map_err(|_| SinkError::Io { code: 0 })
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(output)) = (args.first(), args.get(1)) else {
        return Err("usage: kdump_from_elf VMCORE OUT [--level N] [--codec zlib|lzo|none] [--align BYTES] [--threads N]".into());
    };
    let level: u8 = arg(&args, "--level", 31);
    let threads: usize = arg(&args, "--threads", 1);
    let align: u64 = arg(&args, "--align", 1);
    let codec = match arg(&args, "--codec", String::from("zlib")).as_str() {
        "zlib" => Codec::Zlib,
        "lzo" => Codec::Lzo,
        "none" => Codec::None,
        c => return Err(format!("unknown codec {c}")),
    };
    let file = File::open(input).map_err(|e| format!("{input}: {e}"))?;
    let mut head = vec![0u8; 1 << 16];
    let n = file.read_at(&mut head, 0).map_err(|e| format!("{e}"))?;
    head.truncate(n);
    let elf = ElfCoreHeader::parse_file(&head).map_err(|e| format!("{e}"))?;
    let mut loads = Vec::new();
    let mut notes = Vec::new();
    let mut phdrs: Vec<Elf64_Phdr> = Vec::new();
    for p in elf.phdrs() {
        let mut q = *p;
        if p.p_type == PT_LOAD {
            loads.push((p.p_paddr, p.p_offset, p.p_filesz));
            q.p_offset = p.p_paddr;
        } else if p.p_type == PT_NOTE {
            let mut b = vec![0u8; p.p_filesz as usize];
            file.read_exact_at(&mut b, p.p_offset)
                .map_err(|e| format!("{e}"))?;
            q.p_offset = NOTES_AT + notes.len() as u64;
            notes.extend_from_slice(&b);
        }
        phdrs.push(q);
    }
    let mut hdr = head[..EHDR_SIZE].to_vec();
    for p in &phdrs {
        hdr.extend_from_slice(p.as_bytes());
    }
    let mut mem = FileMemory {
        file,
        loads,
        extra: vec![(HDR_AT, hdr), (NOTES_AT, notes)],
    };
    let plan = rkdump_vmcore::prepare_dump(&mut mem, HDR_AT, None).map_err(|e| format!("{e}"))?;
    let lvl = Level::from_bits_truncate(level);
    let mut filter = if lvl.needs_page_structs() {
        let vi = plan.notes.vmcoreinfo().ok_or("no VMCOREINFO")?;
        let info = KernelInfo::parse(&vi).map_err(|e| format!("{e}"))?;
        Some(PageFilter::new(&info, lvl).map_err(|e| format!("{e}"))?)
    } else {
        None
    };
    let selector: &mut dyn PageSelector = match filter.as_mut() {
        Some(f) => f,
        None => &mut KeepAll,
    };
    let opts = kdump::Options {
        codec,
        dump_level: i32::from(level),
        window_pages: kdump::WINDOW_PAGES,
        data_align: align,
        now_us: Some(now_us),
        ..kdump::Options::default()
    };
    let out = File::create(output).map_err(|e| format!("{output}: {e}"))?;
    out.set_len(0).map_err(|e| format!("{e}"))?;
    let mut sink = FileSink(out);
    let t = Instant::now();
    let mut par = Threads(threads.max(1));
    let stats = kdump::write_kdump_on(
        &plan,
        &mut mem,
        selector,
        &mut sink,
        &opts,
        &mut par,
        &mut |_| {},
    )
    .map_err(|e| format!("{e}"))?;
    println!("{stats:?}");
    println!("ms={}", t.elapsed().as_millis());
    Ok(())
}
