//! QEMU's machine protocol (QMP) from the host harness: a guest started with
//! [`Qmp::args`] listens on a Unix socket in its run directory; [`Qmp::connect`] waits for it,
//! negotiates capabilities, and [`Qmp::execute`] sends one command and waits for its answer
//! (events in between are skipped). Used by the bench's `dump-guest-memory` anchor and by
//! hotplug tests (`device_add`).
//!
//! Commands and answers are JSON objects, one per line (QEMU's docs/interop/qmp-spec). The
//! harness builds commands as text and only needs to tell a `return` from an `error`, so no
//! JSON library is pulled in: an answer line is classified by its top-level key.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A QMP session.
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

/// What a QMP exchange could end with.
#[derive(Debug)]
pub enum QmpError {
    /// The socket never appeared or refused the connection.
    Connect(String),
    /// Reading or writing the socket failed, or QEMU closed it.
    Io(String),
    /// QEMU answered with an error object (the whole line).
    Command(String),
    /// No answer within the time allowed.
    Timeout(Duration),
}

impl std::fmt::Display for QmpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QmpError::Connect(e) => write!(f, "QMP connect: {e}"),
            QmpError::Io(e) => write!(f, "QMP: {e}"),
            QmpError::Command(l) => write!(f, "QMP error answer: {l}"),
            QmpError::Timeout(d) => write!(f, "no QMP answer within {} s", d.as_secs()),
        }
    }
}

impl std::error::Error for QmpError {}

/// The kind of one line QEMU sent.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Greeting,
    Return,
    Error,
    Event,
    Other,
}

/// Classifies a QMP line by its first top-level key (QEMU writes `{"return": ...}`,
/// `{"error": ...}`, `{"event": ...}` or `{"QMP": ...}`, key first).
fn classify(line: &str) -> Answer {
    let t = line.trim_start().trim_start_matches('{').trim_start();
    if t.starts_with("\"QMP\"") {
        Answer::Greeting
    } else if t.starts_with("\"return\"") {
        Answer::Return
    } else if t.starts_with("\"error\"") {
        Answer::Error
    } else if t.starts_with("\"event\"") || t.starts_with("\"timestamp\"") {
        Answer::Event
    } else {
        Answer::Other
    }
}

impl Qmp {
    /// QEMU arguments that make it listen for one QMP client on `socket`.
    pub fn args(socket: &Path) -> [String; 2] {
        [
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", socket.display()),
        ]
    }

    /// The socket path of a run directory.
    pub fn socket_in(dir: &Path) -> PathBuf {
        dir.join("qmp.sock")
    }

    /// Connects (retrying until `timeout` while QEMU starts), reads the greeting and enters
    /// command mode.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() >= timeout => {
                    return Err(QmpError::Connect(format!("{}: {e}", socket.display())));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let writer = stream
            .try_clone()
            .map_err(|e| QmpError::Io(e.to_string()))?;
        let mut q = Qmp {
            writer,
            reader: BufReader::new(stream),
        };
        let left = timeout
            .saturating_sub(t0.elapsed())
            .max(Duration::from_secs(5));
        match q.next_line(left)? {
            l if classify(&l) == Answer::Greeting => {}
            l => return Err(QmpError::Io(format!("expected the QMP greeting, got {l}"))),
        }
        q.execute(r#"{"execute": "qmp_capabilities"}"#, left)?;
        Ok(q)
    }

    fn next_line(&mut self, timeout: Duration) -> Result<String, QmpError> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| QmpError::Io(e.to_string()))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(QmpError::Io("QEMU closed the QMP socket".into())),
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(QmpError::Timeout(timeout))
            }
            Err(e) => Err(QmpError::Io(e.to_string())),
        }
    }

    /// Sends one command (a JSON object as text) and waits up to `timeout` for its answer;
    /// returns the `return` line, or the `error` line as [`QmpError::Command`].
    pub fn execute(&mut self, command: &str, timeout: Duration) -> Result<String, QmpError> {
        writeln!(self.writer, "{command}").map_err(|e| QmpError::Io(e.to_string()))?;
        let t0 = Instant::now();
        loop {
            let left = timeout
                .checked_sub(t0.elapsed())
                .ok_or(QmpError::Timeout(timeout))?;
            let line = self.next_line(left)?;
            match classify(&line) {
                Answer::Return => return Ok(line),
                Answer::Error => return Err(QmpError::Command(line)),
                Answer::Event | Answer::Greeting | Answer::Other => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn answers_are_classified_by_their_key() {
        assert_eq!(
            classify(r#"{"QMP": {"version": {}, "capabilities": []}}"#),
            Answer::Greeting
        );
        assert_eq!(classify(r#"{"return": {}}"#), Answer::Return);
        assert_eq!(
            classify(r#"{"error": {"class": "GenericError", "desc": "x"}}"#),
            Answer::Error
        );
        assert_eq!(
            classify(r#"{"timestamp": {"seconds": 1}, "event": "DUMP_COMPLETED"}"#),
            Answer::Event
        );
        assert_eq!(classify("garbage"), Answer::Other);
    }

    /// A fake QEMU on a socket: greeting, capabilities, an event before an answer, an error.
    #[test]
    fn a_session_skips_events_and_reports_errors() {
        let dir = std::env::temp_dir().join(format!("rkdump-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = Qmp::socket_in(&dir);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"));
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("dump-guest-memory"));
            writeln!(w, r#"{{"timestamp": {{"seconds": 1}}, "event": "STOP"}}"#).unwrap();
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            writeln!(
                w,
                r#"{{"error": {{"class": "GenericError", "desc": "no"}}}}"#
            )
            .unwrap();
        });
        let mut q = Qmp::connect(&sock, Duration::from_secs(10)).unwrap();
        let ok = q
            .execute(
                r#"{"execute": "dump-guest-memory", "arguments": {}}"#,
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(ok, r#"{"return": {}}"#);
        let err = q
            .execute(r#"{"execute": "device_add"}"#, Duration::from_secs(10))
            .unwrap_err();
        assert!(matches!(err, QmpError::Command(ref l) if l.contains("GenericError")));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_socket_is_a_connect_error() {
        let e = Qmp::connect(
            Path::new("/nonexistent/qmp.sock"),
            Duration::from_millis(300),
        )
        .err()
        .unwrap();
        assert!(matches!(e, QmpError::Connect(_)), "{e}");
    }
}
