//! Per-page compression of the kdump-compressed format: the codecs both Debian's `crash` (8.0.2)
//! and `makedumpfile` (1.7.2, built with lzo only) decompress, with no_std encoders: zlib
//! (`miniz_oxide` at level 2, see [`ZLIB_LEVEL`]) and LZO1X ([`super::lzo`], decoded
//! in the reader by `lzokay`), plus `none`.
//! Snappy and zstd are read by crash but not by Debian's makedumpfile, and have no well-kept
//! no_std encoder here; the kernel refuses them with an error line and uses zlib.

use alloc::boxed::Box;
use core::fmt;

use miniz_oxide::DataFormat;
use miniz_oxide::deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress};

use super::abi::{DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_ZLIB};

/// Page size of the format on x86_64 (`block_size`).
pub const PAGE: usize = 4096;

/// Largest compressed page any codec may produce while trying (LZO's worst case,
/// `page + page/16 + 64 + 3`, is the largest); a result is kept only if smaller than a page.
pub const MAX_COMPRESSED: usize = PAGE + PAGE / 16 + 64 + 3;

/// `miniz_oxide`'s level for zlib pages. makedumpfile uses zlib's level 1 (`Z_BEST_SPEED`);
/// `miniz_oxide`'s level 1 is a faster, weaker parser: on the 16,912 non-zero pages a level-31
/// filter keeps of a real 1 GiB Debian crash it gave 17,447,139 bytes, 4.3% more than zlib's
/// level 1 (16,727,540), while its level 2 gave 16,405,798 (1.9% less) at 1.6 times level 1's
/// time (docs/dump-format.md#kdump-compressed-format).
pub const ZLIB_LEVEL: u8 = 2;

/// How page data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// zlib stream (RFC 1950) per page: every reader has it.
    Zlib,
    /// LZO1X per page: the fastest codec both Debian tools read.
    Lzo,
    /// Every page raw.
    None,
}

impl Codec {
    /// `DUMP_DH_COMPRESSED_*` of the codec (header `status` and page `flags`).
    pub fn flag(self) -> u32 {
        match self {
            Codec::Zlib => DUMP_DH_COMPRESSED_ZLIB,
            Codec::Lzo => DUMP_DH_COMPRESSED_LZO,
            Codec::None => 0,
        }
    }

    /// The `rkdump.compress=` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zlib => "zlib",
            Codec::Lzo => "lzo",
            Codec::None => "none",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a compressor could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMemory;

/// A codec with its working state, reused page after page (about 300 KiB for zlib, 16 KiB for
/// LZO, allocated once).
pub struct Compressor {
    codec: Codec,
    zlib: Option<Box<CompressorOxide>>,
    lzo: Option<Box<super::lzo::Lzo1x>>,
}

impl Compressor {
    /// State for `codec`.
    pub fn new(codec: Codec) -> Result<Self, NoMemory> {
        let mut c = Compressor {
            codec,
            zlib: None,
            lzo: None,
        };
        match codec {
            // zlib header (window bits 15), default strategy.
            Codec::Zlib => {
                // `Box::default` builds the 70 KiB state in the box; `Box::new(new(..))` built
                // it on the stack first (a 70 KiB frame that overflowed the kernel's boot stack).
                let mut z: Box<CompressorOxide> = Box::default();
                // zlib header (window bits 15), default strategy.
                z.set_format_and_level(DataFormat::Zlib, ZLIB_LEVEL);
                c.zlib = Some(z);
            }
            Codec::Lzo => c.lzo = Some(Box::default()),
            Codec::None => {}
        }
        Ok(c)
    }

    /// Heap bytes one [`Compressor::new`] of `codec` takes (an upper bound, checked by a test
    /// with a counting allocator): what each extra compressing CPU costs.
    pub const fn state_bytes(codec: Codec) -> usize {
        match codec {
            Codec::Zlib => 320 << 10,
            Codec::Lzo => 17 << 10,
            Codec::None => 0,
        }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Compresses one page into `out`; `Some(n)` only when the result is smaller than the page
    /// (makedumpfile stores the page raw otherwise).
    pub fn compress(&mut self, page: &[u8], out: &mut [u8; MAX_COMPRESSED]) -> Option<usize> {
        let n = match self.codec {
            Codec::Zlib => {
                let d = self.zlib.as_deref_mut()?;
                d.reset();
                let (status, _, n) = compress(d, page, &mut out[..], TDEFLFlush::Finish);
                (status == TDEFLStatus::Done).then_some(n)?
            }
            Codec::Lzo => {
                let lzo = self.lzo.as_deref_mut()?;
                lzo.compress(page, &mut out[..])?
            }
            Codec::None => return None,
        };
        (n < page.len()).then_some(n)
    }
}

/// Decompresses one page stored with `flags` (a page descriptor's) into `out`, which must come
/// out exactly full; `None` when the data is not a valid page of that codec.
pub fn decompress(flags: u32, data: &[u8], out: &mut [u8]) -> Option<()> {
    if flags & DUMP_DH_COMPRESSED_ZLIB != 0 {
        let v = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, out.len()).ok()?;
        (v.len() == out.len()).then(|| out.copy_from_slice(&v))
    } else if flags & DUMP_DH_COMPRESSED_LZO != 0 {
        let n = lzokay::decompress::decompress(data, out).ok()?;
        (n == out.len()).then_some(())
    } else if flags == 0 && data.len() == out.len() {
        out.copy_from_slice(data);
        Some(())
    } else {
        None
    }
}
