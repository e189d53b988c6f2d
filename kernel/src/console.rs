//! The serial console: one 16550 UART (COM1 unless `console=` names another) behind one lock,
//! the `rkdump: ` machine-readable lines of docs/interface.md#console, and the `log` backend for the
//! human-readable ones. Every wait on the UART is bounded: a dead UART drops the console, never
//! the dump. After [`take_over`] (exception and panic paths) a console lock held by interrupted
//! code is not waited for: lines go out through a second handle on the same UART.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use rkdump_boot::cmdline::SerialPort;
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::LSR;
use uart_16550::{BaudRate, Config, Uart16550};

/// Polls of a full transmitter before the console is declared dead.
const SEND_SPIN_LIMIT: u32 = 2_000_000;

struct Console {
    uart: Option<Uart16550<PioBackend>>,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console { uart: None });

/// The console's UART base port (0: none yet), for the take-over path.
static PORT: AtomicU16 = AtomicU16::new(0);
/// Set by [`take_over`]: the lock may be held by code that never resumes.
static TAKEN_OVER: AtomicBool = AtomicBool::new(false);

/// Opens the UART at `port` with `baud` (8N1, FIFO on). A port that does not answer leaves the
/// console silent.
pub fn init(port: SerialPort, baud: u32) {
    let uart = crate::hw::uart::open(port).and_then(|mut uart| {
        let config = Config {
            baud_rate: BaudRate::from_integer(baud),
            ..Config::DEFAULT
        };
        uart.init(config).ok().map(|()| uart)
    });
    let mut c = CONSOLE.lock();
    PORT.store(
        if uart.is_some() { port.io_base() } else { 0 },
        Ordering::SeqCst,
    );
    c.uart = uart;
}

/// Lets an exception or panic report get out even if it interrupted a console writer on this
/// (single) CPU: from now on a held console lock is bypassed, not waited for. The interrupted
/// holder never resumes (exceptions and panics end the run) or is an NMI-interrupted writer
/// whose partial line is acceptable damage.
pub fn take_over() {
    TAKEN_OVER.store(true, Ordering::SeqCst);
}

/// Runs `f` on the console: under its lock, or, after [`take_over`] with the lock held, on a
/// second handle on the same UART (already configured by [`init`]).
fn with_console(f: impl FnOnce(&mut Console)) {
    if !TAKEN_OVER.load(Ordering::SeqCst) {
        return f(&mut CONSOLE.lock());
    }
    if let Some(mut c) = CONSOLE.try_lock() {
        return f(&mut c);
    }
    let uart = match PORT.load(Ordering::SeqCst) {
        0 => None,
        base => crate::hw::uart::open(SerialPort::Io(base)),
    };
    f(&mut Console { uart });
}

impl Console {
    fn send(&mut self, mut bytes: &[u8]) {
        let Some(uart) = self.uart.as_mut() else {
            return;
        };
        let mut spins = 0;
        while !bytes.is_empty() {
            let n = uart.send_bytes(bytes);
            if n == 0 {
                spins += 1;
                if spins > SEND_SPIN_LIMIT {
                    self.uart = None;
                    return;
                }
                core::hint::spin_loop();
            } else {
                spins = 0;
                bytes = &bytes[n..];
            }
        }
    }

    fn drain(&mut self) {
        let Some(uart) = self.uart.as_mut() else {
            return;
        };
        for _ in 0..SEND_SPIN_LIMIT {
            if uart.lsr().contains(LSR::TRANSMITTER_EMPTY) {
                return;
            }
            core::hint::spin_loop();
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.send(s.as_bytes());
        Ok(())
    }
}

/// Writes one `rkdump: <text>` line.
pub fn line(args: fmt::Arguments<'_>) {
    with_console(|c| {
        let _ = c.write_str("rkdump: ");
        let _ = c.write_fmt(args);
        let _ = c.write_str("\n");
    });
}

/// Writes raw text (no prefix, no newline).
pub fn raw(args: fmt::Arguments<'_>) {
    with_console(|c| {
        let _ = c.write_fmt(args);
    });
}

/// Waits until the UART has shifted out its last bit (before a reset or power-off, QEMU would
/// otherwise lose the last line).
pub fn drain() {
    with_console(Console::drain);
}

/// `rkdump: ...` machine-readable console line (docs/interface.md#console).
#[macro_export]
macro_rules! rkline {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}

/// `rkdump: error: ...` line: every failure, fatal or not.
#[macro_export]
macro_rules! rkerror {
    ($($arg:tt)*) => { $crate::console::line(format_args!("error: {}", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            raw(format_args!("[{:5}] {}\n", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the console as the `log` backend.
pub fn init_logger(level: log::LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
