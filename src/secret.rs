//! The credential: reading it from its source, and deciding what a newly read value means
//! for the one in use (swap, reject, ignore). Knows nothing of HTTP.

use std::fmt;
use std::fs::{self, FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, SecretSource};

/// A secret file larger than this (before trimming) is an error, not a credential.
pub(crate) const MAX_FILE_BYTES: u64 = 4096;

/// How long a read of the secret file may take before it counts as failed (a FIFO, a hung
/// network or FUSE mount). The read goes on in its thread; the loop does not wait for it.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `O_NONBLOCK` of Linux's generic ABI (x86, arm, aarch64, riscv, powerpc, s390x; alpha,
/// mips, parisc and sparc differ), rather than a direct `libc` dependency for one constant.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "powerpc64",
    target_arch = "s390x"
))]
const O_NONBLOCK: i32 = 0o4000;

/// Why a credential could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The file could not be opened or read (the message is the OS error, lowercase).
    Io { path: PathBuf, message: String },
    /// The path names a FIFO, a socket, a device or a directory (`what`: "a FIFO", ...).
    NotRegular { path: PathBuf, what: &'static str },
    /// The read did not finish within `READ_TIMEOUT`.
    Timeout { path: PathBuf },
    /// The file holds more than `MAX_FILE_BYTES`.
    TooLarge { path: PathBuf },
    /// The file is not UTF-8 text.
    NotText { path: PathBuf },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { path, message } => {
                write!(f, "cannot read {}: {message}", path.display())
            }
            ReadError::NotRegular { path, what } => {
                write!(
                    f,
                    "cannot read {}: not a regular file ({what})",
                    path.display()
                )
            }
            ReadError::Timeout { path } => write!(
                f,
                "cannot read {}: the read did not finish within {}s",
                path.display(),
                READ_TIMEOUT.as_secs()
            ),
            ReadError::TooLarge { path } => {
                write!(
                    f,
                    "cannot use {}: larger than {MAX_FILE_BYTES} bytes",
                    path.display()
                )
            }
            ReadError::NotText { path } => {
                write!(f, "cannot use {}: not UTF-8 text", path.display())
            }
        }
    }
}

impl ReadError {
    /// Whether the error may be the passing state of an update in progress (the kubelet
    /// swaps `..data` first and gives the new file its group for `fsGroup` after that): the
    /// file is missing, unreadable or not a file. A file read whole but unusable, or a read
    /// that hung, is not.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, ReadError::Io { .. } | ReadError::NotRegular { .. })
    }
}

/// Lowercase, without Rust's " (os error N)" suffix: `no such file or directory`.
pub(crate) fn io_message(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

impl SecretSource {
    /// The credential of a source that cannot fail or change, or else the file to read it
    /// from (with `read_file`, on the reader thread of `events.rs`).
    pub(crate) fn fixed(&self) -> Result<String, &Path> {
        match self {
            SecretSource::File(path) => Err(path),
            SecretSource::Flag(v) | SecretSource::Env(v) => Ok(v.clone()),
            SecretSource::Default => Ok(config::default_secret().to_string()),
        }
    }

    /// Whether the value can change while the process runs.
    pub(crate) fn can_change(&self) -> bool {
        matches!(self, SecretSource::File(_))
    }

    /// Where the value comes from, for log lines.
    pub(crate) fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("the file {}", p.display()),
            SecretSource::Flag(_) => "the --mysecret option".into(),
            SecretSource::Env(_) => "the MYSECRET environment variable".into(),
            SecretSource::Default => "the built-in default".into(),
        }
    }
}

/// Reads a credential file through any symlinks (the kubelet's `..data` indirection is
/// resolved afresh on every open), refuses more than `MAX_FILE_BYTES`, trims trailing
/// whitespace. Only a regular file is read: the open does not wait for a FIFO's writer
/// (`O_NONBLOCK`), and a FIFO, socket, device or directory is refused by its type. It may
/// still block on a hung filesystem: the request loop calls it on a thread of its own
/// (`events.rs`).
pub(crate) fn read_file(path: &Path) -> Result<String, ReadError> {
    let io_err = |e: io::Error| ReadError::Io {
        path: path.to_path_buf(),
        message: io_message(&e),
    };
    let not_regular = |what| ReadError::NotRegular {
        path: path.to_path_buf(),
        what,
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        // A socket cannot be opened at all (ENXIO), a device may refuse it: name the type
        // when the path has one that is not a file.
        Err(e) => {
            return Err(
                match fs::metadata(path).ok().and_then(|m| kind(m.file_type())) {
                    Some(what) => not_regular(what),
                    None => io_err(e),
                },
            )
        }
    };
    if let Some(what) = kind(file.metadata().map_err(io_err)?.file_type()) {
        return Err(not_regular(what));
    }
    let mut buf = Vec::with_capacity(64);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(buf).map_err(|_| ReadError::NotText {
        path: path.to_path_buf(),
    })?;
    Ok(text.trim_end_matches(['\n', '\r', ' ', '\t']).to_string())
}

/// What a file of type `t` is when it is not a regular file; `None` for a regular file.
fn kind(t: FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("of an unknown type")
    }
}

/// How a check was triggered: explicit triggers always re-check and count their outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A change seen by the file watch, or the safety re-read every `--watch-interval`.
    Watch,
    /// SIGHUP or `POST /-/reload`.
    Explicit,
}

/// What one check of the source changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing new: same credential, or the same rejected content as last time.
    Unchanged,
    /// The source holds the credential in use again (after a rejection, or on an explicit check).
    Confirmed,
    /// A new valid credential is now in use.
    Swapped { generation: u64 },
    /// The new content was refused; the last good credential stays in use.
    Rejected { reason: String },
}

/// What the last check saw, to count a failure once per distinct content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Value(String),
    Error(ReadError),
}

/// The credential in use and the reload bookkeeping that `/metrics` reports.
#[derive(Debug)]
pub(crate) struct Credential {
    in_use: String,
    generation: u64,
    last_seen: Seen,
    /// Successful reloads (swaps and explicit confirmations).
    pub(crate) successes: u64,
    /// Rejected reloads, once per distinct content (every explicit trigger counts).
    pub(crate) failures: u64,
    /// Whether the source holds the credential in use.
    pub(crate) last_successful: bool,
    /// Unix time of the last successful load or reload.
    pub(crate) last_success_unix: Duration,
}

impl Credential {
    /// A credential that passed the startup validation: generation 1.
    pub(crate) fn new(value: String, now_unix: Duration) -> Credential {
        Credential {
            last_seen: Seen::Value(value.clone()),
            in_use: value,
            generation: 1,
            successes: 0,
            failures: 0,
            last_successful: true,
            last_success_unix: now_unix,
        }
    }

    /// The credential in use.
    pub(crate) fn value(&self) -> &str {
        &self.in_use
    }

    /// 1 at start, +1 each time a different valid credential is swapped in.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Applies one read of the source. `accepts` is the remote service's verdict.
    pub(crate) fn observe(
        &mut self,
        read: Result<String, ReadError>,
        accepts: impl Fn(&str) -> bool,
        trigger: Trigger,
        now_unix: Duration,
    ) -> Outcome {
        let seen = match &read {
            Ok(v) => Seen::Value(v.clone()),
            Err(e) => Seen::Error(e.clone()),
        };
        let repeat = seen == self.last_seen && trigger == Trigger::Watch;
        self.last_seen = seen;
        let value = match read {
            Err(e) => {
                if repeat {
                    return Outcome::Unchanged;
                }
                return self.reject(e.to_string());
            }
            Ok(v) => v,
        };
        if value == self.in_use {
            if self.last_successful && trigger == Trigger::Watch {
                return Outcome::Unchanged;
            }
            self.last_successful = true;
            if trigger == Trigger::Explicit {
                self.successes += 1;
                self.last_success_unix = now_unix;
            }
            return Outcome::Confirmed;
        }
        if repeat {
            return Outcome::Unchanged;
        }
        if !accepts(&value) {
            return self.reject("the remote service refused the new credential".into());
        }
        self.in_use = value;
        self.generation += 1;
        self.successes += 1;
        self.last_successful = true;
        self.last_success_unix = now_unix;
        Outcome::Swapped {
            generation: self.generation,
        }
    }

    fn reject(&mut self, reason: String) -> Outcome {
        self.failures += 1;
        self.last_successful = false;
        Outcome::Rejected { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn accepts(v: &str) -> bool {
        v == "4321" || v == "5678"
    }

    fn ok(v: &str) -> Result<String, ReadError> {
        Ok(v.to_string())
    }

    fn gone() -> Result<String, ReadError> {
        Err(ReadError::Io {
            path: "/s".into(),
            message: "no such file or directory".into(),
        })
    }

    #[test]
    fn unchanged_content_does_nothing() {
        let mut c = Credential::new("4321".into(), secs(1));
        assert_eq!(
            c.observe(ok("4321"), accepts, Trigger::Watch, secs(2)),
            Outcome::Unchanged
        );
        assert_eq!((c.generation(), c.successes, c.failures), (1, 0, 0));
        assert_eq!(c.last_success_unix, secs(1));
    }

    #[test]
    fn a_valid_change_swaps_and_bumps_the_generation() {
        let mut c = Credential::new("4321".into(), secs(1));
        assert_eq!(
            c.observe(ok("5678"), accepts, Trigger::Watch, secs(2)),
            Outcome::Swapped { generation: 2 }
        );
        assert_eq!(
            (c.value(), c.generation(), c.successes, c.failures),
            ("5678", 2, 1, 0)
        );
        assert!(c.last_successful);
        assert_eq!(c.last_success_unix, secs(2));
    }

    #[test]
    fn a_bad_change_is_rejected_once_per_content_and_the_old_value_stays() {
        let mut c = Credential::new("4321".into(), secs(1));
        assert!(matches!(
            c.observe(ok("9999"), accepts, Trigger::Watch, secs(2)),
            Outcome::Rejected { .. }
        ));
        assert_eq!(
            c.observe(ok("9999"), accepts, Trigger::Watch, secs(3)),
            Outcome::Unchanged
        );
        assert_eq!((c.value(), c.generation(), c.failures), ("4321", 1, 1));
        assert!(!c.last_successful);
        // another bad content counts again
        assert!(matches!(
            c.observe(ok("0000"), accepts, Trigger::Watch, secs(4)),
            Outcome::Rejected { .. }
        ));
        assert_eq!(c.failures, 2);
        // an explicit trigger re-checks and counts
        assert!(matches!(
            c.observe(ok("0000"), accepts, Trigger::Explicit, secs(5)),
            Outcome::Rejected { .. }
        ));
        assert_eq!(c.failures, 3);
    }

    #[test]
    fn reverting_to_the_value_in_use_restores_success_without_a_new_generation() {
        let mut c = Credential::new("4321".into(), secs(1));
        c.observe(ok("9999"), accepts, Trigger::Watch, secs(2));
        assert_eq!(
            c.observe(ok("4321"), accepts, Trigger::Watch, secs(3)),
            Outcome::Confirmed
        );
        assert!(c.last_successful);
        assert_eq!((c.generation(), c.successes, c.failures), (1, 0, 1));
    }

    #[test]
    fn an_unreadable_file_is_rejected_once() {
        let mut c = Credential::new("4321".into(), secs(1));
        assert!(
            matches!(c.observe(gone(), accepts, Trigger::Watch, secs(2)), Outcome::Rejected { reason } if reason.contains("no such file"))
        );
        assert_eq!(
            c.observe(gone(), accepts, Trigger::Watch, secs(3)),
            Outcome::Unchanged
        );
        assert_eq!((c.value(), c.failures), ("4321", 1));
    }

    #[test]
    fn an_explicit_check_of_the_value_in_use_counts_a_success() {
        let mut c = Credential::new("4321".into(), secs(1));
        assert_eq!(
            c.observe(ok("4321"), accepts, Trigger::Explicit, secs(2)),
            Outcome::Confirmed
        );
        assert_eq!((c.generation(), c.successes), (1, 1));
        assert_eq!(c.last_success_unix, secs(2));
    }

    #[test]
    fn going_back_to_an_earlier_valid_value_is_a_new_generation() {
        let mut c = Credential::new("4321".into(), secs(1));
        c.observe(ok("5678"), accepts, Trigger::Watch, secs(2));
        assert_eq!(
            c.observe(ok("4321"), accepts, Trigger::Watch, secs(3)),
            Outcome::Swapped { generation: 3 }
        );
    }

    #[test]
    fn only_a_regular_file_is_read_and_the_others_are_named() {
        let dir = std::env::temp_dir().join(format!("hello-path-rs-kinds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let socket = dir.join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (path, what) in [
            (dir.clone(), "a directory"),
            (fifo, "a FIFO"), // a FIFO without a writer: the open must not wait for one
            (socket, "a socket"),
            (PathBuf::from("/dev/null"), "a character device"),
        ] {
            let e = read_file(&path).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "cannot read {}: not a regular file ({what})",
                    path.display()
                )
            );
            assert!(e.is_transient());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn io_messages_are_lowercase_without_os_error() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_message(&e), "no such file or directory");
    }

    #[test]
    fn files_are_trimmed_and_bounded() {
        let dir = std::env::temp_dir().join(format!("hello-path-rs-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "4321 \r\n\n").unwrap();
        assert_eq!(read_file(&f), Ok("4321".into()));
        std::fs::write(&f, vec![b'a'; 4096]).unwrap();
        assert_eq!(read_file(&f).map(|s| s.len()), Ok(4096));
        std::fs::write(&f, vec![b'a'; 4097]).unwrap();
        assert!(matches!(read_file(&f), Err(ReadError::TooLarge { .. })));
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_file(&f), Err(ReadError::NotText { .. })));
        assert!(
            matches!(read_file(&dir.join("missing")), Err(ReadError::Io { message, .. }) if message == "no such file or directory")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
