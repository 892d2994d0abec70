//! Reading a response's body: the body cap, decoding its `Content-Encoding` ([`super::coding`])
//! and keeping the bytes as sent beside the decoded body.

use bytes::{Bytes, BytesMut};
use futures::FutureExt as _;
use reqwest::header;
use url::Url;

use super::{FetchError, classify, coding};

/// Reads the body, at most `max` bytes, decoding its `Content-Encoding` when the fetcher
/// knows it ([`coding`]).
pub(super) async fn read(
    url: &Url,
    response: reqwest::Response,
    max: usize,
) -> Result<ReadBody, FetchError> {
    let values: Option<Vec<&str>> = response
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    match values.and_then(coding::Decoder::for_codings) {
        None => read_as_sent(url, response, max).await,
        Some(Ok(decoder)) => read_decoded(url, response, max, decoder).await,
        Some(Err(source)) => Err(FetchError::Undecodable {
            url: url.to_string(),
            coding: values_of(&response, header::CONTENT_ENCODING),
            source,
        }),
    }
}

/// A body as read.
pub(super) struct ReadBody {
    /// The body the worker sees, decoded.
    pub(super) body: Bytes,
    /// It was cut.
    pub(super) truncated: bool,
    /// The body as sent and whether it was cut, when it was decoded.
    pub(super) encoded: Option<(Bytes, bool)>,
}

/// The values of a response header, comma-separated.
fn values_of(response: &reqwest::Response, name: header::HeaderName) -> String {
    let values: Vec<String> = response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    values.join(", ")
}

/// The first buffer of a body of `content_length` bytes, if known, read up to `max`.
fn first_buffer(content_length: Option<u64>, max: usize) -> BytesMut {
    let expected = content_length.map_or(16 * 1024, |n| usize::try_from(n).unwrap_or(max));
    BytesMut::with_capacity(expected.min(max))
}

/// Reads a body that is kept as sent, at most `max` bytes.
async fn read_as_sent(
    url: &Url,
    mut response: reqwest::Response,
    max: usize,
) -> Result<ReadBody, FetchError> {
    let mut body = first_buffer(response.content_length(), max);
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(url, e))? {
        let room = max - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(ReadBody {
                body: body.freeze(),
                truncated: true,
                encoded: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(ReadBody {
        body: body.freeze(),
        truncated: false,
        encoded: None,
    })
}

/// Reads a body with `decoder`: the decoded body and the bytes as sent, each at most `max`
/// bytes. Reading stops as soon as either reaches `max`.
async fn read_decoded(
    url: &Url,
    mut response: reqwest::Response,
    max: usize,
    mut decoder: coding::Decoder,
) -> Result<ReadBody, FetchError> {
    let content_length = response.content_length();
    let mut sent = first_buffer(content_length, max);
    // Text compresses about four to one; the buffer grows from there.
    let mut body = BytesMut::with_capacity(sent.capacity().saturating_mul(4).min(max));
    // Why reading stopped early: the bytes as sent reached `max` (`Some(true)`), or the
    // decoded body did (`Some(false)`).
    let mut stopped = None;
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(url, e))? {
        let room = max - sent.len();
        let taken = &chunk[..chunk.len().min(room)];
        sent.extend_from_slice(taken);
        let flow =
            decoder
                .feed(taken, &mut body, max)
                .map_err(|source| FetchError::Undecodable {
                    url: url.to_string(),
                    coding: decoder.codings(),
                    source,
                })?;
        if taken.len() < chunk.len() {
            stopped = Some(true);
            break;
        }
        if flow == coding::Flow::Full {
            stopped = Some(false);
            break;
        }
    }
    if sent.is_empty() {
        // Nothing was decoded (a 204, a 304, an empty body labelled gzip): the body is as
        // sent, and its headers describe it.
        return Ok(ReadBody {
            body: Bytes::new(),
            truncated: false,
            encoded: None,
        });
    }
    let sent_cut = match stopped {
        None => false,
        Some(true) => true,
        // Only the decoded body was cut: the bytes as sent are whole if all had arrived.
        // Without a Content-Length, ask the body, without waiting, whether it had ended.
        Some(false) => match content_length {
            Some(n) => u64::try_from(sent.len()).map_or(true, |len| len < n),
            None => !matches!(response.chunk().now_or_never(), Some(Ok(None))),
        },
    };
    Ok(ReadBody {
        body: body.freeze(),
        truncated: stopped.is_some(),
        encoded: Some((sent.freeze(), sent_cut)),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use url::Url;

    use super::super::coding::tests::{MIB, br, gzip, gzip_bomb, page, raw_deflate, zstd};
    use crate::fetch::{FetchConfig, FetchError, FetchErrorKind, Fetched, Fetcher, RequestOptions};

    /// Answers every connection on 127.0.0.1 with `head` (status line and headers, each
    /// line ending in CRLF) and `body`, then closes it.
    async fn serve(head: String, body: Vec<u8>) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let response = std::sync::Arc::new([head.as_bytes(), b"\r\n", &body].concat());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    // The client may hang up once it has read enough.
                    let _ = socket.write_all(&response).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Url::parse(&format!("http://{addr}/page")).unwrap()
    }

    /// `head` for a body labelled `coding`, of `length` bytes.
    fn head(coding: &str, length: usize) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-encoding: {coding}\r\n\
             content-length: {length}\r\nconnection: close\r\n"
        )
    }

    async fn fetch(url: &Url, max_body: usize) -> Result<Fetched, FetchError> {
        let fetcher = Fetcher::new(FetchConfig {
            allow_private_networks: true,
            max_body,
            ..FetchConfig::default()
        })
        .unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            fetcher.fetch(url, &RequestOptions::default(), |_| false),
        )
        .await
        .expect("the fetch hung")
    }

    #[tokio::test]
    async fn an_encoded_body_is_decoded_and_kept_as_sent() {
        let page = page();
        for (coding, data) in [
            ("gzip", gzip(&page)),
            ("deflate", raw_deflate(&page)),
            ("br", br(&page)),
            ("zstd", zstd(&page)),
        ] {
            let url = serve(head(coding, data.len()), data.clone()).await;
            let fetched = fetch(&url, 10 * MIB).await.unwrap();
            assert!(fetched.body == page, "{coding}");
            assert!(!fetched.truncated);
            // What the worker sees describes the decoded body...
            assert_eq!(fetched.header("content-encoding"), None, "{coding}");
            assert_eq!(fetched.header("content-length"), None, "{coding}");
            assert_eq!(fetched.header("content-type"), Some("text/html"));
            assert_eq!(
                fetched.request_headers["accept-encoding"],
                ["gzip, deflate, br, zstd"]
            );
            // ...and the body as sent is kept with the headers that describe it.
            let encoded = fetched.encoded.expect("kept as sent");
            assert!(encoded.body == data, "{coding}");
            assert!(!encoded.truncated);
            assert_eq!(encoded.headers.len(), 2);
            assert_eq!(encoded.headers["content-encoding"], [coding]);
            assert_eq!(encoded.headers["content-length"], [data.len().to_string()]);
        }
    }

    #[tokio::test]
    async fn a_chunked_encoded_body_is_kept_de_chunked() {
        let page = page();
        let data = gzip(&page);
        let mut chunked = Vec::new();
        for piece in data.chunks(1000) {
            chunked.extend(format!("{:x}\r\n", piece.len()).into_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let head = "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\
                    connection: close\r\n";
        let fetched = fetch(&serve(head.into(), chunked).await, 10 * MIB)
            .await
            .unwrap();
        assert!(fetched.body == page);
        assert_eq!(fetched.header("transfer-encoding"), Some("chunked"));
        let encoded = fetched.encoded.expect("kept as sent");
        assert!(encoded.body == data);
        assert!(!encoded.truncated);
        assert_eq!(
            encoded.headers.keys().collect::<Vec<_>>(),
            ["content-encoding"]
        );
    }

    #[tokio::test]
    async fn a_compression_bomb_is_cut_at_the_cap_and_reading_stops() {
        // 100 MiB of zeros in about 100 KB.
        let bomb = gzip_bomb(b"", 100);
        let url = serve(head("gzip", bomb.len()), bomb.clone()).await;
        let fetched = fetch(&url, MIB).await.unwrap();
        assert!(fetched.truncated);
        assert_eq!(fetched.body.len(), MIB);
        let encoded = fetched.encoded.expect("kept as sent");
        assert!(encoded.truncated);
        assert!(
            encoded.body.len() < bomb.len() / 4,
            "{} of {} bytes read",
            encoded.body.len(),
            bomb.len()
        );
        assert!(bomb.starts_with(&encoded.body));
    }

    #[tokio::test]
    async fn a_bomb_that_arrived_whole_is_cut_but_its_bytes_as_sent_are_whole() {
        // 1 MiB of zeros in about 1 KB, which arrives in one piece.
        let bomb = gzip_bomb(b"", 1);
        let url = serve(head("gzip", bomb.len()), bomb.clone()).await;
        let fetched = fetch(&url, 64 * 1024).await.unwrap();
        assert!(fetched.truncated);
        assert_eq!(fetched.body.len(), 64 * 1024);
        let encoded = fetched.encoded.expect("kept as sent");
        assert!(!encoded.truncated);
        assert!(encoded.body == bomb);
    }

    #[tokio::test]
    async fn bytes_as_sent_beyond_the_cap_cut_the_body() {
        // Random bytes do not compress: stored deflate blocks, longer than the data.
        let noise: Vec<u8> = (0..200_000).map(|_| fastrand::u8(..)).collect();
        let data = gzip(&noise);
        let url = serve(head("gzip", data.len()), data.clone()).await;
        let fetched = fetch(&url, 100_000).await.unwrap();
        assert!(fetched.truncated);
        assert!(noise.starts_with(&fetched.body));
        let encoded = fetched.encoded.expect("kept as sent");
        assert!(encoded.truncated);
        assert_eq!(encoded.body.len(), 100_000);
        assert!(data.starts_with(&encoded.body));
    }

    #[tokio::test]
    async fn a_coding_not_decoded_is_kept_as_sent_with_its_headers() {
        let url = serve(head("compress", 9), b"\x1f\x9dnot lzw".to_vec()).await;
        let fetched = fetch(&url, MIB).await.unwrap();
        assert_eq!(fetched.body.as_ref(), b"\x1f\x9dnot lzw");
        assert_eq!(fetched.header("content-encoding"), Some("compress"));
        assert_eq!(fetched.header("content-length"), Some("9"));
        assert!(fetched.encoded.is_none());
    }

    #[tokio::test]
    async fn an_empty_body_labelled_gzip_is_an_empty_page_with_its_headers() {
        let url = serve(head("gzip", 0), Vec::new()).await;
        let fetched = fetch(&url, MIB).await.unwrap();
        assert!(fetched.body.is_empty());
        assert_eq!(fetched.header("content-encoding"), Some("gzip"));
        assert!(fetched.encoded.is_none());
    }

    #[tokio::test]
    async fn a_corrupt_body_fails_the_fetch_as_undecodable() {
        let mut data = gzip(&page());
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
        let url = serve(head("gzip", data.len()), data).await;
        let err = fetch(&url, 10 * MIB).await.unwrap_err();
        assert!(matches!(err, FetchError::Undecodable { .. }), "{err:?}");
        assert_eq!(err.kind(), FetchErrorKind::Undecodable);
        assert_eq!(err.kind().as_str(), "undecodable");
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            format!("decoding the gzip body of {url} failed")
        );
    }
}
