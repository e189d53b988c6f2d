//! The crashing CPU's call trace by a stack scan: every 8-byte word from `rsp` to the top of its
//! stack that points into kernel text right after a call instruction is taken as a return
//! address and resolved through kallsyms.
//!
//! Debian's kernels unwind with ORC and have no frame pointers, so a frame-pointer walk is not
//! available; the scan is what Linux prints as `? func` entries. It finds every real caller
//! still on the stack, plus stale return addresses left by calls that already returned (the
//! call-instruction check removes data that merely looks like a text address, not those).
//! Kernel stacks are `THREAD_SIZE` (16 KiB) aligned, so the scan stops at the next 16 KiB
//! boundary, at an unreadable page, or after [`MAX_SCAN`] bytes.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::kallsyms::Kallsyms;
use super::virt::VirtMemory;
use super::{MAX_FRAMES, Trace};
use crate::notes::PrStatus;

/// Kernel stack size and alignment on x86_64 (`THREAD_SIZE`, 16 KiB without KASAN).
pub const THREAD_SIZE: u64 = 16 << 10;
/// Most stack bytes scanned.
pub const MAX_SCAN: u64 = THREAD_SIZE;

/// Is there a call instruction ending right before `ret` (the bytes `code[..7]` precede it)?
/// Forms: `e8 rel32`; `ff /2` with modrm register (2 bytes, 3 with a REX prefix), `[reg+d8]`
/// (3), `[rip+d32]` / `[reg+d32]` (6) and `[d32]` through a SIB (7).
pub fn follows_call(code: &[u8; 7]) -> bool {
    let at = |back: usize| code[7 - back];
    at(5) == 0xe8
        || (at(2) == 0xff && (0xd0..=0xd7).contains(&at(1)))
        || (at(3) == 0xff && (at(2) & 0xf8) == 0x50)
        || (at(6) == 0xff && (at(5) == 0x15 || (at(5) & 0xf8) == 0x90))
        || (at(7) == 0xff && at(6) == 0x14)
}

/// Scans the stack of the CPU whose registers are `regs`. Returns the trace (frame 0 is `rip`)
/// and the problems met.
pub fn scan(
    mem: &mut impl VirtMemory,
    syms: Option<&Kallsyms>,
    regs: &PrStatus,
    text: Option<(u64, u64)>,
) -> (Trace, Vec<String>) {
    let mut trace = Trace::default();
    let mut errors = Vec::new();
    let Some(k) = syms else {
        errors.push(String::from("call trace: no symbols, no trace"));
        return (trace, errors);
    };
    let Some((text_start, text_end)) = text else {
        return (trace, errors);
    };
    let resolve = |mem: &mut _, a: u64| match k.lookup(mem, a) {
        Ok(Some(s)) => Some(format!("{s}")),
        _ => None,
    };
    let rip = regs.rip();
    trace
        .frames
        .push((rip, resolve(mem, rip).unwrap_or_else(|| String::from("?"))));
    let rsp = regs.rsp();
    if rsp & 7 != 0 || rsp < (1 << 63) {
        errors.push(format!(
            "call trace: rsp {rsp:#x} is not a kernel stack pointer"
        ));
        return (trace, errors);
    }
    let top = (rsp | (THREAD_SIZE - 1))
        .saturating_add(1)
        .min(rsp.saturating_add(MAX_SCAN));
    let mut page = vec![0u8; 4096];
    let mut at = rsp;
    while at < top && trace.frames.len() < MAX_FRAMES {
        let piece = (4096 - (at & 4095)).min(top - at) as usize;
        if mem.read_virt(at, &mut page[..piece]).is_err() {
            if trace.scanned == 0 {
                errors.push(format!("call trace: stack at {at:#x} is not readable"));
            }
            break;
        }
        for w in page[..piece].chunks_exact(8) {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if v < text_start.saturating_add(7) || v >= text_end {
                continue;
            }
            let mut code = [0u8; 7];
            if mem.read_virt(v - 7, &mut code).is_err() || !follows_call(&code) {
                continue;
            }
            if let Ok(Some(sym)) = k.lookup_return(mem, v) {
                let sym = format!("{sym}");
                trace.frames.push((v, sym));
                if trace.frames.len() >= MAX_FRAMES {
                    break;
                }
            }
        }
        trace.scanned += piece as u64;
        at += piece as u64;
    }
    (trace, errors)
}
