//! Passwords: given in an environment variable or a file, kept out of every log line.

use std::path::Path;

/// A password. Its `Debug` shows whether it is set, never its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, to hand to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a password from a file (a mounted Secret); one trailing newline is dropped, as
    /// `echo` and `kubectl create secret --from-file` leave one.
    ///
    /// # Errors
    /// [`super::Error::ReadFile`] naming `what` and the file.
    pub fn from_file(what: &'static str, path: &Path) -> super::Result<Self> {
        let bytes = super::read(what, path)?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        Ok(Self(text.to_owned()))
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The password given directly, else the one in `file`, else none.
pub(crate) fn resolve(
    what: &'static str,
    direct: Option<&Secret>,
    file: Option<&Path>,
) -> super::Result<Option<Secret>> {
    match (direct, file) {
        (Some(secret), _) => Ok(Some(secret.clone())),
        (None, Some(path)) => Secret::from_file(what, path).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret: Secret = "hunter2".parse().expect("infallible");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn a_file_loses_its_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("kc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pw");
        std::fs::write(&path, "p a ss\n").expect("write");
        let secret = Secret::from_file("a password", &path).expect("read");
        assert_eq!(secret.expose(), "p a ss");
        let missing = Secret::from_file("a password", &dir.join("nope"));
        assert!(matches!(
            missing,
            Err(crate::connect::Error::ReadFile { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
