//! A minimal cpio "newc" (SVR4, magic 070701) writer: what the Linux initramfs unpacker reads
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Written here rather than with the
//! `cpio` tool so device nodes (/dev/console) need no root and the archive is reproducible
//! (mtime 0, fixed inode numbers, uid/gid 0).

use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An in-memory newc archive under construction.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
    names: BTreeSet<String>,
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Cpio {
        Cpio {
            next_ino: 1,
            ..Cpio::default()
        }
    }

    fn pad4(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), String> {
        let size =
            u32::try_from(data.len()).map_err(|_| format!("cpio: {name} is larger than 4 GiB"))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad4();
        self.buf.extend_from_slice(data);
        self.pad4();
        Ok(())
    }

    /// Normalises `path` (no leading `/`) and adds its missing parent directories.
    fn prepare(&mut self, path: &str) -> Result<String, String> {
        let name = path.trim_start_matches('/').to_string();
        if name.is_empty()
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("cpio: bad path `{path}`"));
        }
        if !self.names.insert(name.clone()) {
            return Err(format!("cpio: `{name}` added twice"));
        }
        let mut parent = String::new();
        let comps: Vec<&str> = name.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            if self.dirs.insert(parent.clone()) {
                self.names.insert(parent.clone());
                self.entry(&parent.clone(), S_IFDIR | 0o755, (0, 0), &[])?;
            }
        }
        Ok(name)
    }

    /// True if `path` was already added (as anything, including an implied parent directory).
    pub fn contains(&self, path: &str) -> bool {
        self.names.contains(path.trim_start_matches('/'))
    }

    /// Adds a directory (parents are implied).
    pub fn dir(&mut self, path: &str) -> Result<(), String> {
        if self.dirs.contains(path.trim_start_matches('/')) {
            return Ok(());
        }
        let name = self.prepare(path)?;
        self.dirs.insert(name.clone());
        self.entry(&name, S_IFDIR | 0o755, (0, 0), &[])
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), String> {
        let name = self.prepare(path)?;
        self.entry(&name, S_IFREG | (perm & 0o7777), (0, 0), data)
    }

    /// Adds a symbolic link `path` -> `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        let name = self.prepare(path)?;
        self.entry(&name, S_IFLNK | 0o777, (0, 0), target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), String> {
        let name = self.prepare(path)?;
        self.entry(&name, S_IFCHR | (perm & 0o7777), (major, minor), &[])
    }

    /// Appends the trailer and returns the archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        // The trailer is a plain entry named TRAILER!!! with nlink 1 and no data.
        let fields = [0u32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(b"TRAILER!!!\0");
        self.pad4();
        // The kernel reads the archive in 512-byte blocks only for the tool's sake; pad anyway.
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a newc archive and returns (name, mode, rdevmajor, rdevminor, data) per entry.
    fn walk(buf: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            assert_eq!(&buf[pos..pos + 6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&buf[pos + 6 + 8 * i..pos + 14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_start = pos + 110;
            let name = std::str::from_utf8(&buf[name_start..name_start + namesize as usize - 1])
                .unwrap()
                .to_string();
            let data_start = (name_start + namesize as usize).next_multiple_of(4);
            let data = buf[data_start..data_start + size as usize].to_vec();
            pos = (data_start + size as usize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                return out;
            }
            out.push((name, mode, rmaj, rmin, data));
        }
    }

    #[test]
    fn writes_parseable_newc() {
        let mut c = Cpio::new();
        c.file("/bin/sh", 0o755, b"#!x").unwrap();
        c.symlink("/bin/ls", "busybox").unwrap();
        c.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        c.dir("/proc").unwrap();
        c.dir("/bin").unwrap();
        assert!(c.file("/bin/sh", 0o755, b"").is_err());
        assert!(c.file("/a/../b", 0o644, b"").is_err());
        let buf = c.finish();
        assert_eq!(buf.len() % 512, 0);
        let entries = walk(&buf);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/sh", "bin/ls", "dev", "dev/console", "proc"]
        );
        assert_eq!(entries[1].1, S_IFREG | 0o755);
        assert_eq!(entries[1].4, b"#!x");
        assert_eq!(entries[2].4, b"busybox");
        assert_eq!(
            (entries[4].1, entries[4].2, entries[4].3),
            (S_IFCHR | 0o600, 5, 1)
        );
    }
}
