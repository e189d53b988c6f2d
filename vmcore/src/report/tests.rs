//! Host tests of the crash report: synthetic printk rings (empty, wrapped, corrupted,
//! truncated), synthetic kallsyms tables, the stack scan and the rendering.

mod kallsyms;
mod printk;
mod render;
mod task;
