//! `rkdump.level=`: runs the page filter (`rkdump_vmcore::filter`) over the crashed kernel's
//! page structs before the dump and swaps in the filtered ELF layout, with the console lines of
//! docs/interface.md#console (`filter ...`). The decisions live in the vmcore crate.

use rkdump_vmcore::DumpPlan;
use rkdump_vmcore::filter::{Level, apply_elf};

use crate::clock;
use crate::physmem::OldMem;
use crate::{rkerror, rkline};

/// Applies `level` (0..31) to `plan`; level 0 returns it untouched (byte-identical to
/// `/proc/vmcore`). A level that cannot be applied falls back to level 1 with an error line.
pub fn apply(mut plan: DumpPlan, mem: &mut OldMem, level: u8) -> DumpPlan {
    let level = Level::from_bits_truncate(level);
    if level.is_empty() {
        return plan;
    }
    let t0 = clock::now_us();
    let out = apply_elf(&plan, mem, level, &mut |_, _| {});
    let ms = (clock::now_us() - t0) / 1000;
    if let Some(why) = &out.fallback {
        rkerror!(
            "filter: level {} not applied: {why}; dumping at level 1",
            level.bits()
        );
    }
    if level.contains(Level::ZERO) {
        rkline!("filter: zero pages (bit 1) are kept in ELF output");
    }
    let s = out.stats;
    rkline!(
        "filter level={} examined={} excluded={} cache={} cache_private={} user={} free={} hwpoison={} offline={} kept_short_runs={} loads={} ms={}",
        out.level.bits(),
        s.examined,
        s.excluded(),
        s.cache,
        s.cache_private,
        s.user,
        s.free,
        s.hwpoison,
        s.offline,
        out.written_excluded_pages,
        out.pieces,
        ms
    );
    plan.layout = out.layout;
    plan
}
