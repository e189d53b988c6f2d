//! `rkdumpctl estimate`: the size a dump would have now, at the configured level and format,
//! from `/proc/iomem`, `/proc/meminfo` and `/proc/kpageflags` (docs/interface.md#rkdumpctl).
//!
//! Method:
//! - memory dumped at level 0: every top-level `System RAM` range of `/proc/iomem` minus the
//!   `Crash kernel` reservation inside them (the capture kernel's own memory is not in
//!   `/proc/vmcore`), plus the kernel image again (`Kernel code` to `Kernel bss`): both loaders'
//!   ELF core headers carry it a second time as the kernel-text `PT_LOAD` (measured in the e2e:
//!   40 MiB of a 487 MiB vmcore);
//! - free pages (level bit 16): `MemFree` of `/proc/meminfo`. `/proc/kpageflags` marks only the
//!   first page of a free buddy block, so counting `KPF_BUDDY` pages would miss most free memory;
//! - user pages (bit 8): pages with `KPF_ANON` (and not `KPF_BUDDY`);
//! - cache (bit 4): pages with `KPF_LRU` and not `KPF_ANON`; non-private cache (bit 2): of
//!   those, the ones without `KPF_PRIVATE` (buffer heads) and not `KPF_SWAPCACHE`, as
//!   makedumpfile's `isPrivate`/swap-cache rules keep them;
//! - zero pages (bit 1): their contents are not in kpageflags; counted as dumped, so the
//!   estimate is high by the zero pages there are.
//!
//! Format `elf`: the pages plus one page of headers and notes per 2 MiB of `PT_LOAD` entries
//! (rounded up). Format `kdump`: pages uncompressed (compression is not modelled: an upper
//! bound), two bitmaps of one bit per page frame, a 24-byte descriptor per dumped page, and two
//! 4 KiB header blocks.
//! Reading `/proc/kpageflags` needs root; as another user only levels made of bits 16 and 1 are
//! estimated.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::conf::{ConfArgs, Format};
use crate::snapshot::Sources;

/// Page size assumed (x86_64).
pub const PAGE: u64 = 4096;

/// `include/uapi/linux/kernel-page-flags.h` bit numbers, and the kernel-internal ones
/// `fs/proc/page.c` also reports.
mod kpf {
    pub const LRU: u32 = 5;
    pub const BUDDY: u32 = 10;
    pub const ANON: u32 = 12;
    pub const SWAPCACHE: u32 = 13;
    pub const NOPAGE: u32 = 20;
    pub const PRIVATE: u32 = 35;
}

/// Arguments of `rkdumpctl estimate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sources: Sources,
    #[command(flatten)]
    pub conf: ConfArgs,
}

/// Page counts by makedumpfile class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PageClasses {
    /// Page frames listed (the file's length / 8).
    pub frames: u64,
    /// `KPF_ANON`.
    pub user: u64,
    /// `KPF_LRU`, not `KPF_ANON`, without private data or swap cache.
    pub cache: u64,
    /// `KPF_LRU`, not `KPF_ANON`, with `KPF_PRIVATE` or `KPF_SWAPCACHE`.
    pub cache_private: u64,
}

/// The estimate and what it was made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// Dump level used.
    pub level: u8,
    /// `elf` or `kdump`.
    pub format: &'static str,
    /// `System RAM` in `/proc/iomem`.
    pub ram_bytes: u64,
    /// `Crash kernel` inside it.
    pub crash_kernel_bytes: u64,
    /// The kernel image, dumped a second time as the kernel-text `PT_LOAD`.
    pub kernel_image_bytes: u64,
    /// `MemFree`.
    pub free_bytes: u64,
    /// Page classes, when `/proc/kpageflags` was needed and read.
    pub pages: Option<PageClasses>,
    /// Memory bytes the level keeps.
    pub kept_bytes: u64,
    /// Expected dump file size.
    pub dump_bytes: u64,
}

/// Why there is no estimate.
#[derive(Debug)]
pub enum Error {
    /// A file cannot be read.
    Read(PathBuf, io::Error),
    /// `/proc/iomem` lists no System RAM (or only zeros: not root).
    NoRam(PathBuf),
    /// `MemFree` is missing from meminfo.
    NoMemFree(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read(p, e) if e.kind() == io::ErrorKind::PermissionDenied => {
                write!(f, "reading {}: {e} (run as root)", p.display())
            }
            Error::Read(p, e) => write!(f, "reading {}: {e}", p.display()),
            Error::NoRam(p) => write!(
                f,
                "{} lists no System RAM addresses (as a user other than root it shows zeros)",
                p.display()
            ),
            Error::NoMemFree(p) => write!(f, "{} has no MemFree line", p.display()),
        }
    }
}

/// Bytes of top-level `System RAM` ranges, of `Crash kernel` ranges nested in them, and of the
/// kernel image: from the first nested `Kernel ...` range (code) to the end of the last (bss).
pub fn iomem_sizes(iomem: &str) -> (u64, u64, u64) {
    let mut ram = 0u64;
    let mut crash = 0u64;
    let mut kernel: Option<(u64, u64)> = None;
    let mut in_ram = false;
    for line in iomem.lines() {
        let top = !line.starts_with(' ');
        let Some((range, name)) = line.trim_start().split_once(" : ") else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let len = b.checked_sub(a).map_or(0, |d| d.saturating_add(1));
        if top {
            in_ram = name.trim() == "System RAM";
            if in_ram {
                ram = ram.saturating_add(len);
            }
        } else if in_ram && name.trim() == "Crash kernel" {
            crash = crash.saturating_add(len);
        } else if in_ram && name.trim().starts_with("Kernel ") && b >= a {
            kernel = Some(kernel.map_or((a, b), |(s, e)| (s.min(a), e.max(b))));
        }
    }
    let kernel = kernel.map_or(0, |(a, b)| (b - a).saturating_add(1));
    (ram, crash, kernel)
}

/// A `/proc/meminfo` value in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        Some(match it.next() {
            Some("kB") => n.saturating_mul(1024),
            _ => n,
        })
    })
}

/// Counts page classes from `/proc/kpageflags` content (one little-endian u64 per frame).
pub fn classify(mut r: impl Read) -> io::Result<PageClasses> {
    let mut c = PageClasses::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut carry = 0usize;
    loop {
        let n = r.read(&mut buf[carry..])?;
        if n == 0 {
            break;
        }
        let have = carry + n;
        let whole = have / 8 * 8;
        for w in buf[..whole].chunks_exact(8) {
            let f = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
            c.frames += 1;
            let bit = |b: u32| f & (1u64 << b) != 0;
            if bit(kpf::NOPAGE) || bit(kpf::BUDDY) {
                continue;
            }
            if bit(kpf::ANON) {
                c.user += 1;
            } else if bit(kpf::LRU) {
                if bit(kpf::PRIVATE) || bit(kpf::SWAPCACHE) {
                    c.cache_private += 1;
                } else {
                    c.cache += 1;
                }
            }
        }
        buf.copy_within(whole..have, 0);
        carry = have - whole;
    }
    Ok(c)
}

/// The estimate from the three sources' text and the page classes (`None` when the level needs
/// none of bits 2, 4, 8).
pub fn compute(
    level: u8,
    format: Format,
    iomem: &str,
    meminfo: &str,
    pages: Option<PageClasses>,
    paths: (&Path, &Path),
) -> Result<Estimate, Error> {
    let (ram, crash, kernel) = iomem_sizes(iomem);
    if ram == 0 {
        return Err(Error::NoRam(paths.0.to_path_buf()));
    }
    let free = meminfo_bytes(meminfo, "MemFree").ok_or(Error::NoMemFree(paths.1.to_path_buf()))?;
    // The kernel image's pages are never free, cache or user pages: kept at every level.
    let base = ram.saturating_sub(crash).saturating_add(kernel);
    let mut excluded = 0u64;
    if level & 16 != 0 {
        excluded += free;
    }
    if let Some(p) = pages {
        if level & 8 != 0 {
            excluded += p.user * PAGE;
        }
        if level & 4 != 0 {
            excluded += (p.cache + p.cache_private) * PAGE;
        } else if level & 2 != 0 {
            excluded += p.cache * PAGE;
        }
    }
    let kept = base.saturating_sub(excluded) / PAGE * PAGE;
    let kept_pages = kept / PAGE;
    let dump = match format {
        // ELF header, program headers and notes: one page per 2 MiB of PT_LOADs is generous.
        Format::Elf => kept + PAGE * base.div_ceil(2 << 20).div_ceil(PAGE),
        Format::Kdump => {
            let frames = pages.map_or(ram.div_ceil(PAGE), |p| p.frames);
            kept + 2 * PAGE + 2 * frames.div_ceil(8).next_multiple_of(PAGE) + 24 * kept_pages
        }
    };
    Ok(Estimate {
        level,
        format: format.name(),
        ram_bytes: ram,
        crash_kernel_bytes: crash,
        kernel_image_bytes: kernel,
        free_bytes: free,
        pages,
        kept_bytes: kept,
        dump_bytes: dump,
    })
}

/// Estimates from the live `/proc` under `proc_root`.
pub fn estimate(proc_root: &Path, level: u8, format: Format) -> Result<Estimate, Error> {
    let read = |name: &str| -> Result<(String, PathBuf), Error> {
        let p = proc_root.join(name);
        std::fs::read_to_string(&p)
            .map(|s| (s, p.clone()))
            .map_err(|e| Error::Read(p, e))
    };
    let (iomem, iomem_p) = read("iomem")?;
    let (meminfo, meminfo_p) = read("meminfo")?;
    let pages = if level & (2 | 4 | 8) != 0 {
        let p = proc_root.join("kpageflags");
        let f = File::open(&p).map_err(|e| Error::Read(p.clone(), e))?;
        Some(classify(f).map_err(|e| Error::Read(p, e))?)
    } else {
        None
    };
    compute(
        level,
        format,
        &iomem,
        &meminfo,
        pages,
        (&iomem_p, &meminfo_p),
    )
}

/// Binary-prefixed size, e.g. `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Runs `rkdumpctl estimate`.
pub fn run(args: &Args) -> Result<(), String> {
    let conf = args.conf.load().map_err(|e| e.to_string())?;
    let level = conf.level_or_default();
    let format = conf.format_or_default();
    let e = estimate(&args.sources.proc_root, level, format).map_err(|e| e.to_string())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "rkdumpctl estimate: {} ({} bytes) at level {level}{}, format {}{}",
        human(e.dump_bytes),
        e.dump_bytes,
        if conf.level.is_none() {
            " (rkdump's default)"
        } else {
            ""
        },
        e.format,
        if format == Format::Kdump {
            ", uncompressed upper bound"
        } else {
            ""
        }
    );
    println!(
        "  System RAM {} - crash kernel {} + kernel image again {} = {} to dump at level 0",
        human(e.ram_bytes),
        human(e.crash_kernel_bytes),
        human(e.kernel_image_bytes),
        human(e.ram_bytes - e.crash_kernel_bytes + e.kernel_image_bytes)
    );
    if level & 16 != 0 {
        println!("  free (MemFree)        {}", human(e.free_bytes));
    }
    if let Some(p) = e.pages {
        println!(
            "  user {}, cache {}, cache with private data {} ({} page frames in /proc/kpageflags)",
            human(p.user * PAGE),
            human(p.cache * PAGE),
            human(p.cache_private * PAGE),
            p.frames
        );
    }
    if level & 1 != 0 {
        println!("  zero pages cannot be seen from Linux; counted as dumped");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOMEM: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000a0000-000bffff : PCI Bus 0000:00
00100000-3ffdffff : System RAM
  01000000-01ffffff : Kernel code
  02000000-027fffff : Kernel data
  02800000-02ffffff : Kernel bss
  2f000000-3effffff : Crash kernel
3ffe0000-3fffffff : Reserved
fd000000-fdffffff : PCI Bus 0000:00
";

    fn flags(bits: &[u32]) -> u64 {
        bits.iter().fold(0, |f, b| f | 1 << b)
    }

    fn kpageflags(frames: &[(u64, usize)]) -> Vec<u8> {
        let mut v = Vec::new();
        for &(f, n) in frames {
            for _ in 0..n {
                v.extend_from_slice(&f.to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn iomem_ram_and_crash_kernel() {
        let (ram, crash, kernel) = iomem_sizes(IOMEM);
        assert_eq!(ram, (0x9fc00 - 0x1000) + (0x3ffe0000 - 0x100000));
        assert_eq!(crash, 0x10000000);
        // "Kernel code" 0x1000000.. to the end of "Kernel bss" 0x2ffffff.
        assert_eq!(kernel, 0x2000000);
        // A "Crash kernel" outside System RAM or at top level does not count.
        assert_eq!(iomem_sizes("2f000000-3effffff : Crash kernel\n").1, 0);
        // A user other than root sees zeros.
        assert_eq!(iomem_sizes("00000000-00000000 : System RAM\n").0, 1);
    }

    #[test]
    fn meminfo_values() {
        let m =
            "MemTotal:        1004000 kB\nMemFree:          500000 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_bytes(m, "MemFree"), Some(500_000 * 1024));
        assert_eq!(meminfo_bytes(m, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes(m, "Mem"), None);
    }

    #[test]
    fn classes_from_a_fake_kpageflags() {
        use kpf::*;
        let data = kpageflags(&[
            (flags(&[ANON, LRU]), 100),
            (flags(&[LRU]), 50),
            (flags(&[LRU, PRIVATE]), 7),
            (flags(&[LRU, SWAPCACHE, 14]), 3),
            (flags(&[BUDDY]), 2),
            (flags(&[NOPAGE]), 9),
            (flags(&[7]), 11), // slab: kept at every level
            (0, 1),
        ]);
        // Read in odd-sized pieces to exercise the carry across reads.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(13);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let c = classify(Dribble(&data)).unwrap();
        assert_eq!(
            c,
            PageClasses {
                frames: 183,
                user: 100,
                cache: 50,
                cache_private: 10,
            }
        );
    }

    #[test]
    fn levels_subtract_their_classes() {
        let meminfo = "MemFree: 1024 kB\n";
        let pages = PageClasses {
            frames: 262_144,
            user: 1000,
            cache: 500,
            cache_private: 20,
        };
        let p = (Path::new("iomem"), Path::new("meminfo"));
        let at = |level, fmt| {
            compute(level, fmt, IOMEM, meminfo, Some(pages), p)
                .unwrap()
                .kept_bytes
        };
        let (ram, crash, kernel) = iomem_sizes(IOMEM);
        let base = (ram - crash + kernel) / PAGE * PAGE;
        assert_eq!(at(0, Format::Elf), base);
        assert_eq!(at(1, Format::Elf), base, "zero pages are not visible");
        assert_eq!(at(16, Format::Elf), base - 1024 * 1024);
        assert_eq!(at(8, Format::Elf), base - 1000 * PAGE);
        assert_eq!(at(2, Format::Elf), base - 500 * PAGE);
        assert_eq!(at(4, Format::Elf), base - 520 * PAGE);
        assert_eq!(at(6, Format::Elf), base - 520 * PAGE);
        assert_eq!(
            at(31, Format::Elf),
            base - 1024 * 1024 - 1000 * PAGE - 520 * PAGE
        );
        let elf = compute(31, Format::Elf, IOMEM, meminfo, Some(pages), p).unwrap();
        let kd = compute(31, Format::Kdump, IOMEM, meminfo, Some(pages), p).unwrap();
        assert!(elf.dump_bytes > elf.kept_bytes && elf.dump_bytes < elf.kept_bytes + (1 << 20));
        // kdump: two 32 KiB bitmaps for 262144 frames, 24 bytes a page, two header blocks.
        assert_eq!(
            kd.dump_bytes,
            kd.kept_bytes + 2 * PAGE + 2 * 32768 + 24 * (kd.kept_bytes / PAGE)
        );
        // Negative controls: no RAM, no MemFree.
        assert!(matches!(
            compute(0, Format::Elf, "", meminfo, None, p),
            Err(Error::NoRam(_))
        ));
        assert!(matches!(
            compute(0, Format::Elf, IOMEM, "", None, p),
            Err(Error::NoMemFree(_))
        ));
    }

    #[test]
    fn estimate_reads_a_fake_proc() {
        let d = std::env::temp_dir().join(format!("rkdumpctl-est-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("iomem"), IOMEM).unwrap();
        std::fs::write(d.join("meminfo"), "MemFree: 4 kB\n").unwrap();
        std::fs::write(
            d.join("kpageflags"),
            kpageflags(&[(flags(&[kpf::ANON]), 3)]),
        )
        .unwrap();
        let e = estimate(&d, 8, Format::Elf).unwrap();
        assert_eq!(e.pages.unwrap().user, 3);
        // Level 16 alone does not need kpageflags.
        std::fs::remove_file(d.join("kpageflags")).unwrap();
        assert!(estimate(&d, 16, Format::Elf).is_ok());
        assert!(matches!(
            estimate(&d, 31, Format::Elf),
            Err(Error::Read(..))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
