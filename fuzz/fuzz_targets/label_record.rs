//! The dump-disk label and record as `rkdumpctl save` reads them. The input is a compact disk:
//! its first 4 KiB are the label (LBA 0-7), the rest is the disk from the label's `data_offset`
//! on (record header, then data and checksum table), so the fuzzer need not fill the gap. When
//! byte 64 (the first after the label structure, zero on disk) is odd, the harness seals the
//! label and header CRC-32s first, so mutations reach
//! the field checks behind them instead of dying at the CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_devices::label::{self, CRC32, Label, ReadFailed};

/// Label: CRC-32 at 0x3C over 0x00..0x3C. Record header: CRC-32 at 0xAC over 0x00..0xAC.
fn seal(bytes: &mut [u8], crc_at: usize) {
    if bytes.len() >= crc_at + 4 {
        let crc = CRC32.checksum(&bytes[..crc_at]);
        bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

fuzz_target!(|input: &[u8]| {
    let mut input = input.to_vec();
    if input.get(64).is_some_and(|b| b & 1 == 1) {
        seal(&mut input, 0x3C);
        if let Some(rec) = input.get_mut(label::LABEL_BYTES..) {
            seal(rec, 0xAC);
        }
    }
    let Some((head, record)) = input.split_at_checked(label::LABEL_BYTES) else {
        return;
    };
    let Ok(lab) = Label::parse(head) else { return };
    let disk_size = lab.data_offset.saturating_add(record.len() as u64);
    if lab.check_device(disk_size).is_err() {
        return;
    }
    let Some(hdr) = record.get(..label::HEADER_BYTES) else {
        return;
    };
    let _ = label::verify_record(&lab, hdr, |off, buf| {
        let at = off.checked_sub(lab.data_offset).ok_or(ReadFailed)?;
        let at = usize::try_from(at).map_err(|_| ReadFailed)?;
        let src = record
            .get(at..)
            .and_then(|r| r.get(..buf.len()))
            .ok_or(ReadFailed)?;
        buf.copy_from_slice(src);
        Ok(())
    });
});
