//! Progress of long copies (`save`, `recv`): an indicatif bar on stderr when stderr is a
//! terminal, otherwise one plain line per 10 % (logs, the journal, pipes stay readable).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes.
enum Out {
    Bar(ProgressBar),
    Lines(Box<dyn FnMut(&str)>),
}

/// Progress of one copy of `total` bytes (0: not known yet).
pub struct Progress {
    out: Out,
    label: String,
    total: u64,
    pos: u64,
    next_pct: u64,
}

impl Progress {
    /// A bar if stderr is a terminal, else plain lines on stderr.
    pub fn new(label: &str, total: u64) -> Self {
        let out = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:40}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            Out::Bar(bar)
        } else {
            Out::Lines(Box::new(|l: &str| eprintln!("{l}")))
        };
        Self::with_out(label, total, out)
    }

    /// Plain lines handed to `sink` (tests).
    #[cfg(test)]
    fn lines(label: &str, total: u64, sink: impl FnMut(&str) + 'static) -> Self {
        Self::with_out(label, total, Out::Lines(Box::new(sink)))
    }

    fn with_out(label: &str, total: u64, out: Out) -> Self {
        Self {
            out,
            label: label.to_string(),
            total,
            pos: 0,
            next_pct: 10,
        }
    }

    /// Sets the total once it is known.
    pub fn set_total(&mut self, total: u64) {
        if total != self.total {
            self.total = total;
            if let Out::Bar(b) = &self.out {
                b.set_length(total);
            }
        }
    }

    /// Adds `n` bytes done.
    pub fn inc(&mut self, n: u64) {
        self.set_position(self.pos.saturating_add(n));
    }

    /// Sets the bytes done.
    pub fn set_position(&mut self, pos: u64) {
        self.pos = pos;
        match &mut self.out {
            Out::Bar(b) => b.set_position(pos),
            Out::Lines(sink) => {
                if self.total == 0 {
                    return;
                }
                let pct = pos.saturating_mul(100) / self.total;
                // One line for the highest 10 % step reached (never a burst of lines).
                if pct >= self.next_pct && self.next_pct <= 100 {
                    let step = (pct.min(100) / 10) * 10;
                    sink(&format!(
                        "{}: {step}% ({} of {} bytes)",
                        self.label, pos, self.total
                    ));
                    self.next_pct = step + 10;
                }
            }
        }
    }

    /// Ends the bar (plain mode has already said 100 %).
    pub fn finish(&mut self) {
        if let Out::Bar(b) = &self.out {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn plain_lines_every_ten_percent() {
        let got = Rc::new(RefCell::new(Vec::<String>::new()));
        let sink = Rc::clone(&got);
        let mut p = Progress::lines("save", 0, move |l| sink.borrow_mut().push(l.into()));
        p.inc(50); // total unknown: nothing
        p.set_total(1000);
        for _ in 0..19 {
            p.inc(50);
        }
        p.finish();
        let got = got.borrow();
        assert_eq!(got.len(), 10, "{got:?}");
        assert_eq!(got[0], "save: 10% (100 of 1000 bytes)");
        assert_eq!(got[9], "save: 100% (1000 of 1000 bytes)");
        // A jump over several steps gives one line.
        let n = Rc::new(RefCell::new(0));
        let c = Rc::clone(&n);
        let mut q = Progress::lines("recv", 100, move |_| *c.borrow_mut() += 1);
        q.set_position(95);
        q.set_position(100);
        assert_eq!(*n.borrow(), 2);
    }
}
