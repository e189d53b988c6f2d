//! `rkdump-marker <MiB> [--tag HEX] [--ready FILE] [--recheck SECS]`: fills N MiB with the marker
//! pattern, locks it, prints where every page lives (pfn runs from /proc/self/pagemap), then stays
//! alive holding the memory until the machine crashes. Runs as root in a bare initramfs (static).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rkdump_marker::{PAGE_SIZE, ReportLine, page_pattern, runs_from_pfns};

/// One page-aligned marker page, so a `Vec<Page>` is page aligned.
#[repr(C, align(4096))]
struct Page([u8; PAGE_SIZE]);

const MADV_NOHUGEPAGE: i32 = 15;
const PM_PRESENT: u64 = 1 << 63;
const PM_PFN_MASK: u64 = (1 << 55) - 1;

unsafe extern "C" {
    fn mlock(addr: *const core::ffi::c_void, len: usize) -> i32;
    fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: i32) -> i32;
}

struct Args {
    mib: u64,
    tag: Option<u64>,
    ready: Option<String>,
    recheck: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        mib: 0,
        tag: None,
        ready: None,
        recheck: 2,
    };
    let mut mib = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tag" => {
                let v = args.next().ok_or("--tag needs a value")?;
                let hex = v.trim_start_matches("0x");
                out.tag =
                    Some(u64::from_str_radix(hex, 16).map_err(|e| format!("--tag {v}: {e}"))?);
            }
            "--ready" => out.ready = Some(args.next().ok_or("--ready needs a path")?),
            "--recheck" => {
                let v = args.next().ok_or("--recheck needs seconds")?;
                out.recheck = v.parse().map_err(|e| format!("--recheck {v}: {e}"))?;
            }
            other => {
                mib = Some(
                    other
                        .parse::<u64>()
                        .map_err(|e| format!("bad MiB `{other}`: {e}"))?,
                )
            }
        }
    }
    out.mib =
        mib.ok_or("usage: rkdump-marker <MiB> [--tag HEX] [--ready FILE] [--recheck SECS]")?;
    if out.mib == 0 {
        return Err("MiB must be at least 1".into());
    }
    Ok(out)
}

/// Reads the pfn of every page of `pages` from /proc/self/pagemap (needs CAP_SYS_ADMIN).
fn read_pfns(pagemap: &File, pages: &[Page]) -> Result<Vec<u64>, String> {
    let first_vpn = pages.as_ptr() as u64 / PAGE_SIZE as u64;
    let mut raw = vec![0u8; pages.len() * 8];
    pagemap
        .read_exact_at(&mut raw, first_vpn * 8)
        .map_err(|e| format!("reading /proc/self/pagemap: {e}"))?;
    let mut pfns = Vec::with_capacity(pages.len());
    for (i, entry) in raw.chunks_exact(8).enumerate() {
        let e = u64::from_le_bytes(entry.try_into().map_err(|_| "short pagemap entry")?);
        let pfn = e & PM_PFN_MASK;
        if e & PM_PRESENT == 0 {
            return Err(format!("page {i} not present after mlock"));
        }
        if pfn == 0 {
            return Err("pagemap hides pfns (not root / no CAP_SYS_ADMIN?)".into());
        }
        pfns.push(pfn);
    }
    Ok(pfns)
}

fn default_tag() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 40)
}

fn run(args: &Args) -> Result<(), String> {
    let tag = args.tag.unwrap_or_else(default_tag);
    let n = usize::try_from(args.mib * 256).map_err(|_| "size too large")?;
    let mut pages: Vec<Page> = Vec::new();
    pages
        .try_reserve_exact(n)
        .map_err(|e| format!("allocating {} MiB: {e}", args.mib))?;
    let bytes = n * PAGE_SIZE;
    // SAFETY: the range is the Vec's own allocation (capacity n pages, page aligned by `Page`'s
    // alignment); madvise only changes the huge-page policy and cannot invalidate it.
    let rc = unsafe { madvise(pages.as_mut_ptr().cast(), bytes, MADV_NOHUGEPAGE) };
    if rc != 0 {
        // Not fatal: without THP the policy is moot.
        eprintln!(
            "marker: madvise(NOHUGEPAGE) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut page = Page([0; PAGE_SIZE]);
    for index in 0..n as u64 {
        page_pattern(tag, index, &mut page.0);
        pages.push(Page(page.0));
    }
    // SAFETY: pages.as_ptr() .. + bytes is the initialised, live allocation of `pages`, which is
    // never freed or reallocated before the process exits.
    if unsafe { mlock(pages.as_ptr().cast(), bytes) } != 0 {
        return Err(format!(
            "mlock {} MiB: {}",
            args.mib,
            std::io::Error::last_os_error()
        ));
    }
    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| format!("open /proc/self/pagemap: {e}"))?;
    let pfns = read_pfns(&pagemap, &pages)?;
    let runs = runs_from_pfns(&pfns);

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let header = ReportLine::Header {
        tag,
        pages: n as u64,
        runs: runs.len() as u64,
    };
    let mut text = format!("{header}\n");
    for r in &runs {
        text.push_str(&format!("{}\n", ReportLine::Run(*r)));
    }
    text.push_str(&format!("{}\n", ReportLine::Done));
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(out);
    if let Some(ready) = &args.ready {
        std::fs::write(ready, b"ready\n").map_err(|e| format!("writing {ready}: {e}"))?;
    }

    // Hold the memory until the crash; say so if the kernel moved any page (the map is then stale).
    let mut reported = 0;
    loop {
        std::thread::sleep(Duration::from_secs(args.recheck.max(1)));
        let now = read_pfns(&pagemap, &pages)?;
        let moved = now.iter().zip(&pfns).filter(|(a, b)| a != b).count() as u64;
        if moved != reported {
            println!("{}", ReportLine::Moved(moved));
            reported = moved;
        }
        std::hint::black_box(&pages);
    }
}

fn main() {
    let result = parse_args().and_then(|a| {
        let r = run(&a);
        if let (Err(_), Some(ready)) = (&r, &a.ready) {
            let _ = std::fs::write(ready, b"error\n");
        }
        r
    });
    if let Err(e) = result {
        println!("{}", ReportLine::Error(e));
        std::process::exit(1);
    }
}
