//! The serial console: one 16550 UART (COM1 unless `console=` names another) behind one lock,
//! the `rkdump: ` machine-readable lines of interfaces.md, and the `log` backend for the
//! human-readable ones. Every wait on the UART is bounded: a dead UART drops the console, never
//! the dump.

use core::fmt::{self, Write};

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

/// Opens the UART at `port` with `baud` (8N1, FIFO on). A port that does not answer leaves the
/// console silent.
pub fn init(port: u16, baud: u32) {
    // SAFETY: the legacy COM ports are owned by the console from here on; nothing else in
    // rkdump touches this port range (the dump stream uses a different UART).
    let uart = unsafe { Uart16550::new_port(port) }
        .ok()
        .and_then(|mut uart| {
            let config = Config {
                baud_rate: BaudRate::from_integer(baud),
                ..Config::DEFAULT
            };
            uart.init(config).ok().map(|()| uart)
        });
    CONSOLE.lock().uart = uart;
}

/// Breaks the console lock from an exception handler that may have interrupted its holder.
pub fn emergency_unlock() {
    if CONSOLE.is_locked() {
        // SAFETY: called only from the exception path on the single running CPU; the
        // interrupted holder never resumes (exceptions end the run) or is an NMI-interrupted
        // writer whose partial line is acceptable damage.
        unsafe { CONSOLE.force_unlock() };
    }
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
    let mut c = CONSOLE.lock();
    let _ = c.write_str("rkdump: ");
    let _ = c.write_fmt(args);
    let _ = c.write_str("\n");
}

/// Writes raw text (no prefix, no newline).
pub fn raw(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Waits until the UART has shifted out its last bit (before a reset or power-off, QEMU would
/// otherwise lose the last line).
pub fn drain() {
    CONSOLE.lock().drain();
}

/// `rkdump: ...` machine-readable console line (interfaces.md).
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
