//! `cargo xtask bench` (issue 8): rkdump against Linux kdump (the peer) and against the dump
//! disk's raw limit, in one QEMU configuration with one first-kernel crash.
//!
//! Every configuration runs the e2e harness (`crate::e2e`): Debian's kernel as the first kernel
//! in QEMU (TCG, q35, 2 vCPUs), the marker filling a quarter of guest RAM, `kexec -p` (kexec_load,
//! Debian's default), `echo c > /proc/sysrq-trigger`. The dump disk is the same in every
//! configuration: an NVMe controller behind a pcie-root-port, raw image, `cache=unsafe`.
//!
//! * `rkdump`: rkdump's bzImage with `crashkernel=16M`; durable = `rkdump: dump complete`
//!   (written after the flush); the dump is then extracted and verified on the host.
//! * `peer-raw`: Debian's own kernel as capture kernel with kdump-tools' command line
//!   (`reset_devices nr_cpus=1 irqpoll nousb`) and a busybox initramfs whose /init copies
//!   /proc/vmcore raw to the disk (`dd bs=1M conv=fsync`); durable = `E2E: vmcore saved`; the
//!   marker pages are checked in the copy on the host.
//! * `peer-mkdf`: the same, with kdump-tools' collector `makedumpfile -c -d 31` (as a flattened
//!   stream, `-F`, into `dd conv=fsync`); durable = `E2E: makedumpfile done`; the stream is
//!   walked on the host (its length is the bytes written).
//! * `rawdd`: no crash; the first kernel writes the same number of bytes (whole blocks) to the
//!   same disk with `dd oflag=direct bs=4M` (`--rawdd-bs` for other sizes).
//!
//! Times are host-clock differences between console lines (`rkdump_tests::qemu` stamps each
//! line when the host reads it); guest clocks appear only as cross-checks in the per-run list.
//! Writes `target/bench/results.md` and `target/bench/chart.svg` and prints the table.
//!
//! One module per job: [`cli`] options, [`cases`] configurations and their e2e cases,
//! [`measure`] console measurement, [`procstat`] /proc probing, [`stats`] statistics,
//! [`markdown`] and [`svg`] the reports, [`slope`] time against RAM size, [`run`] the
//! orchestration.

mod anchors;
mod cases;
mod cli;
mod markdown;
mod measure;
mod procstat;
mod run;
mod slope;
mod stats;
mod svg;

pub use cli::Args;
pub use run::main;
