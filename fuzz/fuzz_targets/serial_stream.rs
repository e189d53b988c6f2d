//! The framed serial stream as `rkdumpctl recv` decodes it, fed in uneven pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::stream::{Event, Reassembler, StreamDecoder};

/// Output bound, as the tool bounds it: data frames beyond 16 MiB are not written.
const OUT_LIMIT: u64 = 16 << 20;

fn drain(dec: &mut StreamDecoder, re: &mut Reassembler, out: &mut Vec<u8>) {
    while let Some(ev) = dec.next_event() {
        if let Event::Data {
            offset,
            ref payload,
            ..
        } = ev
            && offset.saturating_add(payload.len() as u64) > OUT_LIMIT
        {
            continue;
        }
        let _ = re.handle(&ev, out);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut dec = StreamDecoder::new();
    let mut re = Reassembler::new();
    let mut out: Vec<u8> = Vec::new();
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for piece in data.chunks(step) {
        dec.push(piece);
        drain(&mut dec, &mut re, &mut out);
    }
    dec.finish();
    drain(&mut dec, &mut re, &mut out);
    let _ = re.problems();
    let _ = re.holes();
});
