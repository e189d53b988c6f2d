//! Reading a record back the way `rkdumpctl save` does: label at offset 0, record header at
//! `data_offset`, every block's XXH64 against the table, then the vmcore bytes in order.

use alloc::vec;
use core::fmt;

use crate::label::{self, Label, ReadFailed, RecordHeader, RecordSummary};

/// Fills `buf` from disk offset `offset`.
pub type ReadAt<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), ReadFailed> + 'a;

/// Why a record could not be read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The label could not be read.
    LabelUnreadable,
    /// The disk carries no valid label.
    Label(label::Error),
    /// The record header could not be read.
    HeaderUnreadable,
    /// The header, a block checksum or the table is wrong.
    Rejected(label::Error),
    /// vmcore bytes could not be read.
    DataUnreadable {
        /// Disk offset of the failed read.
        offset: u64,
    },
    /// The output refused the bytes.
    Output,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::LabelUnreadable => f.write_str("reading label failed"),
            ReadError::Label(e) => write!(f, "{e}"),
            ReadError::HeaderUnreadable => f.write_str("reading the record header failed"),
            ReadError::Rejected(e) => write!(f, "dump record rejected: {e}"),
            ReadError::DataUnreadable { offset } => {
                write!(f, "reading dump data at offset {offset} failed")
            }
            ReadError::Output => f.write_str("writing the vmcore failed"),
        }
    }
}

/// Reads and checks label and record: the header's CRC-32 and, for Complete and Truncated
/// records, every block's XXH64.
pub fn verify(read: &mut ReadAt<'_>) -> Result<(Label, RecordSummary), ReadError> {
    let mut head = vec![0u8; label::LABEL_BYTES];
    read(0, &mut head).map_err(|_| ReadError::LabelUnreadable)?;
    let lab = Label::parse(&head).map_err(ReadError::Label)?;
    let mut hdr = vec![0u8; label::HEADER_BYTES];
    read(lab.data_offset, &mut hdr).map_err(|_| ReadError::HeaderUnreadable)?;
    let summary = label::verify_record(&lab, &hdr, &mut *read).map_err(ReadError::Rejected)?;
    Ok((lab, summary))
}

/// Hands the `written` vmcore bytes of `header`'s record to `out` in order, 1 MiB at a time.
pub fn copy_vmcore(
    header: &RecordHeader,
    read: &mut ReadAt<'_>,
    out: &mut dyn FnMut(&[u8]) -> Result<(), ReadFailed>,
) -> Result<(), ReadError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < header.written {
        let n = (header.written - done).min(buf.len() as u64) as usize;
        let offset = header.data_offset() + done;
        read(offset, &mut buf[..n]).map_err(|_| ReadError::DataUnreadable { offset })?;
        out(&buf[..n]).map_err(|_| ReadError::Output)?;
        done += n as u64;
    }
    Ok(())
}
