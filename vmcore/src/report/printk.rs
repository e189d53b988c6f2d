//! The crashed kernel's printk ring buffer (Linux 5.10+ lockless `printk_ringbuffer`), read
//! through the offsets and sizes VMCOREINFO publishes, newest record first.
//!
//! Rules (Linux `kernel/printk/printk_ringbuffer.[ch]`): a descriptor's `state_var` holds its
//! id in the low 62 bits and its state in the top 2 (0 reserved, 1 committed, 2 finalized,
//! 3 reusable); descriptor `id` sits at index `id & (count - 1)` of both `descs` and `infos`.
//! A text block is `[begin, next)` in logical positions; the data ring index is
//! `lpos & (size - 1)` and the wrap count `lpos >> size_bits`; a block whose wrap count is one
//! less than `next`'s starts at index 0 instead (it did not fit before the end). The block
//! begins with the descriptor's id (an `unsigned long`), then the text. `begin` with bit 0 set
//! means no data. The lines are formatted as `makedumpfile --dump-dmesg` prints them
//! (`[%5llu.%06lu] ` prefix, continuation lines indented, unprintable bytes as `\xNN`), so the
//! two can be compared line for line.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::virt::VirtMemory;
use super::{read_u16, read_u64};
use crate::notes::VmcoreInfo;

/// Most records the reader looks at, whatever the ring's size.
pub const MAX_RECORDS: u32 = 4096;
/// Longest text taken from one record (printk's own limit is 1024 bytes).
pub const MAX_TEXT: usize = 2048;
/// Largest descriptor ring (`count_bits`) and text ring (`size_bits`) believed.
const MAX_COUNT_BITS: u32 = 24;
const MAX_SIZE_BITS: u32 = 31;
/// Largest struct the offsets may point into.
const MAX_STRUCT: u64 = 4096;

const DESC_FLAGS_SHIFT: u32 = 62;
const DESC_ID_MASK: u64 = !(3u64 << DESC_FLAGS_SHIFT);
const STATE_COMMITTED: u64 = 1;
const STATE_FINALIZED: u64 = 2;

/// Why the ring buffer could not be read (or not all of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// VMCOREINFO lacks a key the reader needs (or its value does not parse).
    MissingKey(&'static str),
    /// An offset or size from VMCOREINFO is implausible.
    BadLayout(&'static str, u64),
    /// A read of old memory failed.
    Read {
        /// What was being read.
        what: &'static str,
        /// The reader's error text.
        err: String,
    },
    /// The ring's header is implausible.
    BadRing(String),
    /// One record is inconsistent; the walk skipped it.
    BadRecord {
        /// Descriptor id.
        id: u64,
        /// What is wrong.
        why: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingKey(k) => write!(f, "printk: VMCOREINFO has no usable {k}"),
            Error::BadLayout(k, v) => write!(f, "printk: implausible {k} = {v}"),
            Error::Read { what, err } => write!(f, "printk: reading {what}: {err}"),
            Error::BadRing(why) => write!(f, "printk: ring buffer header: {why}"),
            Error::BadRecord { id, why } => write!(f, "printk: record id {id:#x}: {why}"),
        }
    }
}

/// Where the ring buffer's fields are, from VMCOREINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `SYMBOL(prb)`: address of the `prb` pointer.
    pub prb: u64,
    /// `SIZE(printk_ringbuffer)`.
    pub rb_size: u64,
    /// `OFFSET(printk_ringbuffer.desc_ring)`.
    pub rb_desc_ring: u64,
    /// `OFFSET(printk_ringbuffer.text_data_ring)`.
    pub rb_text_ring: u64,
    /// `OFFSET(prb_desc_ring.count_bits)`.
    pub dr_count_bits: u64,
    /// `OFFSET(prb_desc_ring.descs)`.
    pub dr_descs: u64,
    /// `OFFSET(prb_desc_ring.infos)`.
    pub dr_infos: u64,
    /// `OFFSET(prb_desc_ring.head_id)`.
    pub dr_head_id: u64,
    /// `OFFSET(prb_desc_ring.tail_id)`.
    pub dr_tail_id: u64,
    /// `SIZE(prb_desc)`.
    pub desc_size: u64,
    /// `OFFSET(prb_desc.state_var)`.
    pub desc_state_var: u64,
    /// `OFFSET(prb_desc.text_blk_lpos)`.
    pub desc_text_lpos: u64,
    /// `OFFSET(prb_data_blk_lpos.begin)`.
    pub lpos_begin: u64,
    /// `OFFSET(prb_data_blk_lpos.next)`.
    pub lpos_next: u64,
    /// `SIZE(printk_info)`.
    pub info_size: u64,
    /// `OFFSET(printk_info.ts_nsec)`.
    pub info_ts_nsec: u64,
    /// `OFFSET(printk_info.text_len)`.
    pub info_text_len: u64,
    /// `OFFSET(prb_data_ring.size_bits)`.
    pub ring_size_bits: u64,
    /// `OFFSET(prb_data_ring.data)`.
    pub ring_data: u64,
    /// `OFFSET(atomic_long_t.counter)`.
    pub atomic_counter: u64,
}

fn number(info: &VmcoreInfo<'_>, key: &'static str) -> Result<u64, Error> {
    let v: u64 = info
        .get(key)
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Error::MissingKey(key))?;
    if v >= MAX_STRUCT {
        return Err(Error::BadLayout(key, v));
    }
    Ok(v)
}

impl Layout {
    /// Reads the keys Linux 5.10+ publishes (`log_buf_vmcoreinfo_setup`).
    pub fn from_vmcoreinfo(info: &VmcoreInfo<'_>) -> Result<Self, Error> {
        let prb = info
            .get("SYMBOL(prb)")
            .and_then(super::parse_hex)
            .ok_or(Error::MissingKey("SYMBOL(prb)"))?;
        let l = Layout {
            prb,
            rb_size: number(info, "SIZE(printk_ringbuffer)")?,
            rb_desc_ring: number(info, "OFFSET(printk_ringbuffer.desc_ring)")?,
            rb_text_ring: number(info, "OFFSET(printk_ringbuffer.text_data_ring)")?,
            dr_count_bits: number(info, "OFFSET(prb_desc_ring.count_bits)")?,
            dr_descs: number(info, "OFFSET(prb_desc_ring.descs)")?,
            dr_infos: number(info, "OFFSET(prb_desc_ring.infos)")?,
            dr_head_id: number(info, "OFFSET(prb_desc_ring.head_id)")?,
            dr_tail_id: number(info, "OFFSET(prb_desc_ring.tail_id)")?,
            desc_size: number(info, "SIZE(prb_desc)")?,
            desc_state_var: number(info, "OFFSET(prb_desc.state_var)")?,
            desc_text_lpos: number(info, "OFFSET(prb_desc.text_blk_lpos)")?,
            lpos_begin: number(info, "OFFSET(prb_data_blk_lpos.begin)")?,
            lpos_next: number(info, "OFFSET(prb_data_blk_lpos.next)")?,
            info_size: number(info, "SIZE(printk_info)")?,
            info_ts_nsec: number(info, "OFFSET(printk_info.ts_nsec)")?,
            info_text_len: number(info, "OFFSET(printk_info.text_len)")?,
            ring_size_bits: number(info, "OFFSET(prb_data_ring.size_bits)")?,
            ring_data: number(info, "OFFSET(prb_data_ring.data)")?,
            atomic_counter: number(info, "OFFSET(atomic_long_t.counter)")?,
        };
        Ok(l)
    }
}

/// One record's text and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Descriptor id.
    pub id: u64,
    /// `ts_nsec`: nanoseconds since boot.
    pub ts_nsec: u64,
    /// The text bytes (at most [`MAX_TEXT`]).
    pub text: Vec<u8>,
}

impl Record {
    /// The record as `makedumpfile --dump-dmesg` prints it, one entry per output line.
    pub fn lines(&self) -> Vec<String> {
        let secs = self.ts_nsec / 1_000_000_000;
        let micros = self.ts_nsec % 1_000_000_000 / 1000;
        let prefix = format!("[{secs:5}.{micros:06}] ");
        let indent = prefix.len();
        let mut out = Vec::new();
        let mut cur = prefix;
        for &b in &self.text {
            if b == b'\n' {
                out.push(core::mem::take(&mut cur));
                cur = " ".repeat(indent);
            } else if b.is_ascii_graphic() || b == b' ' || matches!(b, b'\t' | 0x0b | 0x0c | b'\r')
            {
                cur.push(char::from(b));
            } else {
                cur.push_str(&format!("\\x{b:02x}"));
            }
        }
        out.push(cur);
        out
    }
}

/// What the walk found: the newest records (oldest first), the panic message, and the
/// problems met on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    /// Records, oldest first.
    pub records: Vec<Record>,
    /// Text after the newest `Kernel panic - not syncing: `.
    pub panic: Option<String>,
    /// The newest `CPU: <n> PID: <pid> Comm: <comm>` line (dump_stack's header), parsed.
    pub cpu_line: Option<(u32, i64, String)>,
    /// Records skipped as inconsistent, or the reason the walk stopped early.
    pub errors: Vec<Error>,
    /// Records looked at.
    pub examined: u32,
}

impl Tail {
    /// The last `n` output lines, oldest first.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let mut all: Vec<String> = self.records.iter().flat_map(Record::lines).collect();
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
        all
    }
}

/// The panic prefix printed by `panic()`.
pub const PANIC_PREFIX: &str = "Kernel panic - not syncing: ";

struct Ring {
    count_bits: u32,
    descs: u64,
    infos: u64,
    head_id: u64,
    tail_id: u64,
    size_bits: u32,
    data: u64,
}

fn field(buf: &[u8], off: u64, len: usize) -> Option<&[u8]> {
    let off = usize::try_from(off).ok()?;
    buf.get(off..off.checked_add(len)?)
}

fn le64(buf: &[u8], off: u64) -> Option<u64> {
    Some(u64::from_le_bytes(field(buf, off, 8)?.try_into().ok()?))
}

fn le32(buf: &[u8], off: u64) -> Option<u32> {
    Some(u32::from_le_bytes(field(buf, off, 4)?.try_into().ok()?))
}

fn read_ring(mem: &mut impl VirtMemory, l: &Layout) -> Result<Ring, Error> {
    let rd = |what, e: super::virt::VirtError| Error::Read {
        what,
        err: format!("{e}"),
    };
    let rb_addr = read_u64(mem, l.prb).map_err(|e| rd("prb pointer", e))?;
    let mut rb = vec![0u8; l.rb_size as usize];
    mem.read_virt(rb_addr, &mut rb)
        .map_err(|e| rd("struct printk_ringbuffer", e))?;
    let short = || Error::BadRing(String::from("a field lies outside SIZE(printk_ringbuffer)"));
    let dr = l.rb_desc_ring;
    let tr = l.rb_text_ring;
    let at = |base: u64, off: u64| base.checked_add(off).ok_or_else(short);
    let count_bits = le32(&rb, at(dr, l.dr_count_bits)?).ok_or_else(short)?;
    let descs = le64(&rb, at(dr, l.dr_descs)?).ok_or_else(short)?;
    let infos = le64(&rb, at(dr, l.dr_infos)?).ok_or_else(short)?;
    let head_id = le64(&rb, at(at(dr, l.dr_head_id)?, l.atomic_counter)?).ok_or_else(short)?;
    let tail_id = le64(&rb, at(at(dr, l.dr_tail_id)?, l.atomic_counter)?).ok_or_else(short)?;
    let size_bits = le32(&rb, at(tr, l.ring_size_bits)?).ok_or_else(short)?;
    let data = le64(&rb, at(tr, l.ring_data)?).ok_or_else(short)?;
    if count_bits > MAX_COUNT_BITS || !(4..=MAX_SIZE_BITS).contains(&size_bits) {
        return Err(Error::BadRing(format!(
            "count_bits {count_bits} / size_bits {size_bits} out of range"
        )));
    }
    Ok(Ring {
        count_bits,
        descs,
        infos,
        head_id: head_id & DESC_ID_MASK,
        tail_id: tail_id & DESC_ID_MASK,
        size_bits,
        data,
    })
}

/// The old-memory ranges the ring occupies (the `prb` pointer, `struct printk_ringbuffer`,
/// the descriptor and info arrays, the text data), as (virtual address, bytes): what a test
/// capture of a real ring must copy.
pub fn ring_regions(mem: &mut impl VirtMemory, l: &Layout) -> Result<Vec<(u64, u64)>, Error> {
    let r = read_ring(mem, l)?;
    let rb = read_u64(mem, l.prb).map_err(|e| Error::Read {
        what: "prb pointer",
        err: format!("{e}"),
    })?;
    let count = 1u64 << r.count_bits;
    Ok(alloc::vec![
        (l.prb, 8),
        (rb, l.rb_size),
        (r.descs, count * l.desc_size),
        (r.infos, count * l.info_size),
        (r.data, 1u64 << r.size_bits),
    ])
}

enum Outcome {
    Text(Record),
    /// Reserved, reusable, stale or data-less: legitimately nothing to show.
    Skip,
}

fn read_record(mem: &mut impl VirtMemory, l: &Layout, r: &Ring, id: u64) -> Result<Outcome, Error> {
    let bad = |why: String| Error::BadRecord { id, why };
    let idx = id & ((1u64 << r.count_bits) - 1);
    let desc = idx
        .checked_mul(l.desc_size)
        .and_then(|o| r.descs.checked_add(o))
        .ok_or_else(|| bad(String::from("descriptor address overflows")))?;
    let state_var = read_u64(mem, desc.wrapping_add(l.desc_state_var + l.atomic_counter))
        .map_err(|e| bad(format!("descriptor: {e}")))?;
    if state_var & DESC_ID_MASK != id {
        return Ok(Outcome::Skip);
    }
    let state = state_var >> DESC_FLAGS_SHIFT;
    if state != STATE_COMMITTED && state != STATE_FINALIZED {
        return Ok(Outcome::Skip);
    }
    // Old-kernel pointers: an address that wraps simply fails to translate.
    let lpos = desc.wrapping_add(l.desc_text_lpos);
    let begin =
        read_u64(mem, lpos.wrapping_add(l.lpos_begin)).map_err(|e| bad(format!("lpos: {e}")))?;
    let next =
        read_u64(mem, lpos.wrapping_add(l.lpos_next)).map_err(|e| bad(format!("lpos: {e}")))?;
    if begin & 1 != 0 || begin == next {
        return Ok(Outcome::Skip);
    }
    let info = idx
        .checked_mul(l.info_size)
        .and_then(|o| r.infos.checked_add(o))
        .ok_or_else(|| bad(String::from("info address overflows")))?;
    let ts_nsec = read_u64(mem, info.wrapping_add(l.info_ts_nsec))
        .map_err(|e| bad(format!("printk_info: {e}")))?;
    let text_len = read_u16(mem, info.wrapping_add(l.info_text_len))
        .map_err(|e| bad(format!("printk_info: {e}")))?;
    let size = 1u64 << r.size_bits;
    let (wb, wn) = (begin >> r.size_bits, next >> r.size_bits);
    let (start, len) = if wb == wn {
        (begin & (size - 1), next.wrapping_sub(begin))
    } else if wb.wrapping_add(1) == wn {
        (0, next & (size - 1))
    } else {
        return Err(bad(format!(
            "text block {begin:#x}..{next:#x} spans more than one wrap"
        )));
    };
    if len < 8 || len > size || start + len > size {
        return Err(bad(format!(
            "text block {begin:#x}..{next:#x} has impossible length {len}"
        )));
    }
    let block_id =
        read_u64(mem, r.data.wrapping_add(start)).map_err(|e| bad(format!("text block: {e}")))?;
    if block_id & DESC_ID_MASK != id {
        return Err(bad(format!(
            "text block belongs to id {block_id:#x} (overwritten or corrupt)"
        )));
    }
    let n = usize::from(text_len).min((len - 8) as usize).min(MAX_TEXT);
    let mut text = vec![0u8; n];
    mem.read_virt(r.data.wrapping_add(start + 8), &mut text)
        .map_err(|e| bad(format!("text: {e}")))?;
    Ok(Outcome::Text(Record { id, ts_nsec, text }))
}

/// Reads records from the newest backwards until `want_lines` output lines are collected and
/// the panic message is found (or `max_records` records were looked at, or the tail reached).
/// Every failure is recorded in [`Tail::errors`]; an inconsistent record is skipped.
pub fn read_tail(
    mem: &mut impl VirtMemory,
    layout: &Layout,
    want_lines: usize,
    max_records: u32,
) -> Tail {
    let mut tail = Tail::default();
    let ring = match read_ring(mem, layout) {
        Ok(r) => r,
        Err(e) => {
            tail.errors.push(e);
            return tail;
        }
    };
    let limit = max_records
        .min(MAX_RECORDS)
        .min(1u32 << ring.count_bits.min(31));
    let mut lines = 0usize;
    let mut newest_first = Vec::new();
    let mut id = ring.head_id;
    // Consecutive failures mean the ring is garbage from here back: stop instead of reporting
    // hundreds of records.
    let mut failures = 0u32;
    for _ in 0..limit {
        tail.examined += 1;
        match read_record(mem, layout, &ring, id) {
            Ok(Outcome::Text(rec)) => {
                failures = 0;
                let text = String::from_utf8_lossy(&rec.text);
                if tail.panic.is_none()
                    && let Some(p) = text.find(PANIC_PREFIX)
                {
                    let msg = &text[p + PANIC_PREFIX.len()..];
                    tail.panic = Some(String::from(msg.lines().next().unwrap_or("").trim_end()));
                }
                if tail.cpu_line.is_none() {
                    tail.cpu_line = parse_cpu_line(&text);
                }
                if lines < want_lines {
                    lines += rec.lines().len();
                    newest_first.push(rec);
                }
            }
            Ok(Outcome::Skip) => {}
            Err(e) => {
                failures += 1;
                tail.errors.push(e);
                if failures >= 8 {
                    tail.errors.push(Error::BadRing(String::from(
                        "8 bad records in a row: giving up on older records",
                    )));
                    break;
                }
            }
        }
        if id == ring.tail_id || (lines >= want_lines && tail.panic.is_some()) {
            break;
        }
        id = id.wrapping_sub(1) & DESC_ID_MASK;
    }
    newest_first.reverse();
    tail.records = newest_first;
    tail
}

/// Parses `CPU: 0 PID: 1 Comm: sh Not tainted ...` (`dump_stack_print_info`).
fn parse_cpu_line(text: &str) -> Option<(u32, i64, String)> {
    let rest = text.strip_prefix("CPU: ")?;
    let (cpu, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("PID: ")?;
    let (pid, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("Comm: ")?;
    // The kernel prints `%.20s` of a 16-byte comm, then ` ` and the taint state.
    let comm = rest.split(' ').next()?;
    Some((cpu.parse().ok()?, pid.parse().ok()?, String::from(comm)))
}
