//! The serial dump wire format: a framed, checksummed byte stream carrying the vmcore file, with the
//! encoder the kernel uses ([`FrameEncoder`]), and the decoder ([`StreamDecoder`]) and [`Reassembler`] that
//! `rkdumpctl recv` uses.
//!
//! A dump is one *run*: a `Begin` frame, `Data` frames carrying the file, an `End` frame. Every
//! frame is self-delimiting and checksummed, so a receiver can start anywhere, skip noise and
//! resynchronise by scanning for the magic after a damaged frame.
//!
//! Two versions, told apart by every frame's version byte (a run uses one):
//! - **1** ([`VERSION`]): the file's size is known up front (the ELF vmcore) and `Data` frames carry
//!   it in file order.
//! - **2** ([`VERSION_UNSIZED`]): the size is known only at the end and `Data` offsets come in any
//!   order (the kdump-compressed file: its metadata and page data are two sequential streams).
//!   `Begin` carries an upper bound, `End` the real size.
//!
//! A version-1 receiver rejects version-2 frames as invalid headers rather than misreading them.
//!
//! Frame (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `A5 52 4B 5A` (`"\xa5RKZ"`, [`MAGIC`]) |
//! | 4 | 1 | version, 1 or 2 |
//! | 5 | 1 | kind: 1 `Begin`, 2 `Data`, 3 `End` |
//! | 6 | 2 | payload length, at most 4096 ([`MAX_PAYLOAD`]) |
//! | 8 | 4 | sequence number: `Begin` is 0, each further frame of the run +1 |
//! | 12 | 8 | `Data`: file offset of the first payload byte; `Begin`/`End`: 0 |
//! | 20 | 4 | CRC-32/ISO-HDLC (zlib's crc32) over bytes 0..20 followed by the payload |
//! | 24 | n | payload |
//!
//! Payloads: `Begin` (24 bytes) = file size u64 (version 2: an upper bound), run id `[u8; 16]`.
//! `Data` = file bytes. `End` (16 bytes) = file size u64, number of `Data` frames u32, and a
//! CRC-32/ISO-HDLC over the `Data` payloads in sequence order. In version 1 the payloads are the
//! file in order, so that CRC is the whole file's; in version 2 the receiver computes it as the
//! frames arrive (a serial line does not reorder), and the whole-file check is then: that CRC,
//! the frame count, every frame's own CRC (which covers its offset), and no hole in `0..size`.
//!
//! The decoder reports damaged frames ([`Event::Corrupt`], with the stream byte position), jumps in the
//! sequence numbers ([`Event::SequenceGap`]) and counts skipped noise bytes; the reassembler writes data at
//! its offsets and reports holes. Nothing here panics on hostile input.

use alloc::vec::Vec;
use core::fmt;

use crc::{CRC_32_ISO_HDLC, Crc, Digest};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::kdump::KdumpSink;
use crate::mem::{DumpSink, SinkError};

/// Frame sync bytes.
pub const MAGIC: [u8; 4] = [0xa5, b'R', b'K', b'Z'];
/// Format version of a run whose size is known up front and whose data is in file order.
pub const VERSION: u8 = 1;
/// Format version of a run whose size is known only at its end and whose data offsets come in
/// any order.
pub const VERSION_UNSIZED: u8 = 2;
/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 4096;
/// Size of the frame header.
pub const FRAME_HEADER_SIZE: usize = 24;
/// Frame kind: start of a run.
pub const KIND_BEGIN: u8 = 1;
/// Frame kind: file bytes.
pub const KIND_DATA: u8 = 2;
/// Frame kind: end of a run.
pub const KIND_END: u8 = 3;
const BEGIN_PAYLOAD: usize = 24;
const END_PAYLOAD: usize = 16;

/// CRC-32/ISO-HDLC, used for frames and for the whole file.
pub static CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Wire layout of a frame header.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct FrameHeader {
    magic: [u8; 4],
    version: u8,
    kind: u8,
    payload_len: U16,
    seq: U32,
    offset: U64,
    crc: U32,
}

const _: () = assert!(size_of::<FrameHeader>() == FRAME_HEADER_SIZE);

/// Bytes covered by the header part of the CRC.
const CRC_COVERED: usize = 20;

fn frame_crc(header: &FrameHeader, payload: &[u8]) -> u32 {
    let mut d = CRC32.digest();
    d.update(&header.as_bytes()[..CRC_COVERED]);
    d.update(payload);
    d.finalize()
}

/// Contents of an `End` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndInfo {
    /// Total file size.
    pub total_size: u64,
    /// Number of `Data` frames sent.
    pub data_frames: u32,
    /// CRC-32/ISO-HDLC of the `Data` payloads in sequence order: in version 1, of the whole file.
    pub file_crc: u32,
}

/// Why the encoder refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The underlying sink failed.
    Sink(SinkError),
    /// `data` or `end` before `begin`, or anything after `end`.
    BadState,
    /// Version 1 data must be sent in file order: `offset` is not where the previous data ended.
    NonSequential {
        /// The next offset the encoder expected.
        expected: u64,
        /// The offset given.
        got: u64,
    },
    /// Data beyond the size (version 2: the bound) announced in `begin`.
    BeyondTotal {
        /// Announced size.
        total_size: u64,
    },
    /// `end` before all announced bytes were sent.
    Incomplete {
        /// Announced size.
        total_size: u64,
        /// Bytes sent.
        written: u64,
    },
    /// More than 2^32 frames.
    TooManyFrames,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Sink(e) => write!(f, "{e}"),
            Error::BadState => f.write_str("stream call out of order"),
            Error::NonSequential { expected, got } => {
                write!(f, "data at {got:#x} but the stream is at {expected:#x}")
            }
            Error::BeyondTotal { total_size } => {
                write!(f, "data beyond the announced size {total_size:#x}")
            }
            Error::Incomplete {
                total_size,
                written,
            } => write!(f, "end after {written:#x} of {total_size:#x} bytes"),
            Error::TooManyFrames => f.write_str("frame sequence number overflow"),
        }
    }
}

impl From<SinkError> for Error {
    fn from(e: SinkError) -> Self {
        Error::Sink(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncState {
    Idle,
    Open,
    Ended,
}

/// Encodes one run into frames written to a [`DumpSink`] (the serial port).
///
/// Also a [`DumpSink`] itself, so [`crate::write_vmcore`] can write through it after [`FrameEncoder::begin`],
/// and a [`KdumpSink`], so [`crate::kdump::write_kdump`] can after [`FrameEncoder::begin_unsized`].
pub struct FrameEncoder<S: DumpSink> {
    sink: S,
    state: EncState,
    version: u8,
    seq: u32,
    /// Version 1: the file size; version 2: its upper bound.
    total_size: u64,
    written: u64,
    /// End of the furthest data sent (version 2's file size at `end`).
    max_end: u64,
    data_frames: u32,
    file_crc: Digest<'static, u32>,
}

impl<S: DumpSink> FrameEncoder<S> {
    /// An encoder writing frames to `sink`.
    pub fn new(sink: S) -> Self {
        Self {
            sink,
            state: EncState::Idle,
            version: VERSION,
            seq: 0,
            total_size: 0,
            written: 0,
            max_end: 0,
            data_frames: 0,
            file_crc: CRC32.digest(),
        }
    }

    /// Starts a version-1 run: sends `Begin` announcing `total_size` bytes, tagged with `run_id`;
    /// data must then come in file order.
    pub fn begin(&mut self, total_size: u64, run_id: [u8; 16]) -> Result<(), Error> {
        self.start(VERSION, total_size, run_id)
    }

    /// Starts a version-2 run: a file of at most `size_bound` bytes, written at any offsets,
    /// whose size `end` takes from the furthest byte sent.
    pub fn begin_unsized(&mut self, size_bound: u64, run_id: [u8; 16]) -> Result<(), Error> {
        self.start(VERSION_UNSIZED, size_bound, run_id)
    }

    fn start(&mut self, version: u8, total_size: u64, run_id: [u8; 16]) -> Result<(), Error> {
        if self.state != EncState::Idle {
            return Err(Error::BadState);
        }
        self.version = version;
        let mut payload = [0u8; BEGIN_PAYLOAD];
        payload[..8].copy_from_slice(&total_size.to_le_bytes());
        payload[8..].copy_from_slice(&run_id);
        self.total_size = total_size;
        self.frame(KIND_BEGIN, 0, &payload)?;
        self.state = EncState::Open;
        Ok(())
    }

    /// Sends file bytes starting at `offset`, split into frames of at most [`MAX_PAYLOAD`] bytes. In a
    /// version-1 run offsets must continue exactly where the previous call ended (the `End` frame's
    /// CRC is then the whole file's); in a version-2 run any offset below the bound goes.
    pub fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        if self.state != EncState::Open {
            return Err(Error::BadState);
        }
        if self.version == VERSION && offset != self.written {
            return Err(Error::NonSequential {
                expected: self.written,
                got: offset,
            });
        }
        let end = match offset.checked_add(data.len() as u64) {
            Some(e) if e <= self.total_size => e,
            _ => {
                return Err(Error::BeyondTotal {
                    total_size: self.total_size,
                });
            }
        };
        let mut at = offset;
        for piece in data.chunks(MAX_PAYLOAD) {
            self.frame(KIND_DATA, at, piece)?;
            self.data_frames = self
                .data_frames
                .checked_add(1)
                .ok_or(Error::TooManyFrames)?;
            self.file_crc.update(piece);
            self.written += piece.len() as u64;
            at += piece.len() as u64;
        }
        self.max_end = self.max_end.max(end);
        Ok(())
    }

    /// Ends the run: sends `End` with the file size, the frame count and the CRC, which it returns.
    /// A version-1 run must have sent the whole announced size; a version-2 run's size is the end of
    /// the furthest data sent.
    pub fn end(&mut self) -> Result<EndInfo, Error> {
        if self.state != EncState::Open {
            return Err(Error::BadState);
        }
        if self.version == VERSION && self.written != self.total_size {
            return Err(Error::Incomplete {
                total_size: self.total_size,
                written: self.written,
            });
        }
        let total_size = if self.version == VERSION {
            self.total_size
        } else {
            self.max_end
        };
        let info = EndInfo {
            total_size,
            data_frames: self.data_frames,
            file_crc: self.file_crc.clone().finalize(),
        };
        let mut payload = [0u8; END_PAYLOAD];
        payload[..8].copy_from_slice(&info.total_size.to_le_bytes());
        payload[8..12].copy_from_slice(&info.data_frames.to_le_bytes());
        payload[12..].copy_from_slice(&info.file_crc.to_le_bytes());
        self.frame(KIND_END, 0, &payload)?;
        self.state = EncState::Ended;
        Ok(info)
    }

    /// Bytes of file data sent so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The frame version of this run.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The underlying sink.
    pub fn into_inner(self) -> S {
        self.sink
    }

    fn frame(&mut self, kind: u8, offset: u64, payload: &[u8]) -> Result<(), Error> {
        let seq = self.seq;
        let next = seq.checked_add(1).ok_or(Error::TooManyFrames)?;
        let mut h = FrameHeader {
            magic: MAGIC,
            version: self.version,
            kind,
            // Callers pass at most MAX_PAYLOAD bytes.
            payload_len: U16::new(payload.len() as u16),
            seq: U32::new(seq),
            offset: U64::new(offset),
            crc: U32::new(0),
        };
        h.crc = U32::new(frame_crc(&h, payload));
        self.sink.write(h.as_bytes())?;
        self.sink.write(payload)?;
        self.seq = next;
        Ok(())
    }
}

fn sink_error(e: Error) -> SinkError {
    match e {
        Error::Sink(s) => s,
        _ => SinkError::Rejected,
    }
}

impl<S: DumpSink> DumpSink for FrameEncoder<S> {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        self.data(self.written, data).map_err(sink_error)
    }
}

impl<S: DumpSink> KdumpSink for FrameEncoder<S> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        self.data(offset, data).map_err(sink_error)
    }
}

/// Why a candidate frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptReason {
    /// Version, kind or payload length invalid.
    BadHeader,
    /// The input ended inside the frame.
    Truncated,
    /// Checksum mismatch.
    CrcMismatch,
    /// Checksum fine but the payload length does not fit the kind.
    BadPayload,
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CorruptReason::BadHeader => "invalid header",
            CorruptReason::Truncated => "truncated",
            CorruptReason::CrcMismatch => "CRC mismatch",
            CorruptReason::BadPayload => "payload length invalid for its kind",
        })
    }
}

/// Header fields of a damaged frame as read; unreliable, for messages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// Kind byte.
    pub kind: u8,
    /// Sequence number.
    pub seq: u32,
    /// Offset field.
    pub offset: u64,
    /// Payload length.
    pub len: u16,
}

/// What the decoder found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A valid `Begin` frame at stream byte `pos`.
    Begin {
        /// Stream byte position of the frame.
        pos: u64,
        /// Frame version: [`VERSION`] or [`VERSION_UNSIZED`].
        version: u8,
        /// Announced file size (version 2: its upper bound).
        total_size: u64,
        /// Run identifier.
        run_id: [u8; 16],
    },
    /// A valid `Data` frame.
    Data {
        /// Stream byte position of the frame.
        pos: u64,
        /// Frame version.
        version: u8,
        /// Sequence number.
        seq: u32,
        /// File offset of the payload.
        offset: u64,
        /// File bytes.
        payload: Vec<u8>,
    },
    /// A valid `End` frame.
    End {
        /// Stream byte position of the frame.
        pos: u64,
        /// Frame version.
        version: u8,
        /// Sequence number.
        seq: u32,
        /// Contents.
        info: EndInfo,
    },
    /// Bytes that started with the magic but are not a valid frame.
    Corrupt {
        /// Stream byte position of the magic.
        pos: u64,
        /// Why it was rejected.
        reason: CorruptReason,
        /// Header fields as read, if the header was complete.
        claimed: Option<Claimed>,
    },
    /// A valid frame whose sequence number is not the expected one (frames lost or repeated); reported
    /// just before that frame's own event.
    SequenceGap {
        /// Sequence number expected.
        expected: u32,
        /// Sequence number received.
        got: u32,
    },
}

/// Decoder counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecoderStats {
    /// Bytes pushed.
    pub bytes_in: u64,
    /// Bytes skipped outside valid frames (noise, damaged frames).
    pub skipped_bytes: u64,
    /// Valid frames.
    pub frames: u64,
    /// Rejected candidate frames.
    pub corrupt_frames: u64,
    /// Sequence number discontinuities.
    pub sequence_gaps: u64,
}

/// Incremental frame decoder: feed arbitrary byte chunks with [`StreamDecoder::push`], drain
/// [`StreamDecoder::next_event`] until it returns `None`, call [`StreamDecoder::finish`] at end of input and
/// drain again.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    start: usize,
    /// Stream position of `buf[0]`.
    base: u64,
    eof: bool,
    expected_seq: Option<u32>,
    pending: Option<Event>,
    stats: DecoderStats,
}

impl StreamDecoder {
    /// A decoder at stream position 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends input bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.stats.bytes_in += bytes.len() as u64;
    }

    /// Marks the end of input: incomplete frames are then reported as truncated.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Counters so far.
    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Stream position of the next unconsumed byte.
    pub fn position(&self) -> u64 {
        self.base + self.start as u64
    }

    fn skip(&mut self, n: usize) {
        self.start += n;
        self.stats.skipped_bytes += n as u64;
    }

    /// The next event, or `None` when more input is needed (or, after `finish`, when all input is used).
    pub fn next_event(&mut self) -> Option<Event> {
        if let Some(ev) = self.pending.take() {
            return Some(ev);
        }
        let avail = &self.buf[self.start..];
        match find_magic(avail) {
            Some(i) => self.skip(i),
            None => {
                // Keep a possible partial magic at the end unless the input is over.
                let keep = if self.eof {
                    0
                } else {
                    avail.len().min(MAGIC.len() - 1)
                };
                self.skip(avail.len() - keep);
                return None;
            }
        }
        let pos = self.position();
        let avail = &self.buf[self.start..];
        let Ok((h, rest)) = FrameHeader::read_from_prefix(avail) else {
            if self.eof {
                self.skip(1);
                self.stats.corrupt_frames += 1;
                return Some(Event::Corrupt {
                    pos,
                    reason: CorruptReason::Truncated,
                    claimed: None,
                });
            }
            return None;
        };
        let len = usize::from(h.payload_len.get());
        let claimed = Some(Claimed {
            kind: h.kind,
            seq: h.seq.get(),
            offset: h.offset.get(),
            len: h.payload_len.get(),
        });
        let reject = |this: &mut Self, reason| {
            this.skip(1);
            this.stats.corrupt_frames += 1;
            Some(Event::Corrupt {
                pos,
                reason,
                claimed,
            })
        };
        let version = h.version;
        if !(VERSION..=VERSION_UNSIZED).contains(&version)
            || !(KIND_BEGIN..=KIND_END).contains(&h.kind)
            || len > MAX_PAYLOAD
        {
            return reject(self, CorruptReason::BadHeader);
        }
        let Some(payload) = rest.get(..len) else {
            if self.eof {
                return reject(self, CorruptReason::Truncated);
            }
            return None;
        };
        if frame_crc(&h, payload) != h.crc.get() {
            return reject(self, CorruptReason::CrcMismatch);
        }
        let seq = h.seq.get();
        let event = match (h.kind, len) {
            (KIND_BEGIN, BEGIN_PAYLOAD) => {
                let mut run_id = [0u8; 16];
                run_id.copy_from_slice(&payload[8..]);
                Event::Begin {
                    pos,
                    version,
                    total_size: le_u64(&payload[..8]),
                    run_id,
                }
            }
            (KIND_DATA, _) => Event::Data {
                pos,
                version,
                seq,
                offset: h.offset.get(),
                payload: payload.to_vec(),
            },
            (KIND_END, END_PAYLOAD) => Event::End {
                pos,
                version,
                seq,
                info: EndInfo {
                    total_size: le_u64(&payload[..8]),
                    data_frames: le_u32(&payload[8..12]),
                    file_crc: le_u32(&payload[12..]),
                },
            },
            _ => return reject(self, CorruptReason::BadPayload),
        };
        self.start += FRAME_HEADER_SIZE + len;
        self.stats.frames += 1;
        let gap = match (&event, self.expected_seq) {
            (Event::Begin { .. }, _) => {
                self.expected_seq = Some(1);
                (seq != 0).then_some(Event::SequenceGap {
                    expected: 0,
                    got: seq,
                })
            }
            (_, Some(expected)) => {
                self.expected_seq = seq.checked_add(1);
                (seq != expected).then_some(Event::SequenceGap { expected, got: seq })
            }
            (_, None) => None,
        };
        if matches!(event, Event::End { .. }) {
            self.expected_seq = None;
        }
        match gap {
            Some(g) => {
                self.stats.sequence_gaps += 1;
                self.pending = Some(event);
                Some(g)
            }
            None => Some(event),
        }
    }
}

fn find_magic(hay: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = hay.get(i..)?.iter().position(|&b| b == MAGIC[0]) {
        let at = i + p;
        let cand = &hay[at..];
        let n = cand.len().min(MAGIC.len());
        if cand[..n] == MAGIC[..n] {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Random-access output for reassembled file bytes.
pub trait WriteAt {
    /// Stores `data` at file offset `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError>;
}

impl WriteAt for Vec<u8> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let end = offset
            .checked_add(data.len() as u64)
            .and_then(|e| usize::try_from(e).ok())
            .ok_or(SinkError::Full)?;
        // `end` fits in usize, so does `offset <= end`.
        let offset = offset as usize;
        if end > self.len() {
            self.try_reserve(end - self.len())
                .map_err(|_| SinkError::Full)?;
            self.resize(end, 0);
        }
        self[offset..end].copy_from_slice(data);
        Ok(())
    }
}

/// Something wrong with a run, with enough context to name the frame or file range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A damaged frame inside the run.
    Corrupt {
        /// Stream byte position.
        pos: u64,
        /// Why it was rejected.
        reason: CorruptReason,
        /// Header fields as read.
        claimed: Option<Claimed>,
    },
    /// Sequence numbers jumped (frames lost) or went backwards (frames repeated).
    SequenceGap {
        /// Expected sequence number.
        expected: u32,
        /// Received sequence number.
        got: u32,
    },
    /// No valid `Begin` frame was seen.
    MissingBegin,
    /// No valid `End` frame was seen.
    MissingEnd,
    /// A `Data` frame lies (partly) beyond the announced file size; it was not written.
    OutOfBounds {
        /// Sequence number.
        seq: u32,
        /// File offset.
        offset: u64,
        /// Payload length.
        len: u64,
    },
    /// A frame of another version than the run's `Begin`; not written.
    VersionMismatch {
        /// Sequence number.
        seq: u32,
        /// The run's version.
        run: u8,
        /// The frame's version.
        frame: u8,
    },
    /// Version 2: `End` gives a size beyond the bound `Begin` announced.
    BeyondBound {
        /// Bound in `Begin`.
        bound: u64,
        /// Size in `End`.
        end: u64,
    },
    /// Version 2: data arrived beyond the size `End` gives (the output stops at that size).
    DataBeyondEnd {
        /// Size in `End`.
        end: u64,
        /// End of the furthest data received.
        received_end: u64,
    },
    /// Version 2: all data arrived but its CRC is not the one `End` carries.
    CrcMismatch {
        /// CRC in `End`.
        announced: u32,
        /// CRC of the payloads received, in sequence order.
        received: u32,
    },
    /// `Begin` and `End` disagree on the file size.
    SizeMismatch {
        /// Size in `Begin`.
        begin: u64,
        /// Size in `End`.
        end: u64,
    },
    /// `End` announces a different number of `Data` frames than were received.
    FrameCountMismatch {
        /// Count in `End`.
        announced: u32,
        /// Valid data frames received.
        received: u32,
    },
    /// File bytes `start..end` never arrived.
    Hole {
        /// First missing byte.
        start: u64,
        /// End of the missing range (exclusive).
        end: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::Corrupt {
                pos,
                reason,
                claimed,
            } => {
                write!(f, "bad frame at stream byte {pos}: {reason}")?;
                if let Some(c) = claimed {
                    write!(
                        f,
                        " (claims kind {}, seq {}, offset {:#x}, {} bytes)",
                        c.kind, c.seq, c.offset, c.len
                    )?;
                }
                Ok(())
            }
            Problem::SequenceGap { expected, got } if got > expected => write!(
                f,
                "missing frame(s): seq {expected}..={} not received",
                got - 1
            ),
            Problem::SequenceGap { expected, got } => {
                write!(
                    f,
                    "frame seq {got} repeated or out of order (expected {expected})"
                )
            }
            Problem::MissingBegin => f.write_str("no valid Begin frame"),
            Problem::MissingEnd => f.write_str("no valid End frame (stream incomplete)"),
            Problem::OutOfBounds { seq, offset, len } => write!(
                f,
                "data frame seq {seq} at offset {offset:#x}+{len:#x} is beyond the announced size"
            ),
            Problem::VersionMismatch { seq, run, frame } => write!(
                f,
                "frame seq {seq} is version {frame} in a version {run} run; not written"
            ),
            Problem::BeyondBound { bound, end } => {
                write!(
                    f,
                    "End gives {end} bytes, beyond the bound {bound} of Begin"
                )
            }
            Problem::DataBeyondEnd { end, received_end } => write!(
                f,
                "data received up to {received_end:#x}, beyond the size {end:#x} End gives"
            ),
            Problem::CrcMismatch {
                announced,
                received,
            } => write!(
                f,
                "data CRC32 mismatch: End frame says {announced:08x}, the frames received give {received:08x}"
            ),
            Problem::SizeMismatch { begin, end } => {
                write!(f, "Begin announces {begin} bytes but End {end}")
            }
            Problem::FrameCountMismatch {
                announced,
                received,
            } => write!(
                f,
                "End announces {announced} data frames, {received} valid ones received"
            ),
            Problem::Hole { start, end } => write!(
                f,
                "missing file bytes {start:#x}..{end:#x} ({} bytes)",
                end - start
            ),
        }
    }
}

/// What the caller should do after [`Reassembler::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep feeding events.
    Continue,
    /// A new run began: discard everything written so far (truncate the output), then continue.
    Restart,
    /// The `End` frame arrived: the run is over.
    Finished,
}

/// CRC of the `Data` payloads written, in arrival order.
#[derive(Clone)]
struct PayloadCrc(Digest<'static, u32>);

impl Default for PayloadCrc {
    fn default() -> Self {
        PayloadCrc(CRC32.digest())
    }
}

impl fmt::Debug for PayloadCrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadCrc({:08x})", self.0.clone().finalize())
    }
}

/// Rebuilds the file from decoder events: writes data at its offsets, tracks received ranges and problems.
///
/// Policy: the last `Begin` wins (a new `Begin` restarts reassembly); damaged frames before the first
/// `Begin` are treated as noise if a `Begin` follows; events after `End` are ignored. Frames of
/// another version than the run's `Begin` are reported and not written.
#[derive(Debug, Clone, Default)]
pub struct Reassembler {
    begin: Option<(u64, [u8; 16])>,
    /// The run's version (from `Begin`; 0 before one).
    version: u8,
    payload_crc: PayloadCrc,
    end: Option<EndInfo>,
    data_frames: u32,
    received: Vec<(u64, u64)>,
    max_end: u64,
    problems: Vec<Problem>,
    pre_begin: Vec<Problem>,
    saw_data: bool,
    restarts: u32,
    cap: Option<u64>,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one decoder event, writing `Data` payloads to `out`. Fails only if `out` fails.
    pub fn handle(&mut self, event: &Event, out: &mut impl WriteAt) -> Result<Action, SinkError> {
        if self.end.is_some() {
            return Ok(Action::Finished);
        }
        match *event {
            Event::Begin {
                version,
                total_size,
                run_id,
                ..
            } => {
                let restart = self.begin.is_some() || self.saw_data;
                let restarts = self.restarts + u32::from(restart);
                *self = Self {
                    begin: Some((total_size, run_id)),
                    version,
                    restarts,
                    ..Self::default()
                };
                if restart {
                    return Ok(Action::Restart);
                }
            }
            Event::Data {
                version,
                seq,
                offset,
                ref payload,
                ..
            } => {
                self.saw_data = true;
                if self.foreign_version(seq, version) {
                    return Ok(Action::Continue);
                }
                let len = payload.len() as u64;
                let end = offset.checked_add(len);
                let limit = self.begin.map_or(u64::MAX, |(t, _)| t);
                match end {
                    Some(end) if end <= limit => {
                        out.write_at(offset, payload)?;
                        self.payload_crc.0.update(payload);
                        self.data_frames = self.data_frames.saturating_add(1);
                        self.mark(offset, end);
                    }
                    _ => self
                        .problems
                        .push(Problem::OutOfBounds { seq, offset, len }),
                }
            }
            Event::End {
                version, seq, info, ..
            } => {
                if self.foreign_version(seq, version) {
                    return Ok(Action::Continue);
                }
                self.end = Some(info);
                match self.begin {
                    Some((begin, _)) if version == VERSION && begin != info.total_size => {
                        self.problems.push(Problem::SizeMismatch {
                            begin,
                            end: info.total_size,
                        })
                    }
                    Some((bound, _)) if version == VERSION_UNSIZED && info.total_size > bound => {
                        self.problems.push(Problem::BeyondBound {
                            bound,
                            end: info.total_size,
                        })
                    }
                    _ => {}
                }
                if version == VERSION_UNSIZED && self.max_end > info.total_size {
                    self.problems.push(Problem::DataBeyondEnd {
                        end: info.total_size,
                        received_end: self.max_end,
                    });
                }
                return Ok(Action::Finished);
            }
            Event::Corrupt {
                pos,
                reason,
                claimed,
            } => {
                let p = Problem::Corrupt {
                    pos,
                    reason,
                    claimed,
                };
                if self.begin.is_some() || self.saw_data {
                    self.problems.push(p);
                } else {
                    self.pre_begin.push(p);
                }
            }
            Event::SequenceGap { expected, got } => {
                if self.begin.is_some() {
                    self.problems.push(Problem::SequenceGap { expected, got });
                }
            }
        }
        Ok(Action::Continue)
    }

    /// Whether a frame's version differs from its run's (then reported, and the frame ignored).
    fn foreign_version(&mut self, seq: u32, version: u8) -> bool {
        let foreign = self.begin.is_some() && version != self.version;
        if foreign {
            self.problems.push(Problem::VersionMismatch {
                seq,
                run: self.version,
                frame: version,
            });
        }
        foreign
    }

    fn mark(&mut self, start: u64, end: u64) {
        if start == end {
            return;
        }
        self.max_end = self.max_end.max(end);
        if let Some(last) = self.received.last_mut()
            && last.1 == start
        {
            last.1 = end;
            return;
        }
        // Insert keeping the list sorted and merged.
        let i = self.received.partition_point(|&(_, e)| e < start);
        let mut j = i;
        let (mut s, mut e) = (start, end);
        while let Some(&(rs, re)) = self.received.get(j) {
            if rs > e {
                break;
            }
            s = s.min(rs);
            e = e.max(re);
            j += 1;
        }
        self.received.splice(i..j, [(s, e)]);
    }

    /// The file size: from `End`, else `Begin`, else the end of the furthest data received;
    /// never more than a [`Self::cap_total`] limit.
    pub fn total_size(&self) -> u64 {
        self.announced_size().min(self.cap.unwrap_or(u64::MAX))
    }

    /// The size the run's frames announce (`End`, else version 1's `Begin`, else the furthest data).
    pub fn announced_size(&self) -> u64 {
        let begin = self.begin.filter(|_| self.version == VERSION).map(|b| b.0);
        self.end
            .map(|e| e.total_size)
            .or(begin)
            .unwrap_or(self.max_end)
    }

    /// The run's frame version, once its `Begin` arrived.
    pub fn version(&self) -> Option<u8> {
        self.begin.map(|_| self.version)
    }

    /// CRC-32 of the `Data` payloads written so far, in arrival order (what a complete run's `End`
    /// carries).
    pub fn payload_crc(&self) -> u32 {
        self.payload_crc.0.clone().finalize()
    }

    /// The end of the furthest data received.
    pub fn received_end(&self) -> u64 {
        self.max_end
    }

    /// Whether file bytes `start..end` all arrived.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        start >= end || self.received.iter().any(|&(s, e)| s <= start && end <= e)
    }

    /// Limits [`Self::total_size`] (and so [`Self::holes`]) to `limit`, for a caller that found
    /// the announced size implausible.
    pub fn cap_total(&mut self, limit: u64) {
        self.cap = Some(limit);
    }

    /// The run id from `Begin`.
    pub fn run_id(&self) -> Option<[u8; 16]> {
        self.begin.map(|b| b.1)
    }

    /// The `End` frame, once received.
    pub fn end(&self) -> Option<EndInfo> {
        self.end
    }

    /// Valid data frames written.
    pub fn data_frames(&self) -> u32 {
        self.data_frames
    }

    /// How many times a new `Begin` restarted reassembly.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Ranges of `0..total_size()` that no data frame covered.
    pub fn holes(&self) -> Vec<(u64, u64)> {
        let total = self.total_size();
        let mut holes = Vec::new();
        let mut at = 0u64;
        for &(s, e) in &self.received {
            if s >= total {
                break;
            }
            if s > at {
                holes.push((at, s));
            }
            at = at.max(e);
        }
        if at < total {
            holes.push((at, total));
        }
        holes
    }

    /// Every problem of the run so far, including missing `Begin`/`End`, frame-count mismatch and holes,
    /// and for a version-2 run without holes the data CRC. Empty means the file is complete (for a
    /// version-1 run the caller still checks the whole-file CRC from [`Self::end`] on its output).
    pub fn problems(&self) -> Vec<Problem> {
        let mut all = Vec::new();
        if self.begin.is_none() {
            all.push(Problem::MissingBegin);
            all.extend_from_slice(&self.pre_begin);
        }
        all.extend_from_slice(&self.problems);
        match self.end {
            None => all.push(Problem::MissingEnd),
            Some(info) if info.data_frames != self.data_frames => {
                all.push(Problem::FrameCountMismatch {
                    announced: info.data_frames,
                    received: self.data_frames,
                })
            }
            Some(_) => {}
        }
        let holes = self.holes();
        if let Some(info) = self.end
            && self.version == VERSION_UNSIZED
            && holes.is_empty()
            && info.file_crc != self.payload_crc()
        {
            all.push(Problem::CrcMismatch {
                announced: info.file_crc,
                received: self.payload_crc(),
            });
        }
        all.extend(
            holes
                .into_iter()
                .map(|(start, end)| Problem::Hole { start, end }),
        );
        all
    }
}
