//! `cargo xtask build`: cross-builds the kernel for x86_64-unknown-none and writes the two
//! artefacts of docs/interface.md#build-artefacts, `target/rkdump/bzImage` and `target/rkdump/rkdump.elf`.

use std::path::{Path, PathBuf};
use std::process::Command;

use rkdump_tests::tools::Rkdumpctl;

use crate::image;

/// Paths of the built artefacts.
#[derive(Clone, Debug)]
pub struct Artefacts {
    /// Linux boot-protocol image for `kexec -p`.
    pub bzimage: PathBuf,
    /// ELF with a PVH note for `qemu-system-x86_64 -kernel`.
    pub elf: PathBuf,
}

impl Artefacts {
    /// Where `cargo xtask build` writes the artefacts (`target/rkdump/`), built or not.
    pub fn paths() -> Artefacts {
        let out = target_dir().join("rkdump");
        Artefacts {
            bzimage: out.join("bzImage"),
            elf: out.join("rkdump.elf"),
        }
    }
}

/// Root of the workspace (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// The workspace target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A `cargo` command with the environment of the outer cargo run cleared, so nested builds do
/// not inherit flags meant for xtask itself.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let inherited_flag = key.starts_with("CARGO_")
            && key != "CARGO_HOME"
            && key != "CARGO_TARGET_DIR"
            && key != "CARGO_TERM_COLOR";
        if inherited_flag || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER" {
            cmd.env_remove(&*key);
        }
    }
    cmd.current_dir(workspace_root());
    cmd
}

/// Builds the kernel (release unless `debug`) and writes both artefacts.
pub fn build(debug: bool) -> Result<Artefacts, String> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--package",
        "rkdump-kernel",
        "--target",
        "x86_64-unknown-none",
    ]);
    if !debug {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("kernel build failed ({status})"));
    }
    let kernel = kernel_elf(debug);
    let elf_bytes = std::fs::read(&kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    let images = image::make_images(&elf_bytes)?;
    let Artefacts { bzimage, elf } = Artefacts::paths();
    let out = bzimage.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    write(&bzimage, &images.bzimage)?;
    write(&elf, &images.pvh_elf)?;
    eprintln!(
        "rkdump: bzImage {} bytes (payload {} bytes, init_size {} bytes), rkdump.elf {} bytes",
        images.bzimage.len(),
        images.payload_len,
        images.init_size,
        images.pvh_elf.len()
    );
    Ok(Artefacts { bzimage, elf })
}

/// The linked kernel (with symbols) that [`build`] makes the artefacts from.
pub fn kernel_elf(debug: bool) -> PathBuf {
    let profile = if debug { "debug" } else { "release" };
    target_dir()
        .join("x86_64-unknown-none")
        .join(profile)
        .join("rkdump")
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// `cargo xtask build` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Debug build of the kernel (default: release).
    #[arg(long)]
    debug: bool,
}

/// `cargo xtask build [--debug]`.
pub fn main(args: Args) -> Result<(), String> {
    let a = build(args.debug)?;
    println!("{}\n{}", a.bzimage.display(), a.elf.display());
    Ok(())
}

/// Builds the host tool; calls to it go through the returned [`Rkdumpctl`].
pub fn rkdumpctl() -> Result<Rkdumpctl, String> {
    let status = cargo()
        .args(["build", "--release", "--package", "rkdumpctl"])
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("rkdumpctl build failed ({status})"));
    }
    Ok(Rkdumpctl(target_dir().join("release").join("rkdumpctl")))
}
