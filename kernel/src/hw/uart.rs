//! 16550 UART handles (`uart_16550`, port I/O backend) on the serial ports the command line
//! names: the console and the serial dump target.

use rkdump_boot::cmdline::SerialPort;
use uart_16550::Uart16550;
use uart_16550::backend::PioBackend;

/// A handle on the 16550 at `port`, not yet configured (`None` if the crate refuses the
/// address). Two handles on one port only interleave bytes: the console and the dump stream
/// keep to different ports (checked where the dump target is chosen).
pub fn open(port: SerialPort) -> Option<Uart16550<PioBackend>> {
    // SAFETY: `port` is a COM port or the `uart8250,io,<port>` the operator named on the command
    // line as a 16550; the handle only accesses that UART's eight registers, which nothing but
    // rkdump's console or dump stream uses.
    unsafe { Uart16550::new_port(port.io_base()) }.ok()
}
