//! The framed serial stream as `rkdumpctl recv` decodes it, fed in uneven pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::stream::{Reassembler, StreamDecoder};

fuzz_target!(|data: &[u8]| {
    let mut dec = StreamDecoder::new();
    let mut re = Reassembler::new();
    // The output is bounded like the tool bounds it: data beyond 16 MiB is not written.
    let mut out: Vec<u8> = Vec::new();
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for piece in data.chunks(step) {
        dec.push(piece);
        while let Some(ev) = dec.next_event() {
            if let rkdump_vmcore::stream::Event::Data {
                offset,
                ref payload,
                ..
            } = ev
                && offset.saturating_add(payload.len() as u64) > 16 << 20
            {
                continue;
            }
            let _ = re.handle(&ev, &mut out);
        }
    }
    dec.finish();
    while let Some(ev) = dec.next_event() {
        if let rkdump_vmcore::stream::Event::Data {
            offset,
            ref payload,
            ..
        } = ev
            && offset.saturating_add(payload.len() as u64) > 16 << 20
        {
            continue;
        }
        let _ = re.handle(&ev, &mut out);
    }
    let _ = re.problems();
    let _ = re.holes();
});
