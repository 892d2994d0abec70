//! JSON lines: one page record per line, to a file or standard output.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;
use kubecrawl_api::PageRecord;

use super::{Error, Sink};

/// Writes each record as one JSON line.
pub struct JsonLines {
    name: String,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl JsonLines {
    /// Writes to `path`, or to standard output when `path` is `-`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &str) -> Result<Self, Error> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout()))
        } else {
            let file = std::fs::File::create(path).map_err(|source| Error::Write {
                path: path.to_owned(),
                source,
            })?;
            Box::new(std::io::BufWriter::with_capacity(256 * 1024, file))
        };
        Ok(Self {
            name: path.to_owned(),
            out: Mutex::new(out),
        })
    }

    /// Writes to any writer (tests).
    pub fn to_writer(name: &str, out: Box<dyn Write + Send>) -> Self {
        Self {
            name: name.to_owned(),
            out: Mutex::new(out),
        }
    }
}

#[async_trait]
impl Sink for JsonLines {
    async fn publish(&self, record: &PageRecord) -> Result<(), Error> {
        let mut line = serde_json::to_vec(record).map_err(|source| Error::Encode {
            url: record.url.clone(),
            source,
        })?;
        line.push(b'\n');
        // A blocking write into a large buffer; the lock is never held across an await.
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.write_all(&line).map_err(|source| Error::Write {
            path: self.name.clone(),
            source,
        })
    }

    async fn flush(&self) -> Result<(), Error> {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.flush().map_err(|source| Error::Write {
            path: self.name.clone(),
            source,
        })
    }
}
