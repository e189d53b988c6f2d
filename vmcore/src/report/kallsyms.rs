//! The crashed kernel's own symbol table (`CONFIG_KALLSYMS`), found in old memory by its
//! structure and read in place: address to `name+off/size` for the registers and the call
//! trace, and name to address for the few variables the report needs.
//!
//! Debian's 6.1 kernel publishes none of the tables in VMCOREINFO and ships a stub System.map,
//! so the tables are found by what `scripts/kallsyms.c` writes: `kallsyms_token_index` is 256
//! ascending `u16` offsets into `kallsyms_token_table`, 256 NUL-terminated strings directly
//! before it; `kallsyms_markers` (one `u32` per 256 symbols, the first 0; `unsigned long` on
//! older kernels) directly before the token table; `kallsyms_names` directly before the markers
//! and `kallsyms_num_syms` directly before the names. `kallsyms_offsets` (one `s32` per symbol)
//! and `kallsyms_relative_base` sit either just before `kallsyms_num_syms` (6.1 and older) or
//! just after the token index (6.2+). Each table is 8-byte aligned.
//!
//! A name is a length byte (two bytes when bit 7 is set: low 7 bits, then the next byte's
//! value × 128), then that many token numbers; each expands to its token-table string; the
//! first character of the expansion is the symbol type. With `KALLSYMS_ABSOLUTE_PERCPU` (x86_64)
//! a non-negative offset is an absolute value and a negative one means
//! `relative_base - 1 - offset` (Linux `kernel/kallsyms.c`, `kallsyms_sym_address`).
//!
//! A candidate is accepted only when its decoded address of a symbol VMCOREINFO also names
//! (e.g. `SYMBOL(init_uts_ns)`) matches.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::virt::VirtMemory;

/// Longest decoded name believed.
const MAX_NAME: usize = 512;
/// Most symbols believed (6.1 cloud kernels have about 90 000).
const MAX_SYMS: u32 = 4_000_000;
/// Bytes read per piece while scanning for the token index.
const SCAN_PIECE: usize = 64 << 10;

/// Why kallsyms could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No token index was found in the range searched.
    NotFound {
        /// Bytes searched.
        searched: u64,
    },
    /// The search ran out of its time budget.
    GaveUp {
        /// Bytes searched.
        searched: u64,
    },
    /// A structure next to the token index is not what the kernel writes.
    Inconsistent(String),
    /// Reading old memory failed.
    Read(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { searched } => write!(
                f,
                "kallsyms: no symbol table found in {} KiB of kernel image",
                searched >> 10
            ),
            Error::GaveUp { searched } => write!(
                f,
                "kallsyms: search out of time after {} KiB of kernel image",
                searched >> 10
            ),
            Error::Inconsistent(why) => write!(f, "kallsyms: {why}"),
            Error::Read(e) => write!(f, "kallsyms: {e}"),
        }
    }
}

fn rd(e: impl fmt::Display) -> Error {
    Error::Read(format!("{e}"))
}

/// Where the tables are (kernel virtual addresses) and the two small ones, copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kallsyms {
    /// `kallsyms_num_syms`.
    pub num_syms: u32,
    /// `kallsyms_offsets`.
    pub offsets: u64,
    /// Value of `kallsyms_relative_base`.
    pub relative_base: u64,
    /// `kallsyms_names`.
    pub names: u64,
    /// `kallsyms_markers`.
    pub markers: u64,
    /// Bytes per marker: 4, or 8 on kernels that wrote them as `unsigned long`.
    pub marker_width: u8,
    /// `kallsyms_token_index` (where the search found it).
    pub token_index_addr: u64,
    token_table: Vec<u8>,
    token_index: [u16; 256],
}

/// A resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The symbol's name.
    pub name: String,
    /// The address minus the symbol's start.
    pub offset: u64,
    /// Distance to the next higher symbol (0 when unknown).
    pub size: u64,
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}/{:#x}", self.name, self.offset, self.size)
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

/// Does `b[at..]` start a plausible token index (256 strictly ascending u16 from 0, each gap
/// the length of a short string plus its NUL)?
fn token_index_at(b: &[u8], at: usize) -> Option<[u16; 256]> {
    let mut idx = [0u16; 256];
    let mut prev = 0u16;
    for (i, slot) in idx.iter_mut().enumerate() {
        let v = u16_at(b, at + 2 * i)?;
        if i == 0 {
            if v != 0 {
                return None;
            }
        } else if v < prev.checked_add(2)? || v > prev + 64 {
            return None;
        }
        *slot = v;
        prev = v;
    }
    Some(idx)
}

fn read_vec(mem: &mut impl VirtMemory, va: u64, len: usize) -> Result<Vec<u8>, Error> {
    let mut v = vec![0u8; len];
    mem.read_virt(va, &mut v).map_err(rd)?;
    Ok(v)
}

/// Up to `want` bytes ending at `end`: the longest readable of `want`, `want / 2`, ... down
/// to 512 (the bytes before a table may be unmapped).
fn read_back(mem: &mut impl VirtMemory, end: u64, want: usize) -> Result<Vec<u8>, Error> {
    let mut len = want;
    loop {
        let mut v = vec![0u8; len];
        match mem.read_virt(end.saturating_sub(len as u64), &mut v) {
            Ok(()) => return Ok(v),
            Err(e) if len <= 512 => return Err(rd(e)),
            Err(_) => len /= 2,
        }
    }
}

fn read_u32(mem: &mut impl VirtMemory, va: u64) -> Result<u32, Error> {
    let mut b = [0u8; 4];
    mem.read_virt(va, &mut b).map_err(rd)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(mem: &mut impl VirtMemory, va: u64) -> Result<u64, Error> {
    let mut b = [0u8; 8];
    mem.read_virt(va, &mut b).map_err(rd)?;
    Ok(u64::from_le_bytes(b))
}

const fn align8(v: u64) -> u64 {
    (v + 7) & !7
}

/// A sanity check the caller supplies: a symbol name and the address VMCOREINFO gives it.
#[derive(Debug, Clone, Copy)]
pub struct Anchor<'a> {
    /// Symbol name, e.g. `init_uts_ns`.
    pub name: &'a str,
    /// Its runtime address.
    pub addr: u64,
}

impl Kallsyms {
    /// Searches `[start, end)` (kernel virtual addresses of the kernel image) for the tables,
    /// 8-byte aligned, and accepts the first candidate whose `anchor` resolves correctly.
    /// Reads at most `end - start` bytes in pieces; unreadable pieces are skipped.
    pub fn find(
        mem: &mut impl VirtMemory,
        start: u64,
        end: u64,
        anchor: Anchor<'_>,
    ) -> Result<Self, Error> {
        Self::find_within(mem, start, end, anchor, &|| false)
    }

    /// [`Self::find`], asking `give_up` before each 64 KiB piece (a time budget: the search
    /// may cover tens of MiB).
    pub fn find_within(
        mem: &mut impl VirtMemory,
        start: u64,
        end: u64,
        anchor: Anchor<'_>,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Self, Error> {
        let mut last_err = None;
        let mut buf = vec![0u8; SCAN_PIECE + 512];
        let mut va = start & !7;
        let mut searched = 0u64;
        while va < end {
            if give_up() {
                return Err(Error::GaveUp { searched });
            }
            let len = ((end - va) as usize).min(SCAN_PIECE + 512);
            if mem.read_virt(va, &mut buf[..len]).is_err() {
                va = va.saturating_add(SCAN_PIECE as u64);
                continue;
            }
            searched += len.min(SCAN_PIECE) as u64;
            let piece = &buf[..len];
            let mut at = 0usize;
            while at < len.min(SCAN_PIECE) {
                // Cheap filter first: 0, then three short ascending steps.
                if piece.get(at..at + 8).is_some_and(|w| {
                    let a = u16::from_le_bytes([w[0], w[1]]);
                    let b = u16::from_le_bytes([w[2], w[3]]);
                    let c = u16::from_le_bytes([w[4], w[5]]);
                    let d = u16::from_le_bytes([w[6], w[7]]);
                    a == 0 && (2..=64).contains(&b) && c > b && c <= b + 64 && d > c && d <= c + 64
                }) && let Some(idx) = token_index_at(piece, at)
                {
                    match Self::from_token_index(mem, va + at as u64, idx, anchor, None) {
                        Ok(k) => return Ok(k),
                        Err(e) => last_err = Some(e),
                    }
                }
                at += 8;
            }
            va = va.saturating_add(SCAN_PIECE as u64);
        }
        Err(last_err.unwrap_or(Error::NotFound { searched }))
    }

    /// Uses the addresses newer kernels (and Debian's 6.1 since 6.1.0-5x) publish in VMCOREINFO
    /// (`SYMBOL(kallsyms_token_index)` and friends; the markers are not published and are found
    /// before the token table as in [`Self::find`]). The tables derived from the token index must
    /// agree with every published address.
    pub fn from_vmcoreinfo(
        mem: &mut impl VirtMemory,
        info: &crate::notes::VmcoreInfo<'_>,
        anchor: Anchor<'_>,
    ) -> Result<Option<Self>, Error> {
        let sym = |name: &str| {
            info.get(&format!("SYMBOL({name})"))
                .and_then(super::parse_hex)
        };
        let Some(ti) = sym("kallsyms_token_index") else {
            return Ok(None);
        };
        let raw = read_vec(mem, ti, 512)?;
        let idx = token_index_at(&raw, 0).ok_or_else(|| {
            Error::Inconsistent(format!(
                "SYMBOL(kallsyms_token_index) {ti:#x} holds no token index"
            ))
        })?;
        let hint = match sym("kallsyms_num_syms") {
            Some(at) => Some(read_u32(mem, at)?),
            None => None,
        };
        let k = Self::from_token_index(mem, ti, idx, anchor, hint)?;
        let published = [
            ("kallsyms_names", k.names),
            ("kallsyms_num_syms", k.names - 8),
            ("kallsyms_offsets", k.offsets),
        ];
        for (name, derived) in published {
            if let Some(v) = sym(name)
                && v != derived
            {
                return Err(Error::Inconsistent(format!(
                    "VMCOREINFO {name} {v:#x} differs from the tables' {derived:#x}"
                )));
            }
        }
        Ok(Some(k))
    }

    /// Builds the tables around a token index found at `ti` and checks them with `anchor`.
    /// `num_syms_hint` (from VMCOREINFO) lets it step over `kallsyms_seqs_of_names`.
    pub fn from_token_index(
        mem: &mut impl VirtMemory,
        ti: u64,
        idx: [u16; 256],
        anchor: Anchor<'_>,
        num_syms_hint: Option<u32>,
    ) -> Result<Self, Error> {
        let bad = |s: &str| Error::Inconsistent(String::from(s));
        // The token table ends just before the index, padded to 8: its last string ends in a
        // NUL, and every index entry starts right after a NUL.
        let last = u64::from(idx[255]);
        let window = read_back(mem, ti, (last + 512) as usize)?;
        let mut table = None;
        for pad in 0..8u64 {
            let end = window.len() as u64 - pad;
            if window.get(end as usize - 1) != Some(&0) {
                continue;
            }
            // Length of the last token (without its NUL).
            let mut l = 0u64;
            while l < 64 && end >= 2 + l && window[(end - 2 - l) as usize] != 0 {
                l += 1;
            }
            let Some(t_start) = end.checked_sub(l + 1 + last) else {
                continue;
            };
            let t = &window[t_start as usize..end as usize];
            let ok = idx.iter().enumerate().all(|(i, &o)| {
                let o = usize::from(o);
                t.get(o).is_some_and(|&c| c != 0) && (i == 0 || t.get(o - 1) == Some(&0))
            });
            if ok {
                table = Some((ti - (window.len() as u64 - t_start), t.to_vec()));
                break;
            }
        }
        let (tt, token_table) = table.ok_or_else(|| bad("no token table before the index"))?;
        // Markers: walk back from the token table over ascending u32 values down to a 0.
        let mut k = Self {
            num_syms: 0,
            offsets: 0,
            relative_base: 0,
            names: 0,
            markers: 0,
            marker_width: 4,
            token_index_addr: ti,
            token_table,
            token_index: idx,
        };
        // The markers end at the token table, or (6.2+, and Debian's 6.1) at
        // `kallsyms_seqs_of_names`, 3 bytes per symbol, which then sits between them.
        let mut ends = vec![tt];
        if let Some(n) = num_syms_hint {
            ends.push(tt.saturating_sub(align8(3 * u64::from(n))));
        }
        let mut located = false;
        'ends: for end in ends {
            let back = read_back(mem, end, 64 << 10)?;
            for (mi, n_markers, width) in marker_candidates(&back) {
                k.markers = end.wrapping_sub((back.len() - mi) as u64);
                k.marker_width = width;
                let last_marker = k.marker(mem, n_markers - 1)?;
                if k.find_names(mem, last_marker, n_markers)? {
                    located = true;
                    break 'ends;
                }
            }
        }
        if !located && num_syms_hint.is_none() {
            // No count from VMCOREINFO: look for a marker array whose count matches the
            // seqs_of_names (3 bytes per symbol) between it and the token table.
            let back = read_back(mem, tt, SEQS_SEARCH)?;
            for (mi, n_markers) in seqs_marker_candidates(&back) {
                k.markers = tt.wrapping_sub((back.len() - mi) as u64);
                k.marker_width = 4;
                let last_marker = k.marker(mem, n_markers - 1)?;
                if k.find_names(mem, last_marker, n_markers)? {
                    located = true;
                    break;
                }
            }
        }
        if !located {
            return Err(bad(
                "no markers, names and kallsyms_num_syms before the tokens",
            ));
        }
        // The offsets: before num_syms (6.1 and older) or after the token index (6.2+).
        let num_syms_addr = k.names - 8;
        let table_bytes = align8(u64::from(k.num_syms) * 4);
        let before = (
            num_syms_addr.wrapping_sub(8 + table_bytes),
            read_u64(mem, num_syms_addr.wrapping_sub(8))?,
        );
        let after_off = align8(ti.wrapping_add(512));
        let after = (
            after_off,
            read_u64(mem, after_off.wrapping_add(table_bytes)).unwrap_or(0),
        );
        for (offsets, base) in [before, after] {
            k.offsets = offsets;
            k.relative_base = base;
            if k.lookup(mem, anchor.addr)
                .ok()
                .flatten()
                .is_some_and(|s| s.offset == 0 && s.name == anchor.name)
            {
                return Ok(k);
            }
        }
        Err(Error::Inconsistent(format!(
            "tables at {ti:#x} do not give {} its VMCOREINFO address {:#x}",
            anchor.name, anchor.addr
        )))
    }

    /// With the markers placed, looks for `kallsyms_num_syms` 8 bytes before a names start such
    /// that the last group of names decodes to exactly the markers (8-byte padded). Sets
    /// `names` and `num_syms` and returns `true` when found.
    fn find_names(
        &mut self,
        mem: &mut impl VirtMemory,
        last_marker: u64,
        n_markers: u32,
    ) -> Result<bool, Error> {
        let Some(hi) = self.markers.checked_sub(last_marker) else {
            return Ok(false);
        };
        let lo = hi.saturating_sub(64 << 10);
        let base = lo.saturating_sub(8) & !7;
        let region = read_back(mem, hi, (hi - base) as usize)?;
        let base = hi - region.len() as u64;
        let mut names = hi & !7;
        while names >= base + 8 {
            let off = (names - 8 - base) as usize;
            let n = region
                .get(off..off + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            if n > 256 && n <= MAX_SYMS && n.div_ceil(256) == n_markers {
                let end = self.skip_entries(
                    mem,
                    names.wrapping_add(last_marker),
                    n - 256 * (n_markers - 1),
                );
                if end.is_ok_and(|cur| align8(cur) == self.markers) {
                    self.names = names;
                    self.num_syms = n;
                    return Ok(true);
                }
            }
            names -= 8;
        }
        Ok(false)
    }

    /// Address after `n` name entries starting at `va`, reading 4 KiB at a time (a group of
    /// 256 names is a few KiB: one or two reads instead of one per name).
    fn skip_entries(&self, mem: &mut impl VirtMemory, mut va: u64, n: u32) -> Result<u64, Error> {
        let mut buf = [0u8; 4096];
        let mut have = 0u64..0u64;
        for _ in 0..n {
            if !(have.contains(&va) && have.contains(&(va + 1))) {
                match mem.read_virt(va, &mut buf) {
                    Ok(()) => have = va..va + buf.len() as u64,
                    Err(_) => {
                        va = va.wrapping_add(self.entry_len(mem, va)?);
                        continue;
                    }
                }
            }
            let o = (va - have.start) as usize;
            va = va.wrapping_add(if buf[o] & 0x80 != 0 {
                2 + (u64::from(buf[o] & 0x7f) | (u64::from(buf[o + 1]) << 7))
            } else {
                1 + u64::from(buf[o])
            });
        }
        Ok(va)
    }

    /// Bytes taken by the name entry at `va` (length header included).
    fn entry_len(&self, mem: &mut impl VirtMemory, va: u64) -> Result<u64, Error> {
        let mut h = [0u8; 2];
        mem.read_virt(va, &mut h).map_err(rd)?;
        Ok(if h[0] & 0x80 != 0 {
            2 + (u64::from(h[0] & 0x7f) | (u64::from(h[1]) << 7))
        } else {
            1 + u64::from(h[0])
        })
    }

    fn expand(&self, tokens: &[u8], out: &mut Vec<u8>) {
        for &t in tokens {
            let start = usize::from(self.token_index[usize::from(t)]);
            let s = self.token_table.get(start..).unwrap_or(&[]);
            let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
            out.extend_from_slice(&s[..end]);
            if out.len() > MAX_NAME {
                out.truncate(MAX_NAME);
                return;
            }
        }
    }

    /// Address of symbol `i`.
    pub fn address(&self, mem: &mut impl VirtMemory, i: u32) -> Result<u64, Error> {
        let raw = read_u32(mem, self.offsets.wrapping_add(4 * u64::from(i)))? as i32;
        Ok(if raw >= 0 {
            raw as u64
        } else {
            self.relative_base
                .wrapping_sub(1)
                .wrapping_sub(i64::from(raw) as u64)
        })
    }

    fn marker(&self, mem: &mut impl VirtMemory, group: u32) -> Result<u64, Error> {
        let at = self
            .markers
            .wrapping_add(u64::from(group) * u64::from(self.marker_width));
        Ok(if self.marker_width == 4 {
            u64::from(read_u32(mem, at)?)
        } else {
            read_u64(mem, at)?
        })
    }

    /// Name of symbol `i` (without its type character).
    pub fn name(&self, mem: &mut impl VirtMemory, i: u32) -> Result<String, Error> {
        if i >= self.num_syms {
            return Err(Error::Inconsistent(format!(
                "symbol {i} beyond {}",
                self.num_syms
            )));
        }
        let group = self.names.wrapping_add(self.marker(mem, i >> 8)?);
        let va = self.skip_entries(mem, group, i & 0xff)?;
        let len = self.entry_len(mem, va)?;
        let hdr = if len > 1 + 0x7f { 2 } else { 1 };
        let body = read_vec(
            mem,
            va.wrapping_add(hdr),
            (len - hdr).min(MAX_NAME as u64) as usize,
        )?;
        let mut out = Vec::new();
        self.expand(&body, &mut out);
        Ok(String::from_utf8_lossy(out.get(1..).unwrap_or(&[])).into_owned())
    }

    /// Resolves `addr` to the symbol containing it, as the kernel does (the first of aliased
    /// symbols; size up to the next higher address). `None` below the first symbol.
    pub fn lookup(&self, mem: &mut impl VirtMemory, addr: u64) -> Result<Option<Symbol>, Error> {
        let (mut lo, mut hi) = (0u32, self.num_syms);
        if hi == 0 || self.address(mem, 0)? > addr {
            return Ok(None);
        }
        // Invariant: address(lo) <= addr, answer in [lo, hi).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.address(mem, mid)? <= addr {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let start = self.address(mem, lo)?;
        let mut first = lo;
        for _ in 0..64 {
            if first == 0 || self.address(mem, first - 1)? != start {
                break;
            }
            first -= 1;
        }
        let mut size = 0;
        let mut j = lo + 1;
        while j < self.num_syms && j < lo + 64 {
            let a = self.address(mem, j)?;
            if a > start {
                size = a - start;
                break;
            }
            j += 1;
        }
        Ok(Some(Symbol {
            name: self.name(mem, first)?,
            offset: addr - start,
            size,
        }))
    }

    /// Resolves a return address as Linux's `%pB` does: the call may be a function's last
    /// instruction (a call to a `noreturn` function), so the symbol is that of `addr - 1`,
    /// with the offset counted to `addr`.
    pub fn lookup_return(
        &self,
        mem: &mut impl VirtMemory,
        addr: u64,
    ) -> Result<Option<Symbol>, Error> {
        Ok(self.lookup(mem, addr.wrapping_sub(1))?.map(|mut s| {
            s.offset += 1;
            s
        }))
    }

    /// Finds the addresses of `wanted` names in one pass over the names (bounded by
    /// `num_syms`); `None` for those not found.
    pub fn addresses_of(
        &self,
        mem: &mut impl VirtMemory,
        wanted: &[&str],
    ) -> Result<Vec<Option<u64>>, Error> {
        let mut out = vec![None; wanted.len()];
        // A name is expanded only when its length (type character included) is one wanted:
        // summing token lengths is far cheaper than building every name.
        // Cheaper still, a name is looked at only when its first token (type character, then
        // the name's start) can begin a wanted name.
        let mut token_len = [0usize; 256];
        let mut first_ok = [false; 256];
        for (t, (len, ok)) in token_len.iter_mut().zip(&mut first_ok).enumerate() {
            let s = self
                .token_table
                .get(usize::from(self.token_index[t])..)
                .unwrap_or(&[]);
            *len = s.iter().position(|&c| c == 0).unwrap_or(s.len());
            let rest = s.get(1..*len).unwrap_or(&[]);
            *ok = wanted.iter().any(|w| w.as_bytes().starts_with(rest));
        }
        let mut va = self.names;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 0];
        let mut chunk_va = 0u64;
        for i in 0..self.num_syms {
            // Refill a 16 KiB window so the walk costs one read per window, not per name (an
            // entry running past the window is read whole below).
            if va < chunk_va || va + 2 > chunk_va + chunk.len() as u64 {
                chunk = read_vec(mem, va, 16 << 10).or_else(|_| read_vec(mem, va, 1 << 10))?;
                chunk_va = va;
            }
            let o = (va - chunk_va) as usize;
            let h0 = chunk[o];
            let (hdr, len) = if h0 & 0x80 != 0 {
                let h1 = *chunk.get(o + 1).unwrap_or(&0);
                (2usize, usize::from(h0 & 0x7f) | (usize::from(h1) << 7))
            } else {
                (1, usize::from(h0))
            };
            if o + hdr + len > chunk.len() {
                chunk = read_vec(mem, va, hdr + len)?;
                chunk_va = va;
            }
            let o = (va - chunk_va) as usize;
            let entry = &chunk[o + hdr..o + hdr + len];
            if !entry.first().is_some_and(|&t| first_ok[usize::from(t)]) {
                va += (hdr + len) as u64;
                continue;
            }
            let full: usize = entry.iter().map(|&t| token_len[usize::from(t)]).sum();
            if !wanted
                .iter()
                .zip(&out)
                .any(|(w, slot)| slot.is_none() && w.len() + 1 == full)
            {
                va += (hdr + len) as u64;
                continue;
            }
            buf.clear();
            self.expand(entry, &mut buf);
            if let Some(name) = buf.get(1..) {
                for (slot, w) in out.iter_mut().zip(wanted) {
                    if slot.is_none() && name == w.as_bytes() {
                        *slot = Some(self.address(mem, i)?);
                    }
                }
            }
            if out.iter().all(Option::is_some) {
                break;
            }
            va += (hdr + len) as u64;
        }
        Ok(out)
    }

    /// Address of one symbol by name (a full pass over the names).
    pub fn address_of(&self, mem: &mut impl VirtMemory, name: &str) -> Result<Option<u64>, Error> {
        Ok(self.addresses_of(mem, &[name])?.pop().flatten())
    }
}

/// Bytes searched before the token table for markers followed by `kallsyms_seqs_of_names`
/// (room for about 340 000 symbols).
const SEQS_SEARCH: usize = 1 << 20;

/// Marker arrays inside `back` (which ends at the token table) followed by a seqs_of_names
/// array of 3 bytes per symbol: (index of the first marker, count), for `count` markers whose
/// symbol count `n` satisfies `ceil(n / 256) == count` with `3n` bytes (8-byte padded) between
/// the markers and the end.
fn seqs_marker_candidates(back: &[u8]) -> Vec<(usize, u32)> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(back.get(i..i + 4)?.try_into().ok()?))
    };
    let mut out = Vec::new();
    let mut p = back.len().saturating_sub(8) & !7;
    while p >= 8 {
        p -= 8;
        if word(p) != Some(0) || !word(p + 4).is_some_and(|v| (1..=1 << 16).contains(&v)) {
            continue;
        }
        let mut m = 1u32;
        let mut prev = 0u32;
        while let Some(v) = word(p + 4 * m as usize) {
            if v <= prev || v - prev > 1 << 16 {
                break;
            }
            prev = v;
            m += 1;
        }
        if m < 2 {
            continue;
        }
        // The first seqs bytes may happen to continue the ascent: try the shorter runs too.
        for m in (m.saturating_sub(3).max(2)..=m).rev() {
            let end = align8((p + 4 * m as usize) as u64) as usize;
            let seqs = back.len().saturating_sub(end) as u64;
            // 3n rounded up to 8: n lies within a few of seqs / 3.
            let n_hi = seqs / 3;
            let n_lo = seqs.saturating_sub(7) / 3;
            if (n_lo..=n_hi).any(|n| n > 0 && n.div_ceil(256) == u64::from(m)) {
                out.push((p, m));
            }
        }
    }
    out
}

/// Candidate marker arrays ending at the end of `back` (before alignment padding): the index of
/// the first marker, the count and the width. A marker array starts with 0 and ascends; at
/// least two markers (more than 256 symbols).
fn marker_candidates(back: &[u8]) -> Vec<(usize, u32, u8)> {
    let word = |i: usize| -> Option<u64> {
        Some(u64::from(u32::from_le_bytes(
            back.get(i..i + 4)?.try_into().ok()?,
        )))
    };
    let mut out = Vec::new();
    for (width, pad) in [(4usize, 0usize), (4, 4), (8, 0)] {
        let Some(mut i) = back.len().checked_sub(pad + width) else {
            continue;
        };
        let mut prev = u64::MAX;
        let mut count = 0u32;
        loop {
            let v = if width == 4 {
                word(i)
            } else {
                word(i).zip(word(i + 4)).map(|(lo, hi)| lo | (hi << 32))
            };
            let Some(v) = v else { break };
            if v >= prev {
                break;
            }
            count += 1;
            if v == 0 {
                if count >= 2 {
                    out.push((i, count, width as u8));
                }
                break;
            }
            prev = v;
            let Some(n) = i.checked_sub(width) else { break };
            i = n;
        }
    }
    out
}
