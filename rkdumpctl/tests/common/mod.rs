//! What the `rkdumpctl` integration tests share: a fresh folder per test, the built binary run
//! with arguments, output as text.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An empty folder `rkdumpctl-<name>` under cargo's per-target temporary directory, created
/// anew (whatever an earlier run left is removed).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rkdumpctl-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `rkdumpctl` binary of this build with `args` and collects its output.
pub fn rkdumpctl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_rkdumpctl"))
        .args(args)
        .output()
        .unwrap()
}

/// Command output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
