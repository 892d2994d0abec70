//! WARC output: the pages a worker fetched, as WARC/1.1 files (ISO 28500).
//!
//! With `--warc-dir`, a worker writes, for every page it hands to its spider (any status, after
//! the redirects it followed inline), three records: `request`, `response` and `metadata`,
//! linked by `WARC-Concurrent-To` to the response. Each file starts with a `warcinfo` record.
//! Every record is a gzip member of its own (at `--warc-gzip-level`, 6 by default), so a
//! reader can seek to any record's offset.
//!
//! The worker writes the files, not a consumer of the Kafka firehose: only the worker has the
//! page as the server sent it (a page record's body is charset-decoded text or base64, and
//! it carries no HTTP request).
//!
//! # What the records hold
//! - `request`: the request line (`GET`, the final URL's path and query, the HTTP version the
//!   response came with), a `host` header and the headers the worker set (User-Agent, Accept,
//!   Accept-Encoding, the job's Cookie and the Referer). Its payload is empty.
//! - `response`: the status line, the response headers as the server sent them, then the
//!   entity body as received: de-chunked (the transfer coding undone) but still in its
//!   content coding. A body sent with `Content-Encoding: gzip` (or deflate, br, zstd) is
//!   stored compressed, byte for byte as sent, with the server's `content-encoding` and
//!   `content-length`; the spider and the page record get the decoded body, which the
//!   fetcher decodes from a copy as the body streams ([`crate::fetch`]). The payload digest
//!   is over the bytes as sent. `transfer-encoding` is renamed
//!   `x-crawler-transfer-encoding`; `content-length` is always the length of the body in the
//!   record, and a server's different value (a cut body) is kept as
//!   `x-crawler-content-length`. A body the worker stopped reading before its end has
//!   `WARC-Truncated: length`: its bytes as sent reached the body cap, or their decoded form
//!   did (a compression bomb is cut after a few KB). Header names are lower case and in name
//!   order, as the client hands them over; bytes of a value that are not UTF-8 are replaced.
//! - `metadata` (`application/warc-fields`): `appid`, `crawlid`, `spiderid`, `depth`, `via`
//!   (the referer), `fetchTimeMs`, one `redirect` per hop followed inline (in order), and
//!   `outlinks` (the links the spider's record of the page holds).
//! - `warcinfo`: `software`, `format`, `conformsTo`, `worker`, `spiderid`,
//!   `http-header-user-agent`.
//!
//! Digests are SHA-1 in base 32 (`sha1:` and 32 letters), as common WARC tools write and check
//! them: `WARC-Block-Digest` over the record's whole block, `WARC-Payload-Digest` over the
//! HTTP body of `request` and `response` records.
//!
//! # Files
//! `<dir>/<prefix>-<UTC yyyymmddhhmmss>-<worker>-<serial>.warc.gz`, written as
//! `….warc.gz.open` and renamed once closed. A file is closed when it reaches `max_bytes`,
//! when it is `max_age` old (checked while idle too) and when the worker stops; closing
//! fsyncs it before the rename.
//!
//! # Guarantees
//! - [`WarcWriter::write`] returns `Ok` once the page's three records were written to the open
//!   file (handed to the operating system; fsynced when the file is closed). The runtime
//!   publishes a page's items and acknowledges its lease only after that, and gives the lease
//!   back when it returns an error, as when Kafka is unreachable.
//! - A record is never cut by a failed write: the file is truncated back to its last whole
//!   page and closed, and the next page opens a new file.
//! - At-least-once, like the firehose: a page whose lease expired while its worker was still
//!   working, or whose items could not be published after its records were written, is
//!   fetched and written again.
//! - A worker killed without its shutdown leaves its `.open` file: every page acknowledged
//!   before is whole in it.
//!
//! # Not archived
//! robots.txt fetches, fetches that ended without a response, answers that are retried (429,
//! 5xx while retries are left; the last try's answer is a page) and the intermediate 3xx of
//! redirects followed inline (their URLs are in the metadata record).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use kubecrawl_api::page::Headers;
use ring::rand::{SecureRandom, SystemRandom};
use sha1::{Digest as _, Sha1};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use url::Url;

use crate::metrics::Metrics;

/// Pages whose records may wait for the writer thread at once. Every lease task waits for
/// its page's answer, so no more than the fetch concurrency wait at a time (64 by default);
/// beyond this bound senders wait for room. Each holds its page's compressed records, so the
/// queue holds at most this many times a compressed page (about 128 MiB with the default
/// 1 MiB body cap, a few MiB for ordinary pages).
const QUEUE_PAGES: usize = 128;

/// The most pages the writer takes from its queue before it answers them. The pages of a
/// batch are answered together, so a larger batch only delays the first ones.
const MAX_BATCH: usize = 64;

/// Records are compressed in the lease's task up to this body size, like pages are parsed
/// there (well under a millisecond); larger bodies on a blocking thread.
const INLINE_ENCODE_BYTES: usize = 128 * 1024;

/// The WARC version written on each record's first line.
const WARC_VERSION: &str = "WARC/1.1";

/// Why WARC output failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The WARC directory could not be created or written to (at start-up).
    #[error("the warc directory {dir} is not writable")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The settings cannot work.
    #[error("invalid warc settings: {reason}")]
    Settings {
        /// What is wrong.
        reason: &'static str,
    },
    /// The writer thread could not be started.
    #[error("starting the warc writer thread failed")]
    Spawn {
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A new WARC file could not be created.
    #[error("creating {path} failed")]
    Create {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Records could not be written to the open file.
    #[error("writing to {path} failed")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A full file could not be fsynced or renamed to its final name.
    #[error("closing {path} failed")]
    Close {
        /// The file (its `.open` name).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The system's random number generator failed (record ids).
    #[error("the system random number generator failed")]
    Random,
    /// Compressing a large page's records on a blocking thread failed (that thread panicked).
    #[error("encoding the records on a blocking thread failed")]
    Encode,
    /// The writer thread is gone (the writer was closed, or the thread died).
    #[error("the warc writer has stopped")]
    Stopped,
}

/// The crate's result type for WARC output.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and how WARC files are written.
#[derive(Debug, Clone)]
pub struct WarcConfig {
    /// The directory of the files; created if missing.
    pub dir: PathBuf,
    /// The start of every file name.
    pub prefix: String,
    /// A file is closed once it holds this many (compressed) bytes.
    pub max_bytes: u64,
    /// A file is closed once it is this old.
    pub max_age: Duration,
    /// The worker's name, in file names and the warcinfo record.
    pub worker_name: String,
    /// The spider the worker serves, in the warcinfo record.
    pub spiderid: String,
    /// The worker's default User-Agent, in the warcinfo record.
    pub user_agent: String,
    /// The gzip level of every record, 0 (stored) to 9.
    pub gzip_level: u32,
}

/// One fetched page as its WARC records describe it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The URL of the final response (after the redirects followed inline).
    pub url: Url,
    /// When the response was received.
    pub fetched_at: SystemTime,
    /// The server's address, when the HTTP client reported it.
    pub ip: Option<IpAddr>,
    /// The HTTP version of the exchange: `HTTP/1.1`, `HTTP/2`, ...
    pub http_version: &'static str,
    /// The headers the worker set on the request (lower-case names).
    pub request_headers: Headers,
    /// The response's status code.
    pub status: u16,
    /// Its reason phrase.
    pub reason: String,
    /// The response headers as sent (lower-case names), `content-encoding` included.
    pub response_headers: Headers,
    /// The entity body as received: de-chunked, still in its content coding, at most the
    /// body cap.
    pub body: Bytes,
    /// The body was cut: reading stopped before its end.
    pub truncated: bool,
    /// The fields of the metadata record, in order.
    pub metadata: Vec<(String, String)>,
}

/// Makes `WARC-Record-ID`s: `<urn:uuid:…>` of random (version 4) UUIDs from the system's
/// random number generator. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RecordIds {
    rng: SystemRandom,
}

impl Default for RecordIds {
    fn default() -> Self {
        Self {
            rng: SystemRandom::new(),
        }
    }
}

impl RecordIds {
    /// A fresh id.
    ///
    /// # Errors
    /// [`Error::Random`] when the system's generator fails.
    pub fn next_id(&self) -> Result<String> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).map_err(|_| Error::Random)?;
        Ok(record_id(bytes))
    }
}

/// `<urn:uuid:…>` of 16 random bytes, as a version 4 (random) UUID.
fn record_id(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "<urn:uuid:{}-{}-{}-{}-{}>",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// RFC 4648 base 32 (upper case, with padding).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    for chunk in data.chunks(5) {
        let mut block = [0u8; 5];
        block[..chunk.len()].copy_from_slice(chunk);
        let bits = block.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        // 8 bits per input byte, 5 per output letter, rounded up.
        let letters = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < letters {
                let index = (bits >> (35 - 5 * i)) & 0x1f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `sha1:` and the base 32 SHA-1 of the concatenated `parts`.
fn sha1(parts: &[&[u8]]) -> String {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    format!("sha1:{}", base32(&hasher.finalize()))
}

thread_local! {
    /// This thread's deflate state, reused from record to record: setting one up allocates
    /// and zeroes some 300 KB, which per record cost more than compressing a small page.
    static DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
}

/// Appends `parts`, concatenated, to `out` as one gzip member (RFC 1952) compressed at `level`.
fn gzip_member(parts: &[&[u8]], level: Compression, out: &mut Vec<u8>) {
    // No name, no time, no flags; OS "unknown".
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut crc = Crc::new();
    DEFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compress = match &mut *slot {
            Some((kept, compress)) if *kept == level.level() => {
                compress.reset();
                compress
            }
            other => &mut other.insert((level.level(), Compress::new(level, false))).1,
        };
        for part in parts {
            crc.update(part);
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                out.reserve(rest.len() / 2 + 1024);
                let before = compress.total_in();
                compress
                    .compress_vec(rest, out, FlushCompress::None)
                    .expect("deflate accepts any input");
                let taken = usize::try_from(compress.total_in() - before)
                    .expect("at most the input's length");
                rest = &rest[taken..];
            }
        }
        loop {
            out.reserve(1024);
            let status = compress
                .compress_vec(&[], out, FlushCompress::Finish)
                .expect("deflate finishes any input");
            if status == Status::StreamEnd {
                break;
            }
        }
    });
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
}

/// A time as WARC 1.1 writes it: UTC with microseconds, `2026-12-05T20:12:07.123456Z`.
fn warc_date(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// One record, before it is encoded.
struct Record<'a> {
    warc_type: &'static str,
    id: &'a str,
    date: &'a str,
    target_uri: Option<&'a str>,
    concurrent_to: Option<&'a str>,
    ip: Option<IpAddr>,
    content_type: &'static str,
    /// More header fields (`WARC-Truncated`, `WARC-Filename`).
    extra: &'a [(&'static str, &'a str)],
    /// The block's head: HTTP headers or warc-fields.
    head: &'a [u8],
    /// The rest of the block: the HTTP body (the payload) or nothing.
    payload: &'a [u8],
    /// Whether the record has a `WARC-Payload-Digest` (HTTP records).
    payload_digest: bool,
    level: Compression,
}

impl Record<'_> {
    /// Appends the record, as one gzip member, to `out`.
    fn encode_into(&self, out: &mut Vec<u8>) {
        let mut header = format!(
            "{WARC_VERSION}\r\nWARC-Type: {}\r\nWARC-Record-ID: {}\r\nWARC-Date: {}\r\n",
            self.warc_type, self.id, self.date
        );
        if let Some(uri) = self.target_uri {
            header.push_str(&format!("WARC-Target-URI: {uri}\r\n"));
        }
        if let Some(to) = self.concurrent_to {
            header.push_str(&format!("WARC-Concurrent-To: {to}\r\n"));
        }
        if let Some(ip) = self.ip {
            header.push_str(&format!("WARC-IP-Address: {ip}\r\n"));
        }
        for (name, value) in self.extra {
            header.push_str(&format!("{name}: {value}\r\n"));
        }
        header.push_str(&format!(
            "WARC-Block-Digest: {}\r\n",
            sha1(&[self.head, self.payload])
        ));
        if self.payload_digest {
            header.push_str(&format!(
                "WARC-Payload-Digest: {}\r\n",
                sha1(&[self.payload])
            ));
        }
        header.push_str(&format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
            self.content_type,
            self.head.len() + self.payload.len()
        ));
        gzip_member(
            &[header.as_bytes(), self.head, self.payload, b"\r\n\r\n"],
            self.level,
            out,
        );
    }
}

/// `name: value` lines, each value on one line.
fn warc_fields(fields: &[(String, String)]) -> Vec<u8> {
    let mut out = String::new();
    for (name, value) in fields {
        let value = value.replace(['\r', '\n'], " ");
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.into_bytes()
}

impl Exchange {
    /// The request record's block: request line, `host`, the headers the worker set.
    fn request_head(&self) -> Vec<u8> {
        let target = &self.url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut head = format!("GET {target} {}\r\n", self.http_version);
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => head.push_str(&format!("host: {host}:{port}\r\n")),
            None => head.push_str(&format!("host: {host}\r\n")),
        }
        for (name, values) in &self.request_headers {
            if name == "host" {
                continue;
            }
            for value in values {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// The response record's head: status line and headers, with the headers that describe
    /// the bytes on the wire and not in the record renamed (see the module docs) and
    /// `content-length` the length of the body in the record.
    fn response_head(&self) -> Vec<u8> {
        let mut head = format!("{} {} {}\r\n", self.http_version, self.status, self.reason);
        let length = self.body.len().to_string();
        for (name, values) in &self.response_headers {
            let renamed = match name.as_str() {
                "transfer-encoding" => true,
                "content-length" => values.iter().any(|v| v.trim() != length),
                _ => false,
            };
            if name == "content-length" && !renamed {
                continue;
            }
            for value in values {
                if renamed {
                    head.push_str(&format!("x-crawler-{name}: {value}\r\n"));
                } else {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
            }
        }
        head.push_str(&format!("content-length: {length}\r\n\r\n"));
        head.into_bytes()
    }

    /// The page's request, response and metadata records, each a gzip member compressed at
    /// `level`, with ids from `ids`.
    ///
    /// # Errors
    /// [`Error::Random`] when no id can be made.
    pub fn encode(&self, ids: &RecordIds, level: Compression) -> Result<Vec<u8>> {
        let response_id = ids.next_id()?;
        let request_id = ids.next_id()?;
        let metadata_id = ids.next_id()?;
        let date = warc_date(self.fetched_at);
        let uri = self.url.as_str();
        let request_head = self.request_head();
        let response_head = self.response_head();
        let metadata = warc_fields(&self.metadata);
        let truncated: &[(&str, &str)] = if self.truncated {
            &[("WARC-Truncated", "length")]
        } else {
            &[]
        };
        let mut out = Vec::with_capacity(self.body.len() / 3 + 4096);
        Record {
            warc_type: "request",
            id: &request_id,
            date: &date,
            target_uri: Some(uri),
            concurrent_to: Some(&response_id),
            ip: None,
            content_type: "application/http;msgtype=request",
            extra: &[],
            head: &request_head,
            payload: &[],
            payload_digest: true,
            level,
        }
        .encode_into(&mut out);
        Record {
            warc_type: "response",
            id: &response_id,
            date: &date,
            target_uri: Some(uri),
            concurrent_to: None,
            ip: self.ip,
            content_type: "application/http;msgtype=response",
            extra: truncated,
            head: &response_head,
            payload: &self.body,
            payload_digest: true,
            level,
        }
        .encode_into(&mut out);
        Record {
            warc_type: "metadata",
            id: &metadata_id,
            date: &date,
            target_uri: Some(uri),
            concurrent_to: Some(&response_id),
            ip: None,
            content_type: "application/warc-fields",
            extra: &[],
            head: &metadata,
            payload: &[],
            payload_digest: false,
            level,
        }
        .encode_into(&mut out);
        Ok(out)
    }
}

/// The `warcinfo` record that opens the file `filename`.
fn warcinfo(config: &WarcConfig, filename: &str, at: SystemTime, id: &str) -> Vec<u8> {
    let fields = warc_fields(&[
        (
            "software".to_owned(),
            format!("kubecrawl-worker/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("format".to_owned(), "WARC File Format 1.1".to_owned()),
        (
            "conformsTo".to_owned(),
            "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"
                .to_owned(),
        ),
        ("worker".to_owned(), config.worker_name.clone()),
        ("spiderid".to_owned(), config.spiderid.clone()),
        (
            "http-header-user-agent".to_owned(),
            config.user_agent.clone(),
        ),
    ]);
    let date = warc_date(at);
    let mut out = Vec::new();
    Record {
        warc_type: "warcinfo",
        id,
        date: &date,
        target_uri: None,
        concurrent_to: None,
        ip: None,
        content_type: "application/warc-fields",
        extra: &[("WARC-Filename", filename)],
        head: &fields,
        payload: &[],
        payload_digest: false,
        level: Compression::new(config.gzip_level),
    }
    .encode_into(&mut out);
    out
}

/// `<prefix>-<yyyymmddhhmmss>-<worker>-<serial>.warc.gz`; characters of the worker's name
/// that do not belong in a file name become `_`.
fn file_name(prefix: &str, at: SystemTime, worker: &str, serial: u64) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let worker: String = worker
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}-{stamp}-{worker}-{serial:05}.warc.gz")
}

/// A page's encoded records on their way to the writer thread.
struct Pending {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Result<()>>,
    /// Its place in the queue, given back once written.
    _room: OwnedSemaphorePermit,
}

enum Message {
    Write(Pending),
    /// Close the open file and stop.
    Close(oneshot::Sender<Result<()>>),
}

/// Writes pages as WARC records into rolling files, on a thread of its own so that file I/O
/// never blocks the async runtime. See the module docs for the guarantees.
#[derive(Debug)]
pub struct WarcWriter {
    queue: mpsc::Sender<Message>,
    room: Arc<Semaphore>,
    ids: RecordIds,
    level: Compression,
}

impl WarcWriter {
    /// Checks the settings and the directory (created if missing, and written to once), then
    /// starts the writer thread. The first file is created with the first page.
    ///
    /// # Errors
    /// [`Error::Settings`] for a zero size or age, [`Error::Directory`] for a directory that
    /// cannot be created or written, [`Error::Spawn`] when the thread cannot start.
    pub fn start(config: WarcConfig, metrics: Metrics) -> Result<Self> {
        if config.max_bytes == 0 {
            return Err(Error::Settings {
                reason: "the most bytes of a file must be more than 0",
            });
        }
        if config.max_age.is_zero() {
            return Err(Error::Settings {
                reason: "the longest age of a file must be more than 0",
            });
        }
        if config.gzip_level > 9 {
            return Err(Error::Settings {
                reason: "the gzip level must be 0 to 9",
            });
        }
        if config.prefix.is_empty() || config.prefix.contains('/') {
            return Err(Error::Settings {
                reason: "the file name prefix must be non-empty and hold no '/'",
            });
        }
        check_directory(&config.dir).map_err(|source| Error::Directory {
            dir: config.dir.clone(),
            source: Arc::new(source),
        })?;
        let (queue, pages) = mpsc::channel();
        let ids = RecordIds::default();
        let level = Compression::new(config.gzip_level);
        let files = Files {
            config,
            ids: ids.clone(),
            metrics,
            serial: 0,
            open: None,
        };
        std::thread::Builder::new()
            .name("warc-writer".to_owned())
            .spawn(move || files.run(&pages))
            .map_err(|source| Error::Spawn {
                source: Arc::new(source),
            })?;
        Ok(Self {
            queue,
            room: Arc::new(Semaphore::new(QUEUE_PAGES)),
            ids,
            level,
        })
    }

    /// Writes the page's request, response and metadata records; returns once they are in
    /// the open file.
    ///
    /// # Errors
    /// [`Error::Create`] or [`Error::Write`] when the file could not be created or written
    /// (disk full, directory gone), [`Error::Stopped`] after [`Self::close`].
    pub async fn write(&self, exchange: Exchange) -> Result<()> {
        let bytes = if exchange.body.len() <= INLINE_ENCODE_BYTES {
            exchange.encode(&self.ids, self.level)?
        } else {
            let (ids, level) = (self.ids.clone(), self.level);
            tokio::task::spawn_blocking(move || exchange.encode(&ids, level))
                .await
                .map_err(|_| Error::Encode)??
        };
        let room = self
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Stopped)?;
        let (reply, replied) = oneshot::channel();
        self.queue
            .send(Message::Write(Pending {
                bytes,
                reply,
                _room: room,
            }))
            .map_err(|_| Error::Stopped)?;
        replied.await.map_err(|_| Error::Stopped)?
    }

    /// Writes what is queued, closes the open file (fsync, rename) and stops the thread.
    /// Closing twice is closing once.
    ///
    /// # Errors
    /// [`Error::Close`] when the file could not be fsynced or renamed; its records are in its
    /// `.open` file.
    pub async fn close(&self) -> Result<()> {
        let (reply, replied) = oneshot::channel();
        if self.queue.send(Message::Close(reply)).is_err() {
            return Ok(());
        }
        replied.await.unwrap_or(Ok(()))
    }
}

/// Creates `dir` if missing and writes and removes a file in it.
fn check_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".kubecrawl-probe-{}", std::process::id()));
    File::create(&probe)?.write_all(b"probe")?;
    std::fs::remove_file(&probe)
}

/// The file being written.
struct OpenFile {
    file: File,
    /// Its name while written (`….open`).
    open_path: PathBuf,
    /// Its name once closed.
    final_path: PathBuf,
    /// Bytes written so far, all of them whole records.
    len: u64,
    opened: Instant,
}

/// The writer thread's state: the settings and the open file.
struct Files {
    config: WarcConfig,
    ids: RecordIds,
    metrics: Metrics,
    /// The serial number of the next file.
    serial: u64,
    open: Option<OpenFile>,
}

impl Files {
    /// Writes what arrives, in batches, until closed or every sender is gone; closes a file
    /// that gets too old while idle.
    fn run(mut self, pages: &mpsc::Receiver<Message>) {
        loop {
            let age_left = self
                .open
                .as_ref()
                .map(|f| self.config.max_age.saturating_sub(f.opened.elapsed()));
            let first = match age_left {
                Some(left) => match pages.recv_timeout(left) {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.close_logged();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        self.close_logged();
                        return;
                    }
                },
                None => match pages.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            let mut batch = Vec::new();
            let mut close = None;
            match first {
                Message::Write(page) => batch.push(page),
                Message::Close(reply) => close = Some(reply),
            }
            while close.is_none() && batch.len() < MAX_BATCH {
                match pages.try_recv() {
                    Ok(Message::Write(page)) => batch.push(page),
                    Ok(Message::Close(reply)) => close = Some(reply),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write_batch(batch);
            }
            if let Some(reply) = close {
                let closed = self.close();
                if let Err(e) = &closed {
                    self.metrics.warc_error("close");
                    tracing::error!(error = %kubecrawl_process::format_chain(e), "closing the warc file failed");
                }
                let _ = reply.send(closed);
                return;
            }
        }
    }

    /// Writes the batch's pages and answers each.
    fn write_batch(&mut self, batch: Vec<Pending>) {
        if self
            .open
            .as_ref()
            .is_some_and(|f| f.opened.elapsed() >= self.config.max_age)
        {
            self.close_logged();
        }
        let written = self.append(&batch);
        for page in batch {
            let _ = page.reply.send(written.clone());
        }
        if written.is_ok()
            && self
                .open
                .as_ref()
                .is_some_and(|f| f.len >= self.config.max_bytes)
        {
            self.close_logged();
        }
    }

    /// Appends the pages to the open file (a new one if none is open). On a failed write the
    /// file is cut back to its last whole page and closed.
    fn append(&mut self, batch: &[Pending]) -> Result<()> {
        if self.open.is_none() {
            self.open = Some(self.create()?);
        }
        let file = self.open.as_mut().expect("a file was opened above");
        let mut written = 0u64;
        let mut failed = None;
        for page in batch {
            if let Err(e) = file.file.write_all(&page.bytes) {
                failed = Some(e);
                break;
            }
            written += page.bytes.len() as u64;
        }
        let Some(source) = failed else {
            file.len += written;
            self.metrics.warc_written(3 * batch.len() as u64, written);
            return Ok(());
        };
        let path = file.open_path.clone();
        if let Err(e) = file.file.set_len(file.len) {
            tracing::error!(error = %e, path = %path.display(), "cutting a warc file back to its last whole record failed");
        }
        self.close_logged();
        Err(Error::Write {
            path,
            source: Arc::new(source),
        })
    }

    /// Creates the next file and writes its warcinfo record.
    fn create(&mut self) -> Result<OpenFile> {
        let now = SystemTime::now();
        let name = file_name(
            &self.config.prefix,
            now,
            &self.config.worker_name,
            self.serial,
        );
        self.serial += 1;
        let final_path = self.config.dir.join(&name);
        let open_path = self.config.dir.join(format!("{name}.open"));
        let create = |source| Error::Create {
            path: open_path.clone(),
            source: Arc::new(source),
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&open_path)
            .map_err(create)?;
        let info = warcinfo(&self.config, &name, now, &self.ids.next_id()?);
        if let Err(e) = file.write_all(&info) {
            let _ = std::fs::remove_file(&open_path);
            return Err(create(e));
        }
        self.metrics.warc_written(1, info.len() as u64);
        tracing::info!(path = %open_path.display(), "warc file opened");
        Ok(OpenFile {
            file,
            open_path,
            final_path,
            len: info.len() as u64,
            opened: Instant::now(),
        })
    }

    /// Closes the open file, if any: fsync, then the rename to its final name.
    fn close(&mut self) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let failed = |source| Error::Close {
            path: open.open_path.clone(),
            source: Arc::new(source),
        };
        open.file.sync_all().map_err(failed)?;
        std::fs::rename(&open.open_path, &open.final_path).map_err(failed)?;
        // The rename is durable once the directory is; a failure here loses nothing written.
        if let Ok(dir) = File::open(&self.config.dir) {
            let _ = dir.sync_all();
        }
        self.metrics.warc_file_closed();
        tracing::info!(path = %open.final_path.display(), bytes = open.len, "warc file closed");
        Ok(())
    }

    /// [`Self::close`], logging and counting a failure (the records stay in the `.open` file).
    fn close_logged(&mut self) {
        if let Err(e) = self.close() {
            self.metrics.warc_error("close");
            tracing::error!(error = %kubecrawl_process::format_chain(&e), "closing the warc file failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn base32_is_rfc_4648() {
        // RFC 4648, section 10.
        for (input, want) in [
            ("", ""),
            ("f", "MY======"),
            ("fo", "MZXQ===="),
            ("foo", "MZXW6==="),
            ("foob", "MZXW6YQ="),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI======"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn digests_are_base32_sha1() {
        // Computed apart: Python's base64.b32encode(hashlib.sha1(data).digest()).
        assert_eq!(sha1(&[b"abc"]), "sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE5");
        assert_eq!(sha1(&[b""]), "sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ");
        assert_eq!(
            sha1(&[b"HTTP/1.1 200 OK\r\n\r\n", b"abc"]),
            "sha1:HQKNH2NGZ2BZ27KBTACJFDT37URZITEZ"
        );
    }

    #[test]
    fn gzip_members_decode_whatever_the_level_and_the_reuse() {
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut out = Vec::new();
        for level in [6, 6, 1, 0, 9, 6] {
            gzip_member(&[b"head:", &big, b""], Compression::new(level), &mut out);
        }
        gzip_member(&[], Compression::default(), &mut out);
        let mut data: &[u8] = &out;
        let mut members = 0;
        while !data.is_empty() {
            let mut gz = flate2::bufread::GzDecoder::new(data);
            let mut plain = Vec::new();
            gz.read_to_end(&mut plain).unwrap();
            if members < 6 {
                assert_eq!(&plain[..5], b"head:");
                assert_eq!(&plain[5..], &big[..]);
            } else {
                assert!(plain.is_empty());
            }
            data = gz.into_inner();
            members += 1;
        }
        assert_eq!(members, 7);
    }

    #[test]
    fn record_ids_are_version_4_uuids() {
        assert_eq!(
            record_id([0xff; 16]),
            "<urn:uuid:ffffffff-ffff-4fff-bfff-ffffffffffff>"
        );
        assert_eq!(
            record_id([0; 16]),
            "<urn:uuid:00000000-0000-4000-8000-000000000000>"
        );
        let ids = RecordIds::default();
        let (a, b) = (ids.next_id().unwrap(), ids.next_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), "<urn:uuid:>".len() + 36);
    }

    #[test]
    fn file_names_carry_prefix_time_worker_and_serial() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        assert_eq!(
            file_name("crawl", at, "worker-7f/x y", 12),
            "crawl-20261130005320-worker-7f_x_y-00012.warc.gz"
        );
    }

    fn exchange(body: &'static [u8]) -> Exchange {
        let mut response_headers = Headers::new();
        response_headers.insert("content-type".into(), vec!["text/html".into()]);
        response_headers.insert("transfer-encoding".into(), vec!["chunked".into()]);
        response_headers.insert("content-length".into(), vec!["20".into()]);
        response_headers.insert(
            "set-cookie".into(),
            vec!["a=1".into(), "b=2; Path=/".into()],
        );
        let mut request_headers = Headers::new();
        request_headers.insert("user-agent".into(), vec!["kubecrawl-test".into()]);
        Exchange {
            url: Url::parse("http://site.test:8080/p/1?q=2").unwrap(),
            fetched_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000),
            ip: Some("127.0.0.1".parse().unwrap()),
            http_version: "HTTP/1.1",
            request_headers,
            status: 200,
            reason: "OK".into(),
            response_headers,
            body: Bytes::from_static(body),
            truncated: false,
            metadata: vec![
                ("appid".into(), "app".into()),
                ("redirect".into(), "http://site.test:8080/r/1".into()),
            ],
        }
    }

    /// Splits concatenated gzip members into their decompressed records.
    fn members(mut data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let mut gz = flate2::bufread::GzDecoder::new(data);
            let mut text = String::new();
            gz.read_to_string(&mut text).unwrap();
            out.push(text);
            data = gz.into_inner();
        }
        out
    }

    /// The header field `name` of a record.
    fn field<'a>(record: &'a str, name: &str) -> &'a str {
        record
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {record}"))
    }

    #[test]
    fn a_page_is_three_gzip_members_request_response_metadata() {
        let bytes = exchange(b"<p>hi</p>")
            .encode(&RecordIds::default(), Compression::default())
            .unwrap();
        let records = members(&bytes);
        assert_eq!(records.len(), 3);
        let (request, response, metadata) = (&records[0], &records[1], &records[2]);
        for (record, kind) in [
            (request, "request"),
            (response, "response"),
            (metadata, "metadata"),
        ] {
            assert!(record.starts_with("WARC/1.1\r\n"), "{record}");
            assert_eq!(field(record, "WARC-Type"), kind);
            assert_eq!(
                field(record, "WARC-Target-URI"),
                "http://site.test:8080/p/1?q=2"
            );
            assert_eq!(field(record, "WARC-Date"), "2026-11-30T00:53:20.000000Z");
            assert!(record.ends_with("\r\n\r\n"));
            // Content-Length counts the block: from after the blank line to the trailer.
            let (head, rest) = record.split_once("\r\n\r\n").unwrap();
            let block = &rest[..rest.len() - 4];
            assert_eq!(
                field(head, "Content-Length").parse::<usize>().unwrap(),
                block.len()
            );
            assert_eq!(field(head, "WARC-Block-Digest"), sha1(&[block.as_bytes()]));
        }
        let response_id = field(response, "WARC-Record-ID");
        assert_eq!(field(request, "WARC-Concurrent-To"), response_id);
        assert_eq!(field(metadata, "WARC-Concurrent-To"), response_id);
        assert_ne!(field(request, "WARC-Record-ID"), response_id);

        assert_eq!(
            field(response, "Content-Type"),
            "application/http;msgtype=response"
        );
        assert_eq!(field(response, "WARC-IP-Address"), "127.0.0.1");
        assert_eq!(
            field(response, "WARC-Payload-Digest"),
            sha1(&[b"<p>hi</p>"])
        );
        assert!(
            response.ends_with(
                "\r\n\r\nHTTP/1.1 200 OK\r\nx-crawler-content-length: 20\r\n\
                 content-type: text/html\r\nset-cookie: a=1\r\nset-cookie: b=2; Path=/\r\n\
                 x-crawler-transfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n\
                 <p>hi</p>\r\n\r\n"
            ),
            "{response}"
        );
        assert!(!response.contains("WARC-Truncated"));

        assert_eq!(
            field(request, "Content-Type"),
            "application/http;msgtype=request"
        );
        assert_eq!(field(request, "WARC-Payload-Digest"), sha1(&[b""]));
        assert!(
            request.ends_with(
                "\r\n\r\nGET /p/1?q=2 HTTP/1.1\r\nhost: site.test:8080\r\n\
                 user-agent: kubecrawl-test\r\n\r\n\r\n\r\n"
            ),
            "{request}"
        );

        assert_eq!(field(metadata, "Content-Type"), "application/warc-fields");
        assert!(!metadata.contains("WARC-Payload-Digest"));
        assert!(
            metadata
                .ends_with("\r\n\r\nappid: app\r\nredirect: http://site.test:8080/r/1\r\n\r\n\r\n"),
            "{metadata}"
        );
    }

    #[test]
    fn a_cut_body_is_marked_truncated_and_its_length_is_what_was_kept() {
        let mut page = exchange(b"0123456789");
        page.truncated = true;
        page.response_headers.remove("transfer-encoding");
        page.response_headers
            .insert("content-length".into(), vec!["5000".into()]);
        let records = members(
            &page
                .encode(&RecordIds::default(), Compression::default())
                .unwrap(),
        );
        let response = &records[1];
        assert_eq!(field(response, "WARC-Truncated"), "length");
        assert_eq!(field(response, "x-crawler-content-length"), "5000");
        assert_eq!(field(response, "content-length"), "10");
        assert!(!response.contains("transfer-encoding"));
    }

    #[test]
    fn a_matching_content_length_is_kept_once_and_an_undecoded_encoding_is_kept() {
        let mut page = exchange(b"12345678901234567890");
        page.response_headers.remove("transfer-encoding");
        // An encoding the client does not decode: the body is as the server sent it.
        page.response_headers
            .insert("content-encoding".into(), vec!["compress".into()]);
        let records = members(
            &page
                .encode(&RecordIds::default(), Compression::default())
                .unwrap(),
        );
        assert_eq!(records[1].matches("content-length: 20\r\n").count(), 1);
        assert_eq!(field(&records[1], "content-encoding"), "compress");
        assert!(!records[1].contains("x-crawler"));
    }

    fn config(dir: &Path, max_bytes: u64, max_age: Duration) -> WarcConfig {
        WarcConfig {
            dir: dir.to_owned(),
            prefix: "test".into(),
            max_bytes,
            max_age,
            worker_name: "w1".into(),
            spiderid: "link".into(),
            user_agent: "kubecrawl-test".into(),
            gzip_level: 6,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kubecrawl-warc-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The files of `dir`, by name.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// `(warc type, target URI)` of every record of a file.
    fn types(path: &Path) -> Vec<String> {
        members(&std::fs::read(path).unwrap())
            .iter()
            .map(|r| field(r, "WARC-Type").to_owned())
            .collect()
    }

    #[tokio::test]
    async fn files_roll_by_size_and_close_on_shutdown() {
        let dir = temp_dir("size");
        let metrics = Metrics::new();
        let settings = config(&dir, 1, Duration::from_secs(3600));
        let page = exchange(b"<p>hi</p>")
            .encode(&RecordIds::default(), Compression::default())
            .unwrap()
            .len();
        let name = file_name("test", SystemTime::now(), "w1", 0);
        let info = warcinfo(&settings, &name, SystemTime::now(), &record_id([0; 16])).len();
        // A file is closed by the page that takes it to the limit: the second of each file.
        let max_bytes = (info + page + page / 2) as u64;
        let writer = WarcWriter::start(
            WarcConfig {
                max_bytes,
                ..settings
            },
            metrics.clone(),
        )
        .unwrap();
        for _ in 0..5 {
            writer.write(exchange(b"<p>hi</p>")).await.unwrap();
        }
        let open = files(&dir);
        assert_eq!(open.len(), 3, "{open:?}");
        assert!(open[2].ends_with(".warc.gz.open"), "{open:?}");
        writer.close().await.unwrap();
        writer.close().await.unwrap();
        let closed = files(&dir);
        assert_eq!(closed.len(), 3);
        for (serial, name) in closed.iter().enumerate() {
            assert!(name.starts_with("test-"), "{name}");
            assert!(
                name.ends_with(&format!("-w1-{serial:05}.warc.gz")),
                "{name}"
            );
        }
        let pages = ["warcinfo", "request", "response", "metadata"];
        assert_eq!(
            types(&dir.join(&closed[0])),
            [&pages[..], &pages[1..]].concat()
        );
        assert_eq!(types(&dir.join(&closed[2])), pages);
        assert!(matches!(
            writer.write(exchange(b"late")).await,
            Err(Error::Stopped)
        ));
        let text = metrics.encode();
        assert!(
            text.contains("kubecrawl_worker_warc_records_total 18"),
            "{text}"
        );
        assert!(
            text.contains("kubecrawl_worker_warc_files_total 3"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_older_than_max_age_is_closed_even_while_idle() {
        let dir = temp_dir("age");
        let writer = WarcWriter::start(
            config(&dir, 1 << 30, Duration::from_millis(300)),
            Metrics::new(),
        )
        .unwrap();
        writer.write(exchange(b"one")).await.unwrap();
        assert!(files(&dir)[0].ends_with(".open"));
        // Idle: the writer thread closes the file once it is 300 ms old.
        let deadline = Instant::now() + Duration::from_secs(10);
        while files(&dir)[0].ends_with(".open") {
            assert!(Instant::now() < deadline, "the old file was never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        writer.write(exchange(b"two")).await.unwrap();
        writer.close().await.unwrap();
        let names = files(&dir);
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| n.ends_with(".warc.gz")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_page_that_cannot_be_written_is_an_error_not_a_panic() {
        let dir = temp_dir("gone");
        let writer = WarcWriter::start(
            config(&dir, 1 << 30, Duration::from_secs(3600)),
            Metrics::new(),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let err = writer.write(exchange(b"x")).await.unwrap_err();
        assert!(matches!(err, Error::Create { .. }), "{err:?}");
        // The directory back: the next page opens a file again.
        std::fs::create_dir_all(&dir).unwrap();
        writer.write(exchange(b"y")).await.unwrap();
        writer.close().await.unwrap();
        assert_eq!(files(&dir).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_settings_are_refused_at_start() {
        let dir = temp_dir("settings");
        for bad in [
            config(&dir, 0, Duration::from_secs(1)),
            config(&dir, 1, Duration::ZERO),
            WarcConfig {
                gzip_level: 10,
                ..config(&dir, 1, Duration::from_secs(1))
            },
        ] {
            assert!(matches!(
                WarcWriter::start(bad, Metrics::new()),
                Err(Error::Settings { .. })
            ));
        }
        let file = dir.join("a-file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            WarcWriter::start(config(&file, 1, Duration::from_secs(1)), Metrics::new()),
            Err(Error::Directory { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
