//! `rkdumpctl install` / `uninstall`: puts the capture kernel under `/usr/lib/rkdump/`, the
//! systemd unit `rkdump.service` (which runs `rkdumpctl boot`), the udev rule that reloads
//! after hotplug, and a commented `/etc/rkdump.conf` into a root directory, and takes them out
//! again. The templates are `rkdumpctl/dist/`.
//!
//! Every file written is listed in `/usr/lib/rkdump/installed`; `uninstall` removes exactly
//! those, so it never removes what it did not put there. `/etc/rkdump.conf` is only written when
//! absent and never removed (it is the administrator's), and saved dumps are never touched.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::conf::{self, ConfArgs};

/// The unit template (`@BINDIR@`, `@SAVE_DIR@` substituted).
pub const UNIT_TEMPLATE: &str = include_str!("../dist/rkdump.service");
/// The udev rule template (`@BINDIR@` substituted).
pub const RULE_TEMPLATE: &str = include_str!("../dist/90-rkdump.rules");
/// The commented configuration written when `/etc/rkdump.conf` is absent.
pub const CONF_TEMPLATE: &str = include_str!("../dist/rkdump.conf");

/// Installed paths, relative to the root.
pub const LIB_DIR: &str = "usr/lib/rkdump";
/// The capture kernel.
pub const IMAGE: &str = "usr/lib/rkdump/bzImage";
/// The list of files `install` wrote.
pub const MANIFEST: &str = "usr/lib/rkdump/installed";
/// The unit.
pub const UNIT: &str = "usr/lib/systemd/system/rkdump.service";
/// The enablement link.
pub const WANTS_LINK: &str = "etc/systemd/system/multi-user.target.wants/rkdump.service";
/// The udev rule.
pub const RULE: &str = "usr/lib/udev/rules.d/90-rkdump.rules";
/// The configuration.
pub const CONF: &str = "etc/rkdump.conf";

/// Arguments of `rkdumpctl install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The rkdump bzImage to install [default: bzImage next to rkdumpctl, else target/rkdump/bzImage].
    #[arg(long, value_name = "BZIMAGE")]
    pub kernel: Option<PathBuf>,
    /// Install into this root instead of `/` (for packaging and tests; nothing is reloaded).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Directory (inside the root) the unit and rule run rkdumpctl from; rkdumpctl copies itself
    /// there.
    #[arg(long, value_name = "DIR", default_value = "/usr/sbin")]
    pub bindir: PathBuf,
    #[command(flatten)]
    pub conf: ConfArgs,
}

/// Arguments of `rkdumpctl uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Uninstall from this root instead of `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Why install or uninstall failed.
#[derive(Debug)]
pub enum Error {
    /// No kernel given and none found.
    NoKernel(Vec<PathBuf>),
    /// The kernel is not a bzImage.
    NotBzImage(PathBuf),
    /// The configuration is bad.
    Conf(conf::Error),
    /// A file operation failed.
    Io(PathBuf, io::Error),
    /// `--bindir` is not absolute.
    RelativeBindir(PathBuf),
    /// Nothing is installed in this root.
    NotInstalled(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoKernel(tried) => {
                write!(f, "no rkdump kernel found (tried")?;
                for p in tried {
                    write!(f, " {}", p.display())?;
                }
                write!(f, "); pass --kernel")
            }
            Error::NotBzImage(p) => write!(f, "{} is not a bzImage (no HdrS)", p.display()),
            Error::Conf(e) => write!(f, "{e}"),
            Error::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Error::RelativeBindir(p) => write!(f, "--bindir {} is not absolute", p.display()),
            Error::NotInstalled(root) => write!(
                f,
                "nothing installed under {} (no {MANIFEST})",
                root.display()
            ),
        }
    }
}

impl From<conf::Error> for Error {
    fn from(e: conf::Error) -> Self {
        Error::Conf(e)
    }
}

/// `root` joined with an absolute or root-relative `path`.
pub fn in_root(root: &Path, path: impl AsRef<Path>) -> PathBuf {
    let p = path.as_ref();
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// The unit text for rkdumpctl in `bindir` and dumps saved to `save_dir`.
pub fn unit_text(bindir: &Path, save_dir: &Path) -> String {
    UNIT_TEMPLATE
        .replace("@BINDIR@", &bindir.display().to_string())
        .replace("@SAVE_DIR@", &save_dir.display().to_string())
}

/// The udev rule text for rkdumpctl in `bindir`.
pub fn rule_text(bindir: &Path) -> String {
    RULE_TEMPLATE.replace("@BINDIR@", &bindir.display().to_string())
}

fn resolve_kernel(given: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(k) = given {
        return Ok(k.to_path_buf());
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        tried.push(dir.join("bzImage"));
        // A cargo build: target/<profile>/rkdumpctl next to target/rkdump/bzImage.
        if let Some(target) = dir.parent() {
            tried.push(target.join("rkdump/bzImage"));
        }
    }
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(Error::NoKernel(tried))
}

/// Writes `bytes` to `path` with `mode`, creating parents, through a temporary file and rename.
fn put(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let err = |e| Error::Io(path.to_path_buf(), e);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("rkdump-tmp");
    fs::write(&tmp, bytes).map_err(err)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// What `install` did, for the summary and the tests.
#[derive(Debug, Default)]
pub struct Installed {
    /// Files written (root-relative), in the manifest.
    pub files: Vec<String>,
    /// Whether a configuration was written (it was absent).
    pub wrote_conf: bool,
}

/// Installs into `root`: the kernel, rkdumpctl itself (unless `self_exe` is `None`), the unit and
/// its enablement link, the rule and, when absent, the configuration.
pub fn install(
    root: &Path,
    kernel: &Path,
    self_exe: Option<&Path>,
    bindir: &Path,
    save_dir: &Path,
) -> Result<Installed, Error> {
    if !bindir.is_absolute() {
        return Err(Error::RelativeBindir(bindir.to_path_buf()));
    }
    let image = fs::read(kernel).map_err(|e| Error::Io(kernel.to_path_buf(), e))?;
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err(Error::NotBzImage(kernel.to_path_buf()));
    }
    let mut done = Installed::default();
    put(&in_root(root, IMAGE), &image, 0o644)?;
    done.files.push(IMAGE.into());
    if let Some(exe) = self_exe {
        let dest = in_root(root, bindir.join("rkdumpctl"));
        let same = fs::canonicalize(exe).ok() == fs::canonicalize(&dest).ok();
        if !same {
            let bin = fs::read(exe).map_err(|e| Error::Io(exe.to_path_buf(), e))?;
            put(&dest, &bin, 0o755)?;
            done.files.push(
                dest.strip_prefix(root)
                    .unwrap_or(&dest)
                    .display()
                    .to_string(),
            );
        }
    }
    put(
        &in_root(root, UNIT),
        unit_text(bindir, save_dir).as_bytes(),
        0o644,
    )?;
    done.files.push(UNIT.into());
    let link = in_root(root, WANTS_LINK);
    let err = |e| Error::Io(link.clone(), e);
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    match fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    symlink(Path::new("/").join(UNIT), &link).map_err(err)?;
    done.files.push(WANTS_LINK.into());
    put(&in_root(root, RULE), rule_text(bindir).as_bytes(), 0o644)?;
    done.files.push(RULE.into());
    let conf_path = in_root(root, CONF);
    if fs::symlink_metadata(&conf_path).is_err() {
        put(&conf_path, CONF_TEMPLATE.as_bytes(), 0o644)?;
        done.wrote_conf = true;
    }
    let mut manifest = done.files.join("\n");
    manifest.push('\n');
    put(&in_root(root, MANIFEST), manifest.as_bytes(), 0o644)?;
    Ok(done)
}

/// Removes what the manifest in `root` lists, the manifest, and the directories left empty.
/// Returns the files removed (root-relative).
pub fn uninstall(root: &Path) -> Result<Vec<String>, Error> {
    let manifest = in_root(root, MANIFEST);
    let list = match fs::read_to_string(&manifest) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotInstalled(root.to_path_buf()));
        }
        Err(e) => return Err(Error::Io(manifest, e)),
    };
    let mut removed = Vec::new();
    for rel in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // The manifest is ours, but a hand-edited one must not reach outside the root.
        if Path::new(rel)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let p = in_root(root, rel);
        match fs::remove_file(&p) {
            Ok(()) => removed.push(rel.to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(p, e)),
        }
        // Directories the install created and that are now empty (never the root itself).
        let mut dir = p.parent();
        while let Some(d) = dir.filter(|d| *d != root && d.starts_with(root)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    fs::remove_file(&manifest).map_err(|e| Error::Io(manifest.clone(), e))?;
    let _ = fs::remove_dir(in_root(root, LIB_DIR));
    Ok(removed)
}

/// Best-effort reloads of systemd and udev after installing into the running system.
fn reload_managers(enable_now: bool) {
    for (prog, args) in [
        ("systemctl", &["daemon-reload"][..]),
        ("udevadm", &["control", "--reload"][..]),
    ] {
        match Command::new(prog).args(args).status() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("rkdumpctl: warning: {prog} {}: {s}", args.join(" ")),
            Err(e) => eprintln!("rkdumpctl: warning: {prog}: {e}"),
        }
    }
    if enable_now {
        println!("rkdumpctl install: start it now with `systemctl start rkdump.service`");
    }
}

/// Runs `rkdumpctl install`.
pub fn run_install(args: &InstallArgs) -> Result<(), Error> {
    let conf = args.conf.load()?;
    let kernel = resolve_kernel(args.kernel.as_deref())?;
    let exe = std::env::current_exe().map_err(|e| Error::Io(PathBuf::from("/proc/self/exe"), e))?;
    let done = install(
        &args.root,
        &kernel,
        Some(&exe),
        &args.bindir,
        &conf.save_dir,
    )?;
    for f in &done.files {
        println!("rkdumpctl install: {}", in_root(&args.root, f).display());
    }
    if done.wrote_conf {
        println!(
            "rkdumpctl install: {} (commented defaults)",
            in_root(&args.root, CONF).display()
        );
    }
    if args.root == Path::new("/") {
        reload_managers(true);
    }
    Ok(())
}

/// Runs `rkdumpctl uninstall`.
pub fn run_uninstall(args: &UninstallArgs) -> Result<(), Error> {
    let removed = uninstall(&args.root)?;
    for f in &removed {
        println!(
            "rkdumpctl uninstall: removed {}",
            in_root(&args.root, f).display()
        );
    }
    if args.root == Path::new("/") {
        reload_managers(false);
        println!(
            "rkdumpctl uninstall: the capture kernel stays loaded until reboot or `kexec -p -u`; \
             /etc/rkdump.conf and saved dumps are kept"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rkdumpctl-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn fake_bzimage(dir: &Path) -> PathBuf {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        let p = dir.join("bzImage");
        fs::write(&p, &img).unwrap();
        p
    }

    #[test]
    fn install_then_uninstall_leaves_only_the_conf() {
        let d = tmp("install");
        let root = d.join("root");
        let kernel = fake_bzimage(&d);
        let exe = d.join("rkdumpctl-bin");
        fs::write(&exe, b"\x7fELF fake").unwrap();
        let done = install(
            &root,
            &kernel,
            Some(&exe),
            Path::new("/usr/sbin"),
            Path::new("/var/crash"),
        )
        .unwrap();
        assert!(done.wrote_conf);
        assert_eq!(
            fs::read(root.join(IMAGE)).unwrap(),
            fs::read(&kernel).unwrap()
        );
        let bin = root.join("usr/sbin/rkdumpctl");
        assert_eq!(fs::read(&bin).unwrap(), b"\x7fELF fake");
        assert_eq!(
            fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let unit = fs::read_to_string(root.join(UNIT)).unwrap();
        assert!(
            unit.contains("ExecStart=/usr/sbin/rkdumpctl boot\n"),
            "{unit}"
        );
        assert!(unit.contains("RequiresMountsFor=/var/crash /var/lib/rkdump"));
        assert!(!unit.contains('@'), "template left unsubstituted: {unit}");
        let rule = fs::read_to_string(root.join(RULE)).unwrap();
        assert!(rule.contains("/usr/sbin/rkdumpctl reload --reason="));
        assert!(!rule.contains("@BINDIR@"));
        assert_eq!(
            fs::read_link(root.join(WANTS_LINK)).unwrap(),
            Path::new("/usr/lib/systemd/system/rkdump.service")
        );
        // The written configuration parses (to the defaults: everything is commented).
        let c = conf::Config::from_file(&root.join(CONF)).unwrap();
        assert_eq!(c, conf::Config::default());

        // A second install keeps an edited configuration.
        fs::write(root.join(CONF), "keep = 9\n").unwrap();
        let again = install(
            &root,
            &kernel,
            Some(&exe),
            Path::new("/usr/sbin"),
            Path::new("/var/crash"),
        )
        .unwrap();
        assert!(!again.wrote_conf);
        assert_eq!(fs::read_to_string(root.join(CONF)).unwrap(), "keep = 9\n");

        // Something else in a shared directory survives uninstall.
        fs::write(root.join("usr/lib/udev/rules.d/50-other.rules"), "").unwrap();
        let removed = uninstall(&root).unwrap();
        assert_eq!(removed.len(), 5, "{removed:?}");
        for p in [
            IMAGE,
            UNIT,
            WANTS_LINK,
            RULE,
            MANIFEST,
            "usr/sbin/rkdumpctl",
        ] {
            assert!(
                fs::symlink_metadata(root.join(p)).is_err(),
                "{p} left behind"
            );
        }
        assert!(!root.join(LIB_DIR).exists());
        assert!(root.join("usr/lib/udev/rules.d/50-other.rules").exists());
        assert_eq!(fs::read_to_string(root.join(CONF)).unwrap(), "keep = 9\n");
        // Negative control: a second uninstall finds nothing to do and says so.
        assert!(matches!(uninstall(&root), Err(Error::NotInstalled(_))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn install_refuses_a_non_bzimage_and_writes_nothing() {
        let d = tmp("install-bad");
        let root = d.join("root");
        let k = d.join("vmlinux");
        fs::write(&k, vec![0u8; 0x400]).unwrap();
        assert!(matches!(
            install(
                &root,
                &k,
                None,
                Path::new("/usr/sbin"),
                Path::new("/var/crash")
            ),
            Err(Error::NotBzImage(_))
        ));
        assert!(!root.exists());
        assert!(matches!(
            install(
                &root,
                &fake_bzimage(&d),
                None,
                Path::new("usr/sbin"),
                Path::new("/var/crash")
            ),
            Err(Error::RelativeBindir(_))
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn template_conf_documents_every_key_and_parses_uncommented() {
        // Uncommenting every `#key = value` line gives a valid configuration that sets each key.
        let mut seen = Vec::new();
        let text: String = CONF_TEMPLATE
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest)
                    if rest.split_once(" =").is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
                {
                    seen.push(rest.split('=').next().unwrap().trim().to_string());
                    rest.to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        conf::Config::parse(&text, Path::new("template")).unwrap();
        let mut keys: Vec<String> = conf::KEYS.iter().map(|k| k.to_string()).collect();
        keys.sort();
        seen.sort();
        assert_eq!(seen, keys);
    }

    /// Checks udev rule syntax as udev reads it: `KEY[{attr}]OP"value"`, comma separated, only
    /// the keys this rule uses, every GOTO with its LABEL.
    fn rule_syntax(rule: &str) -> Result<(), String> {
        let mut gotos = Vec::new();
        let mut labels = Vec::new();
        for line in rule
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut rest = line;
            while !rest.is_empty() {
                let key_end = rest
                    .find(|c: char| !(c.is_ascii_alphabetic() || "_{}".contains(c)))
                    .ok_or(format!("no operator in {line}"))?;
                let (key, after) = rest.split_at(key_end);
                let op = ["==", "!=", "+=", "-=", ":=", "="]
                    .into_iter()
                    .find(|o| after.starts_with(o))
                    .ok_or(format!("bad operator after {key} in {line}"))?;
                let v = after[op.len()..]
                    .strip_prefix('"')
                    .ok_or(format!("unquoted value in {line}"))?;
                let close = v.find('"').ok_or(format!("unterminated value in {line}"))?;
                match key {
                    "GOTO" => gotos.push(v[..close].to_string()),
                    "LABEL" => labels.push(v[..close].to_string()),
                    "SUBSYSTEM" | "ACTION" | "RUN" => {}
                    other => return Err(format!("unexpected key {other} in {line}")),
                }
                rest = v[close + 1..].trim_start();
                rest = rest.strip_prefix(',').map_or(rest, str::trim_start);
            }
        }
        match gotos.iter().find(|g| !labels.contains(g)) {
            Some(g) => Err(format!("GOTO {g} without LABEL")),
            None => Ok(()),
        }
    }

    /// The rule's syntax, events and debounced reload command. `udevadm verify` needs systemd
    /// 254; this machine has 252 (`udevadm test` was run by hand).
    #[test]
    fn rule_is_well_formed() {
        let rule = rule_text(Path::new("/usr/sbin"));
        rule_syntax(&rule).unwrap();
        assert!(rule.contains(r#"SUBSYSTEM=="pci", ACTION=="add|remove""#));
        assert!(rule.contains(r#"SUBSYSTEM=="memory", ACTION=="online|offline""#));
        assert!(rule.contains(r#"SUBSYSTEM=="cpu""#));
        assert!(rule.contains(
            "systemd-run --quiet --no-block --on-active=5 --unit=rkdump-reload /usr/sbin/rkdumpctl reload"
        ));
        // Negative controls: the checker notices a broken quote, operator and a missing label.
        assert!(
            rule_syntax(&rule.replacen("ACTION==\"add|remove\"", "ACTION==\"add|remove", 1))
                .is_err()
        );
        assert!(rule_syntax(&rule.replacen("ACTION==", "ACTION=~", 1)).is_err());
        assert!(rule_syntax(&rule.replace("LABEL=\"rkdump_end\"", "")).is_err());
    }

    /// `systemd-analyze verify` on the installed unit, inside the temporary root. Skipped (with a
    /// note) when the tool is absent.
    #[test]
    fn unit_passes_systemd_analyze_verify() {
        let d = tmp("verify");
        let root = d.join("root");
        let exe = d.join("rkdumpctl");
        fs::write(&exe, b"#!/bin/sh\n").unwrap();
        install(
            &root,
            &fake_bzimage(&d),
            Some(&exe),
            Path::new("/usr/sbin"),
            Path::new("/var/crash"),
        )
        .unwrap();
        let unit = root.join(UNIT);
        let verify = || {
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(format!("--root={}", root.display()))
                .arg("/usr/lib/systemd/system/rkdump.service")
                .output()
        };
        let out = match verify() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("systemd-analyze not runnable ({e}); unit not verified");
                return;
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", unit.display());
        assert!(!stderr.contains("rkdump.service"), "{stderr}");
        // Negative controls: verify does catch a missing ExecStart binary (exit status) and an
        // unknown key (a warning naming the unit).
        let good = fs::read_to_string(&unit).unwrap();
        fs::write(
            &unit,
            good.replace("/usr/sbin/rkdumpctl", "/usr/sbin/absent"),
        )
        .unwrap();
        let out = verify().unwrap();
        assert!(!out.status.success());
        fs::write(&unit, good.replace("[Service]", "[Service]\nNoSuchKey=1")).unwrap();
        let out = verify().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown key 'NoSuchKey'"));
        fs::remove_dir_all(&d).unwrap();
    }
}
