//! [`ConfigError`], and [`Source`]: the file being validated, which makes the errors located at a
//! value's line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// The field, as a dotted path (e.g. `ingress.externalIPs[0]`), when known.
    pub field: Option<String>,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The file a section is validated from: every error it makes names this file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    /// The file.
    pub(super) file: &'a Path,
}

impl<'a> Source<'a> {
    /// The values read from `file`.
    pub(super) fn new(file: &'a Path) -> Self {
        Source { file }
    }

    /// The directory relative paths of the file are relative to.
    pub(super) fn dir(&self) -> &'a Path {
        self.file.parent().unwrap_or_else(|| Path::new(""))
    }

    /// An error at the value `at`, in `field`.
    pub(super) fn err<T>(
        &self,
        at: &Spanned<T>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.err_at(
            (at.referenced.line(), at.referenced.column()),
            field,
            message,
        )
    }

    /// An error at this 1-based line and column, in `field`.
    pub(super) fn err_at(
        &self,
        (line, column): (u64, u64),
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            line: Some(line),
            column: Some(column),
            ..self.unlocated(field, message)
        }
    }

    /// An error in `field`, which the file does not set (so there is no line to name).
    pub(super) fn unlocated(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: None,
            column: None,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// The text of `at` once `check` accepts it; its complaint is an error in `field`.
    pub(super) fn checked(
        &self,
        at: &Spanned<String>,
        field: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Result<String, ConfigError> {
        check(&at.value).map_err(|m| self.err(at, field, m))?;
        Ok(at.value.clone())
    }
}

/// Where a value is, as 1-based line and column.
pub(super) fn position<T>(at: &Spanned<T>) -> (u64, u64) {
    (at.referenced.line(), at.referenced.column())
}
