//! The two hardware seams of the dump path: [`OldMemory`] (crashed kernel's RAM in) and [`DumpSink`] (bytes out).

use alloc::vec::Vec;
use core::fmt;

/// Why old memory could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OldMemError {
    /// The range is not old memory the implementation knows how to map (outside the old memory map).
    OutOfRange {
        /// First byte requested.
        phys: u64,
        /// Bytes requested.
        len: u64,
    },
    /// The range is deliberately not readable (e.g. it overlaps the crash region the capture kernel runs in).
    Forbidden {
        /// First byte requested.
        phys: u64,
        /// Bytes requested.
        len: u64,
    },
    /// The hardware reported an error while reading (e.g. a corrected machine check).
    Fault {
        /// Address of the failing access.
        phys: u64,
    },
}

impl fmt::Display for OldMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OldMemError::OutOfRange { phys, len } => {
                write!(f, "old memory {phys:#x}+{len:#x} is not mapped")
            }
            OldMemError::Forbidden { phys, len } => {
                write!(f, "old memory {phys:#x}+{len:#x} must not be read")
            }
            OldMemError::Fault { phys } => {
                write!(f, "hardware fault reading old memory at {phys:#x}")
            }
        }
    }
}

/// Read access to the crashed kernel's physical memory.
pub trait OldMemory {
    /// Fills `buf` with the bytes at old physical address `phys..phys + buf.len()`.
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError>;
}

/// Why a sink refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkError {
    /// The target has no room for more bytes.
    Full,
    /// The device reported an error; `code` is device specific.
    Io {
        /// Device-specific status.
        code: u32,
    },
    /// The device stopped responding.
    Timeout,
    /// The sink refused the write in its current state (e.g. more bytes than the dump declared).
    Rejected,
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SinkError::Full => f.write_str("dump target is full"),
            SinkError::Io { code } => write!(f, "dump target I/O error (status {code:#x})"),
            SinkError::Timeout => f.write_str("dump target timed out"),
            SinkError::Rejected => f.write_str("dump target rejected the write"),
        }
    }
}

/// A sequential byte sink: a disk region, a serial port, a stream encoder.
pub trait DumpSink {
    /// Appends `data`; on success every byte was accepted.
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError>;
}

impl DumpSink for Vec<u8> {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        self.try_reserve(data.len()).map_err(|_| SinkError::Full)?;
        self.extend_from_slice(data);
        Ok(())
    }
}

impl<S: DumpSink + ?Sized> DumpSink for &mut S {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        (**self).write(data)
    }
}

impl<M: OldMemory + ?Sized> OldMemory for &mut M {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        (**self).read(phys, buf)
    }
}
