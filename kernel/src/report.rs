//! The crash report before the dump: `rkdump_vmcore::report` over old memory, printed on the
//! console between `rkdump: report begin` and `rkdump: report end ms=<T>` (T covers reading,
//! resolving and printing). Returns the text for the dump record's report area (the same
//! report with as many of the newest log lines as fit there).

use alloc::string::String;

use rkdump_devices::report_area;
use rkdump_vmcore::DumpPlan;
use rkdump_vmcore::report;

use crate::clock;
use crate::console;
use crate::physmem::OldMem;
use crate::rkline;

/// Time after which a search for the symbol tables gives up (the report's whole target is
/// 100 ms).
const SEARCH_BUDGET_US: u64 = 60_000;

/// Builds, prints and returns the report. Never fails: what cannot be read is an
/// `rkdump: error: report: ...` line inside it.
pub fn run(mem: &mut OldMem, plan: &DumpPlan, lines: u32) -> String {
    let t0 = clock::now_us();
    rkline!("report begin");
    // A search for kallsyms by structure (kernels that do not publish the tables) may cover
    // tens of MiB: it stops when the report has used its budget.
    let give_up = || clock::now_us().saturating_sub(t0) > SEARCH_BUDGET_US;
    let r = report::from_old_memory(mem, &plan.header, &plan.notes, lines as usize, &give_up);
    let t1 = clock::now_us();
    let text = report::render(&r);
    let t2 = clock::now_us();
    console::raw(format_args!("{text}"));
    let t3 = clock::now_us();
    let for_record = report::render_within(&r, report_area::MAX_TEXT);
    let t4 = clock::now_us();
    rkline!("report end ms={}", (t4 - t0) / 1000);
    log::info!(
        "report: read {} us, render {} us, print {} us, record text {} us",
        t1 - t0,
        t2 - t1,
        t3 - t2,
        t4 - t3
    );
    for_record
}
