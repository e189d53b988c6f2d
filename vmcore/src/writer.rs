//! Streaming the dump: copies a [`VmcoreLayout`] to a [`DumpSink`] in file order through one
//! caller-provided bounce buffer (constant memory, no allocation).

use core::fmt;

use crate::layout::{Segment, VmcoreLayout};
use crate::mem::{DumpSink, OldMemError, OldMemory, SinkError};

/// Why writing the dump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bounce buffer is empty.
    EmptyBuffer,
    /// Old memory could not be read.
    OldMem {
        /// File offset being produced.
        file_offset: u64,
        /// The underlying failure.
        source: OldMemError,
    },
    /// The sink refused bytes.
    Sink {
        /// File offset of the first refused byte.
        file_offset: u64,
        /// The underlying failure.
        source: SinkError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::EmptyBuffer => f.write_str("bounce buffer is empty"),
            Error::OldMem {
                file_offset,
                source,
            } => write!(f, "at file offset {file_offset:#x}: {source}"),
            Error::Sink {
                file_offset,
                source,
            } => write!(f, "at file offset {file_offset:#x}: {source}"),
        }
    }
}

/// Writes the whole dump described by `layout` to `sink`, reading old memory into `buf` (use a multiple of
/// 4096 bytes so reads stay page aligned). `progress(done, total)` is called once before the first write
/// and after every write (the last call has `done == total`). Returns the number of bytes written (`layout.total_size`).
pub fn write_vmcore(
    layout: &VmcoreLayout,
    mem: &mut impl OldMemory,
    sink: &mut impl DumpSink,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, Error> {
    if buf.is_empty() {
        return Err(Error::EmptyBuffer);
    }
    let total = layout.total_size;
    let mut done = 0u64;
    progress(0, total);
    for seg in layout.segments() {
        match seg {
            Segment::Bytes(bytes) => {
                sink.write(bytes).map_err(|source| Error::Sink {
                    file_offset: done,
                    source,
                })?;
                done = done.saturating_add(bytes.len() as u64);
                progress(done, total);
            }
            Segment::OldMem { phys, len, .. } => {
                let mut copied = 0u64;
                while copied < len {
                    let n = (len - copied).min(buf.len() as u64) as usize;
                    let piece = &mut buf[..n];
                    let at = phys.checked_add(copied).ok_or(Error::OldMem {
                        file_offset: done,
                        source: OldMemError::OutOfRange { phys, len },
                    })?;
                    mem.read(at, piece).map_err(|source| Error::OldMem {
                        file_offset: done,
                        source,
                    })?;
                    sink.write(piece).map_err(|source| Error::Sink {
                        file_offset: done,
                        source,
                    })?;
                    copied += n as u64;
                    done = done.saturating_add(n as u64);
                    progress(done, total);
                }
            }
        }
    }
    Ok(done)
}
