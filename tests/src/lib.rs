//! The host harness of rkdump, shared by the QEMU scenarios and `xtask` (run, e2e, demo, bench):
//! one QEMU runner and machine builder ([`qemu`]) with its QMP client ([`qmp`]), the timestamped console and what it says
//! ([`console`]), one dump verifier ([`verify`]), one way to call rkdumpctl and Debian's tools
//! ([`tools`]), disk images ([`disk`]), fabricated crashes ([`fabricate`]) and the scenario list ([`scenarios`]) that
//! `cargo xtask test` runs against the built `rkdump.elf`.

pub mod console;
pub mod disk;
pub mod fabricate;
pub mod qemu;
pub mod qmp;
pub mod scenarios;
pub mod tools;
pub mod verify;
