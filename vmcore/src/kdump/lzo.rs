//! An LZO1X encoder for one page: greedy matching over a 4096-entry hash of 4-byte sequences
//! (the approach of LZO1X-1), emitting the LZO1X bitstream that liblzo2's
//! `lzo1x_decompress_safe` (crash, makedumpfile) and `lzokay` decode. Hand-written because the
//! one MIT no_std encoder (`lzokay`) resets 200 KiB of match tables per call and so runs at a
//! third of zlib's speed on 4 KiB pages (docs/dump-format.md#kdump-compressed-format); `lzokay`
//! stays the independent decoder the tests check this encoder with.
//!
//! The bitstream, as liblzo2 decodes it (facts from its documentation; only the instructions a
//! page needs, distances stay under 4096):
//! - first byte `17 + n` (n 1..=238): `n` literals;
//! - `0000LLLL` after a match without trailing literals, or at the start: `L + 3` literals,
//!   `L == 0` extends: `15 + 255 × (zero bytes) + next byte`;
//! - `LLLDDDSS HHHHHHHH` with `LLL` 2..=7: a match of `LLL + 1` bytes (3..=8) at distance
//!   `1 + DDD + 8 × H` (at most 2048);
//! - `001LLLLL` + `DDDDDDDD DDDDDDSS` (little-endian u16): a match of `L + 2` bytes (`L == 0`
//!   extends: `31 + 255 × zeros + byte`) at distance `1 + D` (at most 16384);
//! - `SS` of a match: 0..=3 literals that follow it, with no instruction of their own;
//! - end of stream: `0x11 0x00 0x00`.

/// Hash table entries: `generation << 16 | position`, so no page clears it.
const HASH_BITS: u32 = 12;

/// Encoder state reused across pages: the hash table and the page's generation.
pub struct Lzo1x {
    table: [u32; 1 << HASH_BITS],
    generation: u16,
}

impl Default for Lzo1x {
    fn default() -> Self {
        Lzo1x {
            table: [0; 1 << HASH_BITS],
            generation: 0,
        }
    }
}

/// Output cursor that fails instead of overrunning.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    fn byte(&mut self, b: u8) -> Option<()> {
        *self.buf.get_mut(self.len)? = b;
        self.len += 1;
        Some(())
    }

    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.buf
            .get_mut(self.len..self.len + b.len())?
            .copy_from_slice(b);
        self.len += b.len();
        Some(())
    }

    /// `rest` as the zero bytes + final byte of a length extension.
    fn extension(&mut self, mut rest: usize) -> Option<()> {
        while rest > 255 {
            self.byte(0)?;
            rest -= 255;
        }
        self.byte(rest as u8)
    }
}

fn read4(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

fn hash(v: u32) -> usize {
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

impl Lzo1x {
    /// Compresses `src` (at most 16 KiB, a page) into `dst`; `None` when `dst` is too small.
    pub fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> Option<usize> {
        if src.len() > 1 << 14 {
            return None;
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Entries of 65536 pages ago would look current again.
            self.table.fill(0);
            self.generation = 1;
        }
        let tag = u32::from(self.generation) << 16;
        let mut out = Out { buf: dst, len: 0 };
        // Index in `out` of the byte holding the last match's SS bits, if any.
        let mut last_ss: Option<usize> = None;
        let mut lit = 0usize;
        let mut i = 0usize;
        let n = src.len();
        while i + 4 <= n {
            let v = read4(src, i);
            let h = hash(v);
            let entry = self.table[h];
            self.table[h] = tag | i as u32;
            let from = (entry & 0xffff) as usize;
            if entry & !0xffff != tag || read4(src, from) != v {
                // Step faster through data that does not match (as LZO1X-1 does).
                i += 1 + ((i - lit) >> 5);
                continue;
            }
            let mut len = 4;
            while i + len + 8 <= n {
                let a = u64::from_le_bytes(src[from + len..from + len + 8].try_into().ok()?);
                let b = u64::from_le_bytes(src[i + len..i + len + 8].try_into().ok()?);
                if a != b {
                    len += ((a ^ b).trailing_zeros() / 8) as usize;
                    break;
                }
                len += 8;
            }
            if i + len + 8 > n {
                while i + len < n && src[from + len] == src[i + len] {
                    len += 1;
                }
            }
            literals(&mut out, &mut last_ss, &src[lit..i])?;
            let dist = i - from;
            if len <= 8 && dist <= 2048 {
                let d = dist - 1;
                last_ss = Some(out.len);
                out.byte((((len - 1) << 5) | ((d & 7) << 2)) as u8)?;
                out.byte((d >> 3) as u8)?;
            } else {
                if len - 2 <= 31 {
                    out.byte(0x20 | (len - 2) as u8)?;
                } else {
                    out.byte(0x20)?;
                    out.extension(len - 2 - 31)?;
                }
                let d = ((dist - 1) << 2) as u16;
                last_ss = Some(out.len);
                out.bytes(&d.to_le_bytes())?;
            }
            i += len;
            lit = i;
        }
        literals(&mut out, &mut last_ss, &src[lit..])?;
        out.bytes(&[0x11, 0, 0])?;
        Some(out.len)
    }
}

/// Emits a literal run: in the last match's SS bits when 1..=3 follow a match, else with an
/// instruction of its own.
fn literals(out: &mut Out<'_>, last_ss: &mut Option<usize>, lits: &[u8]) -> Option<()> {
    let k = lits.len();
    if k == 0 {
        return Some(());
    }
    match *last_ss {
        Some(at) if k <= 3 => out.buf[at] |= k as u8,
        None if out.len == 0 && k <= 238 => out.byte(17 + k as u8)?,
        _ if k <= 3 => return None, // cannot happen: a stream starts with 17 + k
        _ if k - 3 <= 15 => out.byte((k - 3) as u8)?,
        _ => {
            out.byte(0)?;
            out.extension(k - 3 - 15)?;
        }
    }
    *last_ss = None;
    out.bytes(lits)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;

    fn roundtrip(src: &[u8]) -> usize {
        let mut enc = Lzo1x::default();
        let mut out = vec![0u8; src.len() + src.len() / 16 + 64 + 3];
        let n = enc
            .compress(src, &mut out)
            .expect("fits the worst-case bound");
        let mut back = vec![0u8; src.len()];
        let got = lzokay::decompress::decompress(&out[..n], &mut back);
        assert_eq!(got, Ok(src.len()), "lzokay decodes the stream whole");
        assert!(back == src, "byte-exact");
        n
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn pages_of_every_kind_decode_byte_exact() {
        assert!(roundtrip(&[0; 4096]) < 40);
        roundtrip(&noise(1, 4096));
        let text: Vec<u8> = b"struct page *p = pfn_to_page(pfn); /* kernel text */\n"
            .iter()
            .copied()
            .cycle()
            .take(4096)
            .collect();
        assert!(roundtrip(&text) < 400);
        // Mixed: runs, short repeats at small and large distances, literals of every length.
        let rng = noise(7, 8192);
        let mut page = Vec::new();
        let mut k = 0;
        while page.len() < 4096 {
            let kind = rng[k % rng.len()] % 5;
            let len = 1 + usize::from(rng[(k + 1) % rng.len()]) % 300;
            k += 2;
            match kind {
                0 => page.extend(core::iter::repeat_n(rng[k % rng.len()], len)),
                1 if page.len() > 3000 => {
                    let from = page.len() - 3000;
                    let copy: Vec<u8> = page[from..from + len.min(2000)].to_vec();
                    page.extend(copy);
                }
                2 if page.len() > 10 => {
                    let from = page.len() - 1 - usize::from(rng[k % rng.len()]) % 10;
                    for j in 0..len {
                        page.push(page[from + j % (page.len() - from)]);
                    }
                }
                _ => page.extend_from_slice(&rng[k % 4000..k % 4000 + len.min(4000)]),
            }
        }
        page.truncate(4096);
        roundtrip(&page);
        for len in [0, 1, 2, 3, 4, 5, 17, 18, 238, 239, 300, 4096] {
            roundtrip(&noise(len as u64 + 3, len));
        }
    }

    #[test]
    fn many_random_structured_pages() {
        let mut seed = 11u64;
        for _ in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let base = noise(seed, 64);
            let page: Vec<u8> = (0..4096)
                .map(|i| {
                    let s = (seed >> (i % 48)) as usize;
                    if s.is_multiple_of(7) {
                        base[i % 64]
                    } else {
                        base[(i * (s % 5 + 1)) % 64]
                    }
                })
                .collect();
            roundtrip(&page);
        }
    }

    #[test]
    fn a_short_output_buffer_is_refused() {
        let mut enc = Lzo1x::default();
        let mut out = [0u8; 100];
        assert_eq!(enc.compress(&noise(2, 4096), &mut out), None);
    }
}
