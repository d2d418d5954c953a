//! Errors that end a bondcheck command, and the exit code each one maps to.
//!
//! Exit codes are part of the CLI contract (README): 0 every check passed, 1 a check failed or a
//! case could not be carried out, 2 bad input or usage, 3 no bonding kernel available.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an input file something is: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(path: &Path, line: usize, column: usize) -> Self {
        Location {
            path: path.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec, suite case or topology file is wrong at a known place.
    #[error("{at}: {message}")]
    Input { at: Location, message: String },
    /// A file named by the user (or by another file) cannot be read at all.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// The command line itself is wrong.
    #[error("{0}")]
    Usage(String),
    /// No backend can give a kernel with a bonding driver.
    #[error("{0}")]
    NoKernel(String),
    /// The kernel, a guest or the operating system failed us while carrying out a run.
    #[error("{0}")]
    Run(String),
}

impl Error {
    pub fn input(path: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Error::Input {
            at: Location::new(path, line, column),
            message: message.into(),
        }
    }

    pub fn file(path: &Path, err: &std::io::Error) -> Self {
        let message = match err.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            _ => err.to_string(),
        };
        Error::File {
            path: path.to_path_buf(),
            message,
        }
    }

    pub fn run(message: impl Into<String>) -> Self {
        Error::Run(message.into())
    }

    /// The offending line of the input file with a caret under the column, when there is one.
    pub fn caret(&self) -> Option<String> {
        let Error::Input { at, .. } = self else {
            return None;
        };
        let text = std::fs::read_to_string(&at.path).ok()?;
        let line = text.lines().nth(at.line.checked_sub(1)?)?;
        let gutter = at.line.to_string().len();
        Some(format!(
            "{:>gutter$} | {line}\n{:>gutter$} | {}^\n",
            at.line,
            "",
            " ".repeat(at.column.saturating_sub(1))
        ))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. } | Error::File { .. } | Error::Usage(_) => 2,
            Error::NoKernel(_) => 3,
            Error::Run(_) => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A TOML syntax or schema error in `text` (the contents of `path`), placed at its line.
    pub fn toml(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let (line, column) = err
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        Error::input(
            path,
            line,
            column,
            err.message().trim_end().replace('\n', "; "),
        )
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
