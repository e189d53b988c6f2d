//! The kernel's largest stack frames, read from its disassembly (`objdump -d`): rkdump runs on
//! one fixed boot stack (linker.ld) with nothing below it to fault on, so a function that puts a
//! large value on the stack would silently overwrite the page tables and `.bss` under it (a
//! 70 KiB zlib state once did, on every kdump-format dump). `cargo xtask test` fails when a
//! frame exceeds [`MAX_FRAME`].

use std::path::Path;
use std::process::Command;

/// The largest frame one function may have: an eighth of the 128 KiB boot stack, so a deep call
/// chain of the largest ones still fits (the console's `memory peak ... stack=` line gives the
/// depth a run really used).
pub const MAX_FRAME: u64 = 16 << 10;

/// Functions whose frame is this large or larger are allowed above [`MAX_FRAME`], with the
/// reason: (name prefix, bytes, why).
const KNOWN: [(&str, u64, &str); 1] = [(
    "rkdump::hw::mem::init_frames",
    32 << 10,
    "called once from kmain at the top of the stack; its frame holds the E820 map copy",
)];

/// Bytes each function lowers the stack pointer by (the sum of its `sub $n,%rsp`, plus a
/// stack-probe loop's `sub $n,%r11` whose `sub $0x1000,%rsp` step is then not counted twice),
/// largest first.
pub fn from_objdump(text: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    let (mut rsp, mut probe, mut steps) = (0u64, 0u64, 0u64);
    let mut flush = |name: &str, rsp: u64, probe: u64, steps: u64| {
        let bytes = if probe > 0 {
            probe + rsp.saturating_sub(steps * 0x1000)
        } else {
            rsp
        };
        if !name.is_empty() && bytes > 0 {
            out.push((bytes, name.to_string()));
        }
    };
    for line in text.lines() {
        let l = line.trim_end();
        // `0000000000012380 <rkdump::kmain::run>:`
        if l.ends_with(">:")
            && let Some(start) = l.find('<')
        {
            flush(&name, rsp, probe, steps);
            name = l[start + 1..l.len() - 2].to_string();
            (rsp, probe, steps) = (0, 0, 0);
            continue;
        }
        let Some(at) = l.find("sub ") else { continue };
        let operands = l[at + 4..].trim();
        let Some((imm, reg)) = operands.split_once(',') else {
            continue;
        };
        let Some(n) = imm
            .trim()
            .strip_prefix("$0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        match reg.trim() {
            "%rsp" => {
                rsp += n;
                if n == 0x1000 {
                    steps += 1;
                }
            }
            "%r11" => probe += n,
            _ => {}
        }
    }
    flush(&name, rsp, probe, steps);
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out
}

/// Frames of `kernel` (the linked ELF with symbols) over [`MAX_FRAME`] that are not
/// [`KNOWN`]; Ok lists the three largest for the log.
pub fn check(kernel: &Path) -> Result<String, String> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-C"])
        .arg(kernel)
        .output()
        .map_err(|e| format!("objdump: {e}"))?;
    if !out.status.success() {
        return Err(format!("objdump failed ({})", out.status));
    }
    let frames = from_objdump(&String::from_utf8_lossy(&out.stdout));
    verdict(&frames)
}

fn verdict(frames: &[(u64, String)]) -> Result<String, String> {
    let too_big: Vec<String> = frames
        .iter()
        .filter(|(n, f)| {
            *n > MAX_FRAME
                && !KNOWN
                    .iter()
                    .any(|(k, limit, _)| f.starts_with(k) && n <= limit)
        })
        .map(|(n, f)| format!("{f}: {n} bytes"))
        .collect();
    if !too_big.is_empty() {
        return Err(format!(
            "stack frames over {MAX_FRAME} bytes (build the value in a Box or on the heap): {}",
            too_big.join("; ")
        ));
    }
    let top: Vec<String> = frames
        .iter()
        .take(3)
        .map(|(n, f)| format!("{} {n}", f.rsplit("::").next().unwrap_or(f)))
        .collect();
    Ok(format!("largest frames: {}", top.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the 70 KiB zlib state looked like: a probe loop of 0x11000 bytes, then 0x1078 more.
    const BIG: &str = "\
000000000005fb70 <rkdump_vmcore::kdump::codec::Compressor::new>:
   5fb70:\tpush   %rbp
   5fb71:\tmov    %rsp,%r11
   5fb74:\tsub    $0x11000,%r11
   5fb7b:\tsub    $0x1000,%rsp
   5fb82:\tmovq   $0x0,(%rsp)
   5fb8a:\tcmp    %r11,%rsp
   5fb8d:\tjne    5fb7b
   5fb8f:\tsub    $0x1078,%rsp
00000000000235c0 <rkdump::kmain::run>:
   235c0:\tsub    $0x1000,%rsp
   235c7:\tmovq   $0x0,(%rsp)
   235cf:\tsub    $0x2cd8,%rsp
   235d6:\tsub    $0x8,%rax
";

    #[test]
    fn probe_loops_and_inline_probes_are_measured() {
        let f = from_objdump(BIG);
        assert_eq!(
            f,
            [
                (
                    0x11000 + 0x1078,
                    "rkdump_vmcore::kdump::codec::Compressor::new".into()
                ),
                (0x1000 + 0x2cd8, "rkdump::kmain::run".into()),
            ]
        );
    }

    #[test]
    fn a_frame_over_the_limit_fails() {
        let e = verdict(&from_objdump(BIG)).unwrap_err();
        assert!(e.contains("Compressor::new: 73848 bytes"), "{e}");
        let ok = verdict(&[(15576, "rkdump::kmain::run".into())]).unwrap();
        assert_eq!(ok, "largest frames: run 15576");
        // The known exception holds only up to its own limit.
        assert!(verdict(&[(24680, "rkdump::hw::mem::init_frames".into())]).is_ok());
        assert!(verdict(&[(40000, "rkdump::hw::mem::init_frames".into())]).is_err());
    }
}
