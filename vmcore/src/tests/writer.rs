//! The streaming writer: bounce-buffer sizes, progress, error context.

use alloc::vec;
use alloc::vec::Vec;

use super::{HDR_ADDR, kf_memory};
use crate::mem::{DumpSink, OldMemError, SinkError};
use crate::prepare_dump;
use crate::writer::{Error, write_vmcore};

#[test]
fn buffer_size_does_not_change_output() {
    let (mut mem, _) = kf_memory(2, &[1], &[(0x10_0000, 0x2_0000), (0x20_0100, 0x1f00)]);
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let mut a = Vec::new();
    let mut calls = Vec::new();
    let n = write_vmcore(
        &plan.layout,
        &mut mem,
        &mut a,
        &mut [0u8; 4096],
        &mut |d, t| calls.push((d, t)),
    )
    .unwrap();
    assert_eq!(n, plan.layout.total_size);
    assert_eq!(a.len() as u64, n);
    assert_eq!(calls.first(), Some(&(0, n)));
    assert_eq!(calls.last(), Some(&(n, n)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    let mut b = Vec::new();
    write_vmcore(
        &plan.layout,
        &mut mem,
        &mut b,
        &mut [0u8; 1000],
        &mut |_, _| {},
    )
    .unwrap();
    assert!(a == b);
    assert_eq!(
        write_vmcore(&plan.layout, &mut mem, &mut b, &mut [], &mut |_, _| {}),
        Err(Error::EmptyBuffer)
    );
}

struct Limited(u64);

impl DumpSink for Limited {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        self.0 = self
            .0
            .checked_sub(data.len() as u64)
            .ok_or(SinkError::Full)?;
        Ok(())
    }
}

#[test]
fn errors_name_the_file_offset() {
    let (mut mem, _) = kf_memory(1, &[0], &[(0x10_0000, 0x2_0000)]);
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let mut buf = vec![0u8; 4096];
    // The sink fills up after the header and note areas and one page.
    let room = plan.layout.data_offset() + 4096;
    assert_eq!(
        write_vmcore(
            &plan.layout,
            &mut mem,
            &mut Limited(room),
            &mut buf,
            &mut |_, _| {}
        ),
        Err(Error::Sink {
            file_offset: room,
            source: SinkError::Full
        })
    );
    // Old memory disappears: an empty fake has the header only.
    let mut empty = crate::testing::FakeMemory::new();
    let r = write_vmcore(
        &plan.layout,
        &mut empty,
        &mut Vec::new(),
        &mut buf,
        &mut |_, _| {},
    );
    assert_eq!(
        r,
        Err(Error::OldMem {
            file_offset: plan.layout.data_offset(),
            source: OldMemError::OutOfRange {
                phys: 0x100_0000,
                len: 4096
            }
        })
    );
}
