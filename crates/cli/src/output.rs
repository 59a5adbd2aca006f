//! All terminal output goes through one [`Printer`]: data on stdout (so it can be piped),
//! everything else (status, progress, errors, hints) on stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt;
use std::io::Write;

/// An error that carries a suggestion for what the user should do next.
///
/// Attach it with [`hint`] anywhere in a command; [`Printer::error`] finds it in the
/// error chain and prints it after the message, uv-style.
#[derive(Debug)]
pub struct Hinted {
    /// What went wrong, in one sentence.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// Builds an error with a hint.
pub fn hint(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// The one place that writes to the terminal.
#[derive(Debug, Clone)]
pub struct Printer {
    /// Suppresses status lines and progress (never data or errors).
    quiet: bool,
}

impl Printer {
    /// A printer; `quiet` silences status and progress on stderr.
    pub fn new(quiet: bool) -> Self {
        Self { quiet }
    }

    /// Whether progress bars should be drawn.
    pub fn shows_progress(&self) -> bool {
        !self.quiet
    }

    /// Writes one line of data to stdout.
    pub fn data(&self, line: impl fmt::Display) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = writeln!(out, "{line}");
    }

    /// Writes raw bytes to stdout (response bodies, file contents).
    pub fn bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// Writes a JSON value as one line of data.
    pub fn json(&self, value: &serde_json::Value) {
        self.data(value);
    }

    /// A status line for humans on stderr.
    pub fn status(&self, line: impl fmt::Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Reports an error: the message, its causes, then the hint if any.
    pub fn error(&self, err: &anyhow::Error) {
        eprintln!("error: {err}");
        let mut hint = None;
        for cause in err.chain() {
            if let Some(h) = cause.downcast_ref::<Hinted>() {
                hint.get_or_insert_with(|| h.hint.clone());
            }
        }
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
    }
}

/// Logs go to stderr through `tracing`; `RUST_LOG` overrides the `-v` level.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,khachapuri=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a terminal: logs piped into files or other tools stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
