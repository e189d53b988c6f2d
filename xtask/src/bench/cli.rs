//! `cargo xtask bench` options (clap) and the [`Opts`] they resolve to.

use std::path::PathBuf;

use super::cases::Kind;

/// `cargo xtask bench`: rkdump vs Linux kdump vs the disk's raw limit. Writes
/// target/bench/results.md, target/bench/chart.svg; console logs in target/bench/runs/.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Also 4 GiB guests (default: 1 GiB only).
    #[arg(long)]
    slow: bool,
    /// The size rows: 1, 4 and 16 GiB guests, rkdump's level-31 kdump (lzo, zlib) and level-0
    /// kdump against the peer's makedumpfile, 1 repetition (unless --ram, --only or --reps say
    /// otherwise); the tables gain the time-against-RAM slope.
    #[arg(long)]
    large: bool,
    /// 1 repetition, no crashkernel= bisection (for iteration).
    #[arg(long)]
    quick: bool,
    /// Repetitions per configuration (default 3; --quick 1).
    #[arg(long, value_name = "N")]
    reps: Option<usize>,
    /// Skip the smallest-crashkernel= search.
    #[arg(long)]
    no_bisect: bool,
    /// Guest RAM sizes in GiB, comma list (overrides --slow).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_gib)]
    ram: Option<Vec<u32>>,
    /// Configurations, comma list of rkdump,peer-raw,peer-mkdf,rawdd.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_kind)]
    only: Option<Vec<Kind>>,
    /// Block size of the raw dd (MiB).
    #[arg(long = "rawdd-bs", value_name = "MIB", default_value = "4", value_parser = parse_block_mib)]
    rawdd_bs: u32,
    /// Extra rkdump parameters (A/B runs, e.g. "rkdump.checksum=none").
    #[arg(long, value_name = "S", default_value = "", allow_hyphen_values = true)]
    rkdump_append: String,
    /// Where disk images and run directories live during the runs (default:
    /// /dev/shm/rkdump-bench when the host has the memory, else target/bench/work).
    #[arg(long, value_name = "DIR")]
    disk_dir: Option<PathBuf>,
    /// Leave disk images sparse (default: timed runs write them full of zeros first, so the
    /// host holds the pages before QEMU writes the dump).
    #[arg(long)]
    sparse: bool,
    /// Use the existing target/rkdump/bzImage.
    #[arg(long)]
    no_build: bool,
    /// First kernel (default: newest /boot/vmlinuz-*).
    #[arg(long, value_name = "P")]
    first_kernel: Option<PathBuf>,
    /// Keep disk images and per-run artefacts.
    #[arg(long)]
    keep: bool,
    /// Exit non-zero when a target is missed.
    #[arg(long)]
    strict: bool,
    /// Echo whole consoles.
    #[arg(short, long)]
    verbose: bool,
    /// Run timed runs even while other processes keep the CPUs busy (no waiting for quiet, no
    /// repeats of busy runs; the tables still show how busy the host was). For iteration only:
    /// such figures are not comparable.
    #[arg(long)]
    busy_ok: bool,
}

/// Guest sizes of `--large` (GiB).
pub(super) const LARGE_RAMS: [u32; 3] = [1, 4, 16];

fn parse_gib(s: &str) -> Result<u32, String> {
    s.trim()
        .trim_end_matches(['G', 'g'])
        .parse()
        .map_err(|e| format!("{s}: {e}"))
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::from_slug(s.trim()).ok_or(format!("unknown `{s}`"))
}

fn parse_block_mib(s: &str) -> Result<u32, String> {
    match s.trim_end_matches(['M', 'm']).parse() {
        Ok(0) => Err("must be >= 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

/// The resolved options.
#[derive(Clone, Debug)]
pub(super) struct Opts {
    pub(super) rams: Vec<u32>,
    pub(super) reps: usize,
    pub(super) bisect: bool,
    pub(super) kinds: Vec<Kind>,
    pub(super) no_build: bool,
    pub(super) first_kernel: Option<PathBuf>,
    pub(super) keep: bool,
    pub(super) strict: bool,
    pub(super) verbose: bool,
    /// Block size of the raw dd (MiB).
    pub(super) rawdd_mib: u32,
    /// Extra rkdump command-line parameters.
    pub(super) rkdump_append: String,
    /// Where disk images and run directories live (`--disk-dir`).
    pub(super) disk_dir: Option<PathBuf>,
    /// Timed runs fill their disk images with zeros first (not `--sparse`).
    pub(super) fill: bool,
    /// Timed runs wait for a quiet host and repeat busy runs (not `--busy-ok`).
    pub(super) wait_quiet: bool,
}

impl Args {
    /// Applies the defaults that depend on other options.
    pub(super) fn resolve(self) -> Result<Opts, String> {
        let rams = self.ram.unwrap_or(if self.large {
            LARGE_RAMS.to_vec()
        } else if self.slow {
            vec![1, 4]
        } else {
            vec![1]
        });
        if rams.is_empty() || rams.contains(&0) {
            return Err("--ram needs sizes >= 1 GiB".into());
        }
        let mut kinds = self.only.unwrap_or(if self.large {
            Kind::LARGE.to_vec()
        } else {
            Kind::ALL.to_vec()
        });
        kinds.sort();
        kinds.dedup();
        Ok(Opts {
            rams,
            reps: self
                .reps
                .unwrap_or(if self.quick || self.large { 1 } else { 3 })
                .max(1),
            bisect: !self.no_bisect && !self.quick,
            kinds,
            no_build: self.no_build,
            first_kernel: self.first_kernel,
            keep: self.keep,
            strict: self.strict,
            verbose: self.verbose,
            rawdd_mib: self.rawdd_bs,
            rkdump_append: self.rkdump_append,
            disk_dir: self.disk_dir,
            fill: !self.sparse,
            wait_quiet: !self.busy_ok,
        })
    }
}

/// Parses bench options as the command line would (for tests).
#[cfg(test)]
pub(super) fn parse_opts(args: &[String]) -> Result<Opts, String> {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }
    Cli::try_parse_from(std::iter::once("bench".to_string()).chain(args.iter().cloned()))
        .map_err(|e| e.to_string())?
        .args
        .resolve()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_opts(&[]).unwrap();
        assert_eq!((o.rams.clone(), o.reps, o.bisect), (vec![1], 3, true));
        assert_eq!(o.kinds, Kind::ALL.to_vec());
        let args: Vec<String> = ["--slow", "--quick", "--only", "rawdd,rkdump"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse_opts(&args).unwrap();
        assert_eq!((o.rams.clone(), o.reps, o.bisect), (vec![1, 4], 1, false));
        assert_eq!(o.kinds, vec![Kind::Rkdump, Kind::RawDd]);
        assert!(parse_opts(&["--only".into(), "nope".into()]).is_err());
        let o = parse_opts(&["--large".into()]).unwrap();
        assert_eq!(
            (o.rams.clone(), o.reps, o.bisect),
            (vec![1, 4, 16], 1, true)
        );
        let mut large = Kind::LARGE.to_vec();
        large.sort();
        assert_eq!(o.kinds, large);
        let o = parse_opts(&["--large".into(), "--ram".into(), "16".into()]).unwrap();
        assert_eq!(o.rams, vec![16]);
        let o = parse_opts(&["--only".into(), "rkdump-l31-lzo,peer-mkdf".into()]).unwrap();
        assert_eq!(o.kinds, vec![Kind::PeerMkdf, Kind::RkdumpL31Lzo]);
        assert!(parse_opts(&["--ram".into(), "0".into()]).is_err());
    }
}
