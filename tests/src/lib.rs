//! QEMU scenarios for rkdump, driven from the host: a small runner that boots an image with a
//! hard timeout and timestamps every console line with the host clock, and the scenario list
//! `cargo xtask test` runs against the built `rkdump.elf`.

pub mod fabricate;
pub mod qemu;
pub mod scenarios;
