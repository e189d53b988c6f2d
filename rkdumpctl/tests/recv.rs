//! End-to-end tests of `rkdumpctl recv` and `inspect` on dumps built by rkdump-vmcore from fake old memory.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{rkdumpctl, scratch, text};
use rkdump_vmcore::kdump;
use rkdump_vmcore::pages::KeepAll;
use rkdump_vmcore::stream::{FRAME_HEADER_SIZE, FrameEncoder};
use rkdump_vmcore::testing::{FakeMemory, crash_notes, header_blob, load_phdr};
use rkdump_vmcore::{prepare_dump, write_vmcore};

const HDR: u64 = 0x2f00_0000;
const DM: u64 = 0xffff_8880_0000_0000;

/// A KF-style dump: 3 possible CPUs (CPU 1 saved nothing), VMCOREINFO, kernel text, two RAM ranges.
/// Returns the vmcore bytes and the serial stream (with console noise before and after).
fn dump() -> (Vec<u8>, Vec<u8>) {
    let mut mem = old_memory();
    let plan = prepare_dump(&mut mem, HDR, None).unwrap();
    let mut buf = vec![0u8; 16384];
    let mut file = Vec::new();
    write_vmcore(&plan.layout, &mut mem, &mut file, &mut buf, &mut |_, _| {}).unwrap();
    let mut stream = b"rkdump: entered\r\nrkdump: dump start bytes=1 target=serial\r\n".to_vec();
    let mut enc = FrameEncoder::new(&mut stream);
    enc.begin(plan.layout.total_size, *b"rkdump-test-run!")
        .unwrap();
    write_vmcore(&plan.layout, &mut mem, &mut enc, &mut buf, &mut |_, _| {}).unwrap();
    enc.end().unwrap();
    stream.extend_from_slice(b"\r\nrkdump: dump complete\r\n");
    (file, stream)
}

/// The same crash as a kdump-compressed file (zlib, every page) and its version-2 serial stream,
/// as the kernel's serial path sends it.
fn kdump_dump() -> (Vec<u8>, Vec<u8>) {
    let mut mem = old_memory();
    let plan = prepare_dump(&mut mem, HDR, None).unwrap();
    let opts = kdump::Options::default();
    let mut file = Vec::new();
    kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut file, &opts, &mut |_| {}).unwrap();
    let mut stream = b"rkdump: dump start bytes=1 target=serial format=kdump\r\n".to_vec();
    let mut enc = FrameEncoder::new(&mut stream);
    enc.begin_unsized(
        kdump::max_file_size(&plan, &opts).unwrap(),
        *b"rkdump-kdump-run",
    )
    .unwrap();
    kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut enc, &opts, &mut |_| {}).unwrap();
    enc.end().unwrap();
    stream.extend_from_slice(b"\r\nrkdump: dump complete\r\n");
    (file, stream)
}

fn old_memory() -> FakeMemory {
    let mut mem = FakeMemory::new();
    let cpus: Vec<_> = (0..3u64)
        .map(|cpu| (cpu != 1).then_some((4000 + cpu as i32, 0xffff_ffff_8123_4560 + cpu)))
        .collect();
    let mut phdrs = crash_notes(&mut mem, &cpus);
    phdrs.push(load_phdr(
        0x100_0000,
        0x100_0000,
        0xffff_ffff_8100_0000,
        0x1_8000,
    ));
    phdrs.push(load_phdr(0x10_0000, 0x10_0000, DM + 0x10_0000, 0x2_0000));
    phdrs.push(load_phdr(0x100_0000, 0x100_0000, DM + 0x100_0000, 0x4_0800));
    mem.add_pattern(0x10_0000, 0x30_0000);
    mem.add_pattern(0x100_0000, 0x110_0000);
    mem.insert(HDR, header_blob(&phdrs));
    mem
}

/// Offset in `stream` of the first byte of the `n`th data frame's payload.
fn data_payload(stream: &[u8], n: usize) -> usize {
    let mut at = stream
        .windows(4)
        .position(|w| w == rkdump_vmcore::stream::MAGIC)
        .unwrap();
    for _ in 0..=n {
        let len = u16::from_le_bytes([stream[at + 6], stream[at + 7]]) as usize;
        at += FRAME_HEADER_SIZE + len;
    }
    at + FRAME_HEADER_SIZE
}

/// `recv` of a clean `stream` must rebuild exactly `file`; returns the output's path.
fn recv_exact(name: &str, stream: &[u8], file: &[u8]) -> PathBuf {
    let dir = scratch(name);
    let (input, out) = (dir.join("serial.bin"), dir.join("vmcore"));
    std::fs::write(&input, stream).unwrap();
    let o = rkdumpctl([Path::new("recv"), &input, Path::new("-o"), &out]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("CRC32 verified"));
    assert!(std::fs::read(&out).unwrap() == file);
    assert!(!dir.join("vmcore.incomplete").exists());
    out
}

#[test]
fn recv_rebuilds_the_vmcore_byte_for_byte() {
    let (file, stream) = dump();
    let out = recv_exact("ok", &stream, &file);

    let o = rkdumpctl([Path::new("inspect"), &out]);
    let s = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for want in [
        "CPUs (CORE/NT_PRSTATUS notes): 2",
        "pid 4000 rip 0xffffffff81234560",
        "pid 4002 rip 0xffffffff81234562",
        "OSRELEASE=6.1.0-56-cloud-amd64",
        "PAGESIZE=4096",
        "CRASHTIME=1735689600  (2025-01-01 00:00:00 UTC)",
        "KERNELOFFSET=1c000000",
        "NUMBER(phys_base)=-1056964608",
        "PT_LOAD (3):",
        "kernel text",
        "0xffff888000100000",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    assert!(!s.contains("warning"), "{s}");
}

#[test]
fn recv_refuses_a_corrupt_frame_unless_partial() {
    let (file, mut stream) = dump();
    let at = data_payload(&stream, 2);
    stream[at + 100] ^= 0x01;
    let dir = scratch("corrupt");
    let (input, out) = (dir.join("serial.bin"), dir.join("vmcore"));
    std::fs::write(&input, &stream).unwrap();

    let o = rkdumpctl([Path::new("recv"), &input, Path::new("-o"), &out]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("bad frame at stream byte"), "{err}");
    assert!(err.contains("CRC mismatch"), "{err}");
    assert!(err.contains("missing file bytes 0x2000..0x3000"), "{err}");
    assert!(err.contains("--partial"), "{err}");
    assert!(!out.exists());
    assert!(!dir.join("vmcore.incomplete").exists());

    let o = rkdumpctl([
        Path::new("recv"),
        &input,
        Path::new("-o"),
        &out,
        Path::new("--partial"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("PARTIAL"), "{}", text(&o.stdout));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), file.len());
    assert!(got[0x2000..0x3000].iter().all(|&b| b == 0));
    assert!(got[..0x2000] == file[..0x2000] && got[0x3000..] == file[0x3000..]);
}

#[test]
fn recv_refuses_a_truncated_stream() {
    let (_, stream) = dump();
    let dir = scratch("truncated");
    let (input, out) = (dir.join("serial.bin"), dir.join("vmcore"));
    std::fs::write(&input, &stream[..stream.len() / 2]).unwrap();
    let o = rkdumpctl([Path::new("recv"), &input, Path::new("-o"), &out]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no valid End frame"));

    std::fs::write(&input, b"just console text, no dump\n").unwrap();
    let o = rkdumpctl([Path::new("recv"), &input, Path::new("-o"), &out]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no rkdump stream frame found"));
}

#[test]
fn recv_from_a_pipe_stops_at_end_or_idle_timeout() {
    let (file, stream) = dump();
    let dir = scratch("pipe");
    let out = dir.join("vmcore");
    // Whole stream on stdin, writer kept open: recv must stop at the End frame by itself.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rkdumpctl"))
        .args(["recv", "-", "--timeout-s", "30", "-o"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&stream).unwrap();
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == file);

    // Half a stream, writer kept open: the idle timeout ends the wait.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rkdumpctl"))
        .args(["recv", "-", "--timeout-s", "1", "-o"])
        .arg(dir.join("half"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&stream[..stream.len() / 2]).unwrap();
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("no input for 1 s"), "{err}");
}

#[test]
fn inspect_rejects_non_cores() {
    let dir = scratch("inspect-bad");
    let p = dir.join("not-a-core");
    std::fs::write(&p, b"hello").unwrap();
    let o = rkdumpctl([Path::new("inspect"), &p]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("not a valid x86_64 ELF core"));
}

/// A stream cut off after its data (no End frame) whose Begin announces `total` bytes; with
/// `skip_header` the first data frame (the ELF header) is left out too.
fn cut_stream(file: &[u8], total: u64, skip_header: bool) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut enc = FrameEncoder::new(&mut stream);
    enc.begin(total, *b"rkdump-test-lies").unwrap();
    for at in (0..file.len()).step_by(4096) {
        enc.data(at as u64, &file[at..(at + 4096).min(file.len())])
            .unwrap();
    }
    if skip_header {
        let (first, second) = (data_payload(&stream, 0), data_payload(&stream, 1));
        stream.drain(first - FRAME_HEADER_SIZE..second - FRAME_HEADER_SIZE);
    }
    stream
}

fn recv_partial(name: &str, stream: &[u8]) -> (Output, PathBuf) {
    let dir = scratch(name);
    let (input, out) = (dir.join("serial.bin"), dir.join("vmcore"));
    std::fs::write(&input, stream).unwrap();
    let o = rkdumpctl([
        Path::new("recv"),
        &input,
        Path::new("-o"),
        &out,
        Path::new("--partial"),
    ]);
    (o, out)
}

#[test]
fn recv_partial_refuses_a_size_the_header_does_not_lay_out() {
    let (file, _) = dump();
    let (o, out) = recv_partial("tib", &cut_stream(&file, 1 << 40, false));
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "announces {} bytes but its own ELF header",
            1u64 << 40
        )),
        "{err}"
    );
    // The output is the real dump, not a 1 TiB sparse file.
    assert_eq!(std::fs::read(&out).unwrap(), file);
}

#[test]
fn recv_partial_without_a_header_stops_at_the_last_byte_received() {
    let (file, _) = dump();
    let (o, out) = recv_partial("u64max", &cut_stream(&file, u64::MAX, true));
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("ELF header never arrived"), "{err}");
    assert!(!err.contains("integral"), "{err}");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), file.len(), "cut at the last byte received");
    assert_eq!(got[4096..], file[4096..]);
    assert!(
        got[..4096].iter().all(|&b| b == 0),
        "the missing header is zero-filled"
    );
}

#[test]
fn recv_without_partial_rejects_an_implausible_size() {
    let (file, _) = dump();
    let dir = scratch("tib-strict");
    let (input, out) = (dir.join("serial.bin"), dir.join("vmcore"));
    std::fs::write(&input, cut_stream(&file, 1 << 40, false)).unwrap();
    let o = rkdumpctl([Path::new("recv"), &input, Path::new("-o"), &out]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("ELF header lays out"));
    assert!(!out.exists() && !dir.join("vmcore.incomplete").exists());
}

#[test]
fn recv_rebuilds_a_kdump_file_sent_out_of_order() {
    let (file, stream) = kdump_dump();
    recv_exact("kdump-ok", &stream, &file);
    assert_eq!(&file[..8], b"KDUMP   ");
}

#[test]
fn recv_reports_a_lost_kdump_frame_as_a_hole_and_partial_marks_the_file() {
    let (file, mut stream) = kdump_dump();
    // Lose the 5th data frame whole (a serial line drops bytes; the decoder skips the rest).
    let first = data_payload(&stream, 4) - FRAME_HEADER_SIZE;
    let next = data_payload(&stream, 5) - FRAME_HEADER_SIZE;
    let offset = u64::from_le_bytes(stream[first + 12..first + 20].try_into().unwrap());
    let len = (next - first - FRAME_HEADER_SIZE) as u64;
    stream.drain(first..next);
    let dir = scratch("kdump-hole");
    let (input, out) = (dir.join("serial.bin"), dir.join("vmcore"));
    std::fs::write(&input, &stream).unwrap();
    let o = rkdumpctl([Path::new("recv"), &input, Path::new("-o"), &out]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    let hole = format!("missing file bytes {offset:#x}..{:#x}", offset + len);
    assert!(err.contains(&hole), "{hole} not in {err}");
    assert!(!out.exists());

    let (o, out) = recv_partial("kdump-hole-partial", &stream);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("marked incomplete"), "{err}");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), file.len());
    let (s, e) = (offset as usize, (offset + len) as usize);
    assert!(got[s..e].iter().all(|&b| b == 0));
    assert!(got[e..] == file[e..]);
    // disk_dump_header.status (0x1A8) gained DUMP_DH_COMPRESSED_INCOMPLETE (0x8).
    let status = |f: &[u8]| u32::from_le_bytes(f[0x1a8..0x1ac].try_into().unwrap());
    assert_eq!(status(&got), status(&file) | 0x8);
}
