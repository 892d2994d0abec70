//! Content codings (RFC 9110, section 8.4.1): the fetcher decodes `gzip` (and `x-gzip`),
//! `deflate`, `br` and `zstd` bodies itself as they stream, not the HTTP client, so that it
//! keeps the bytes as the server sent them (for the WARC records) and counts the body cap on
//! the decoded bytes.
//!
//! # Rules
//! - The codings of `Content-Encoding` (comma-separated, over any number of header lines) are
//!   undone last applied first; `identity` is skipped. Up to [`MAX_CODINGS`] stacked codings
//!   are decoded. A response with more, or with any coding not listed above (`compress`, a
//!   typo), is not decoded: [`Decoder::for_codings`] returns `None` and its body is kept as
//!   sent, its headers untouched.
//! - `deflate` is zlib-wrapped data as RFC 9110 says, or raw deflate data as some servers send
//!   it and browsers accept: the first two bytes tell them apart (a zlib header is a multiple
//!   of 31 naming deflate), as browsers do.
//! - A gzip stream is its first member; what follows the end of a gzip, deflate or br
//!   stream is ignored, as browsers and curl ignore it. zstd data is any number of frames
//!   (skippable frames skipped), as libzstd decodes it.
//! - A body that ends before its coding's end (no gzip trailer, an unfinished stream)
//!   gives what decoded from it, as browsers show it.
//! - Data a decoder rejects (a bad header, a corrupt block, a wrong gzip checksum) is an
//!   error: the fetch fails as `undecodable`.
//!
//! # Bounds
//! Every stage's output is cut at the cap the caller gives (the body cap), so a compression
//! bomb, stacked or not, costs no more than the cap per stage. A brotli window is at most the
//! standard's 16 MiB (no "large window" streams) and a zstd window at most 8 MiB (RFC 8878's
//! limit for HTTP): a decoder's memory does not grow with what a server claims.

use std::fmt;
use std::io;

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use bytes::BytesMut;
use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, Operation as _};

/// The most content codings stacked on one response that are decoded; a response with more
/// is kept as sent. Two covers a body compressed twice; each stage holds a decoder's window.
pub(crate) const MAX_CODINGS: usize = 2;

/// The output a decoder writes per call at most: the step by which output buffers grow.
const STEP: usize = 32 * 1024;

/// The largest zstd window accepted, as a power of two: 8 MiB, RFC 8878's limit for the
/// `zstd` content coding.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A content coding the fetcher decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `gzip`, `x-gzip`.
    Gzip,
    /// `deflate`: zlib-wrapped or raw.
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Coding {
    /// The coding a `Content-Encoding` token names (case-insensitive); `None` for one not
    /// decoded.
    fn parse(token: &str) -> Option<Self> {
        [
            ("gzip", Self::Gzip),
            ("x-gzip", Self::Gzip),
            ("deflate", Self::Deflate),
            ("br", Self::Brotli),
            ("zstd", Self::Zstd),
        ]
        .into_iter()
        .find_map(|(name, coding)| token.eq_ignore_ascii_case(name).then_some(coding))
    }

    /// The coding's name, as in errors.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What feeding bytes to a [`Decoder`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// The input was taken; more may come.
    More,
    /// The output reached the cap and there was more: stop reading, the body is cut.
    Full,
}

/// Decodes one response's body, chunk by chunk, as it streams.
pub(crate) struct Decoder {
    /// In decoding order: the first takes the bytes as sent, the last writes the body.
    stages: Vec<Stage>,
    /// The output of each stage but the last, for the next; emptied for every chunk.
    between: Vec<BytesMut>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.stages.iter().map(|s| s.coding))
            .finish()
    }
}

impl Decoder {
    /// The decoder for a response's `Content-Encoding` values (one per header line), or `None`
    /// when its body is to be kept as sent: no coding but `identity`, a coding not decoded, or
    /// more than [`MAX_CODINGS`].
    ///
    /// # Errors
    /// When a decoder cannot be set up (zstd's context).
    pub(crate) fn for_codings<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Option<io::Result<Self>> {
        let mut applied = Vec::new();
        for token in values.into_iter().flat_map(|v| v.split(',')) {
            let token = token.trim();
            if token.is_empty() || token.eq_ignore_ascii_case("identity") {
                continue;
            }
            applied.push(Coding::parse(token)?);
        }
        if applied.is_empty() || applied.len() > MAX_CODINGS {
            return None;
        }
        let stages = applied.iter().rev().map(|&c| Stage::new(c));
        Some(stages.collect::<io::Result<Vec<_>>>().map(|stages| Self {
            between: vec![BytesMut::new(); stages.len() - 1],
            stages,
        }))
    }

    /// The codings as applied, comma-separated: `gzip`, `gzip, br`.
    pub(crate) fn codings(&self) -> String {
        let names: Vec<&str> = self
            .stages
            .iter()
            .rev()
            .map(|s| s.coding.as_str())
            .collect();
        names.join(", ")
    }

    /// Decodes `input`, the next bytes of the body as sent, and appends the result to `body`,
    /// which never grows past `cap` bytes.
    ///
    /// # Errors
    /// When a decoder rejects the data; the body holds what decoded before.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        body: &mut BytesMut,
        cap: usize,
    ) -> io::Result<Flow> {
        run(&mut self.stages, &mut self.between, input, body, cap)
    }
}

/// Runs `input` through `stages`, each stage's output the next one's input (through
/// `between`), the last one's appended to `out`.
fn run(
    stages: &mut [Stage],
    between: &mut [BytesMut],
    input: &[u8],
    out: &mut BytesMut,
    cap: usize,
) -> io::Result<Flow> {
    match (stages, between) {
        ([last], _) => {
            let room = cap.saturating_sub(out.len());
            last.decode(input, out, room)
        }
        ([first, rest @ ..], [mid, between @ ..]) => {
            mid.clear();
            let room = cap.saturating_sub(first.produced);
            let flow = first.decode(input, mid, room)?;
            first.produced += mid.len();
            let inner = run(rest, between, mid, out, cap)?;
            Ok(if flow == Flow::Full {
                Flow::Full
            } else {
                inner
            })
        }
        _ => unreachable!("a decoder has one stage and one buffer between two stages"),
    }
}

/// One coding being undone.
struct Stage {
    coding: Coding,
    state: State,
    /// Bytes written so far (for a stage before the last: the body counts the last's).
    produced: usize,
}

enum State {
    /// deflate, before its first two bytes tell zlib from raw data: the first, if it came.
    Sniff(Option<u8>),
    /// gzip or deflate.
    Inflate(Box<Decompress>),
    /// br.
    Brotli(Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>),
    /// zstd.
    Zstd(Box<zstd::stream::raw::Decoder<'static>>),
    /// The stream ended: what follows is ignored.
    Ended,
}

impl Stage {
    fn new(coding: Coding) -> io::Result<Self> {
        let state = match coding {
            Coding::Gzip => State::Inflate(Box::new(Decompress::new_gzip(15))),
            Coding::Deflate => State::Sniff(None),
            // The standard's windows only: a "large window" stream may ask for 1 GiB.
            Coding::Brotli => State::Brotli(Box::new(BrotliState::new_strict(
                StandardAlloc::default(),
                StandardAlloc::default(),
                StandardAlloc::default(),
            ))),
            Coding::Zstd => {
                let mut decoder = zstd::stream::raw::Decoder::new()?;
                decoder.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))?;
                State::Zstd(Box::new(decoder))
            }
        };
        Ok(Self {
            coding,
            state,
            produced: 0,
        })
    }

    /// Decodes `input`, appending at most `room` bytes to `out`; [`Flow::Full`] if it had
    /// more.
    fn decode(&mut self, mut input: &[u8], out: &mut BytesMut, room: usize) -> io::Result<Flow> {
        let mut left = room;
        // The last call filled the output: the decoder may hold more, even without input.
        let mut filled = false;
        while (!input.is_empty() || filled) && !matches!(self.state, State::Ended) {
            let start = out.len();
            // One byte more than the room, to tell a body of exactly `room` bytes from a
            // longer one.
            let step = STEP.min(left.saturating_add(1));
            out.resize(start + step, 0);
            let (read, written) = match self.step(input, &mut out[start..]) {
                Ok(counts) => counts,
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            };
            out.truncate(start + written);
            if written > left {
                out.truncate(start + left);
                return Ok(Flow::Full);
            }
            left -= written;
            input = &input[read..];
            filled = written == step;
            if read == 0 && written == 0 && !input.is_empty() && !matches!(self.state, State::Ended)
            {
                // Never seen: a decoder takes input while it has room for output (a stream's
                // end may take none).
                return Err(io::Error::other(format!(
                    "the {} decoder made no progress",
                    self.coding
                )));
            }
        }
        Ok(Flow::More)
    }

    /// One call of the decoder: `(bytes read, bytes written)`.
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<(usize, usize)> {
        let coding = self.coding;
        match &mut self.state {
            State::Sniff(first) => {
                let (b0, b1, taken) = match (*first, input) {
                    (_, []) => return Ok((0, 0)),
                    (None, [b0]) => {
                        *first = Some(*b0);
                        return Ok((1, 0));
                    }
                    (None, [b0, b1, ..]) => (*b0, *b1, None),
                    (Some(b0), [b1, ..]) => (b0, *b1, Some(b0)),
                };
                let zlib = (b0 & 0x0f) == 8
                    && (b0 >> 4) <= 7
                    && ((u16::from(b0) << 8) | u16::from(b1)) % 31 == 0;
                let mut inflate = Box::new(Decompress::new(zlib));
                if let Some(b0) = taken {
                    // A first byte kept from the chunk before; one byte never decodes to
                    // output.
                    let mut none = [0u8; 1];
                    inflate
                        .decompress(&[b0], &mut none, FlushDecompress::None)
                        .map_err(|e| corrupt(coding, e))?;
                }
                self.state = State::Inflate(inflate);
                self.step(input, output)
            }
            State::Inflate(inflate) => {
                let (before_in, before_out) = (inflate.total_in(), inflate.total_out());
                let status = inflate
                    .decompress(input, output, FlushDecompress::None)
                    .map_err(|e| corrupt(coding, e))?;
                let read = counted(inflate.total_in() - before_in);
                let written = counted(inflate.total_out() - before_out);
                if status == Status::StreamEnd {
                    self.state = State::Ended;
                }
                Ok((read, written))
            }
            State::Brotli(state) => {
                let (mut available_in, mut input_offset) = (input.len(), 0);
                let (mut available_out, mut output_offset, mut total_out) = (output.len(), 0, 0);
                let result = BrotliDecompressStream(
                    &mut available_in,
                    &mut input_offset,
                    input,
                    &mut available_out,
                    &mut output_offset,
                    output,
                    &mut total_out,
                    state,
                );
                match result {
                    BrotliResult::ResultFailure => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("invalid br data ({:?})", state.error_code),
                    )),
                    BrotliResult::ResultSuccess => {
                        self.state = State::Ended;
                        Ok((input_offset, output_offset))
                    }
                    BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {
                        Ok((input_offset, output_offset))
                    }
                }
            }
            State::Zstd(decoder) => {
                let status = decoder.run_on_buffers(input, output).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("invalid zstd data: {e}"),
                    )
                })?;
                Ok((status.bytes_read, status.bytes_written))
            }
            State::Ended => Ok((0, 0)),
        }
    }
}

/// A count of bytes one call processed, at most a buffer's length.
fn counted(n: u64) -> usize {
    usize::try_from(n).expect("at most a buffer's length")
}

/// A gzip or deflate decoder's refusal as an I/O error of kind `InvalidData`.
fn corrupt(coding: Coding, err: flate2::DecompressError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid {coding} data: {err}"),
    )
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write as _;

    use flate2::{Compress, Compression, FlushCompress};

    use super::*;

    /// A page of about 300 KB that does not repeat exactly.
    pub(in crate::fetch) fn page() -> Vec<u8> {
        (0..12_000u32)
            .map(|i| format!("<p id=\"p{i}\">line {} of the page</p>\n", i * 7919 % 1000))
            .collect::<String>()
            .into_bytes()
    }

    pub(in crate::fetch) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    pub(in crate::fetch) fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    pub(in crate::fetch) fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    pub(in crate::fetch) fn br(data: &[u8]) -> Vec<u8> {
        let mut encoder = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        encoder.write_all(data).unwrap();
        encoder.into_inner()
    }

    pub(in crate::fetch) fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    /// Raw deflate blocks of `data`, not final, ending on a byte boundary (a sync flush):
    /// they can be repeated and followed by more blocks, since they refer to nothing before.
    fn deflate_blocks(data: &[u8]) -> Vec<u8> {
        let mut compress = Compress::new(Compression::best(), false);
        let mut out = Vec::new();
        loop {
            let done = usize::try_from(compress.total_in()).unwrap();
            out.reserve(64 * 1024);
            compress
                .compress_vec(&data[done..], &mut out, FlushCompress::Sync)
                .unwrap();
            if usize::try_from(compress.total_in()).unwrap() == data.len()
                && out.len() < out.capacity()
            {
                return out;
            }
        }
    }

    pub(in crate::fetch) const MIB: usize = 1 << 20;

    /// A gzip stream of `prefix` and then `mib` MiB of zeros, never finished: about 1 KB
    /// per MiB.
    pub(in crate::fetch) fn gzip_bomb(prefix: &[u8], mib: usize) -> Vec<u8> {
        let zeros = deflate_blocks(&vec![0; MIB]);
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        out.extend(deflate_blocks(prefix));
        for _ in 0..mib {
            out.extend_from_slice(&zeros);
        }
        out
    }

    /// Decodes `data`, labelled `codings`, fed in pieces of `chunk` bytes, until the end or
    /// the cap: the body, how it ended and how many bytes were fed.
    fn decode(
        codings: &[&str],
        data: &[u8],
        chunk: usize,
        cap: usize,
    ) -> io::Result<(Vec<u8>, Flow, usize)> {
        let mut decoder = Decoder::for_codings(codings.iter().copied())
            .expect("a coding the fetcher decodes")
            .expect("a decoder");
        let mut body = BytesMut::new();
        let mut fed = 0;
        for piece in data.chunks(chunk) {
            fed += piece.len();
            let flow = decoder.feed(piece, &mut body, cap)?;
            assert!(body.len() <= cap, "{} > {cap}", body.len());
            if flow == Flow::Full {
                return Ok((body.to_vec(), flow, fed));
            }
        }
        Ok((body.to_vec(), Flow::More, fed))
    }

    #[test]
    fn every_coding_round_trips_whatever_the_chunks() {
        let page = page();
        let cases: [(&str, Vec<u8>); 6] = [
            ("gzip", gzip(&page)),
            ("x-gzip", gzip(&page)),
            ("deflate", zlib(&page)),
            // Raw deflate, as some servers send `deflate` (and browsers accept).
            ("deflate", raw_deflate(&page)),
            ("br", br(&page)),
            ("zstd", zstd(&page)),
        ];
        for (coding, data) in &cases {
            assert!(data.len() < page.len() / 4, "{coding} compresses");
            for chunk in [1, 2, 3, 1000, 16 * 1024, data.len()] {
                let (body, flow, _) = decode(&[coding], data, chunk, 10 * MIB).unwrap();
                assert_eq!(flow, Flow::More, "{coding} in chunks of {chunk}");
                assert!(body == page, "{coding} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn stacked_codings_are_undone_last_applied_first() {
        let page = page();
        let (body, flow, _) = decode(&["gzip, br"], &br(&gzip(&page)), 4096, 10 * MIB).unwrap();
        assert_eq!(flow, Flow::More);
        assert!(body == page);
        // Over two header lines, any case, identity skipped.
        let (body, _, _) = decode(
            &["Deflate", "identity, ZSTD"],
            &zstd(&zlib(&page)),
            1000,
            10 * MIB,
        )
        .unwrap();
        assert!(body == page);
        let decoder = Decoder::for_codings(["gzip", "br"]).unwrap().unwrap();
        assert_eq!(decoder.codings(), "gzip, br");
    }

    #[test]
    fn codings_not_decoded_leave_the_body_as_sent() {
        for values in [
            &[][..],
            &["identity"],
            &[""],
            &["compress"],
            &["gzip, compress"],
            &["gzip", "gzip", "gzip"],
            &["gzip, gzip, gzip"],
        ] {
            assert!(
                Decoder::for_codings(values.iter().copied()).is_none(),
                "{values:?}"
            );
        }
        assert!(Decoder::for_codings([" GZip "]).is_some());
    }

    /// 100 MiB of zeros in every coding: each is cut at the cap after reading a small part.
    #[test]
    fn a_compression_bomb_is_cut_at_the_cap_having_read_a_fraction_of_it() {
        const CAP: usize = MIB;
        let zeros = deflate_blocks(&vec![0; MIB]);
        let raw: Vec<u8> = (0..100).flat_map(|_| zeros.iter().copied()).collect();
        let zlib_bomb = [&[0x78, 0xda][..], &raw].concat();
        // zstd frames decode one after another.
        let frame = zstd(&vec![0; MIB]);
        let zstd_bomb: Vec<u8> = (0..100).flat_map(|_| frame.iter().copied()).collect();
        let cases = [
            ("gzip", gzip_bomb(b"", 100)),
            ("deflate", zlib_bomb),
            ("deflate", raw),
            ("br", br(&vec![0; 100 * MIB])),
            ("zstd", zstd_bomb),
        ];
        for (coding, bomb) in &cases {
            let (body, flow, fed) = decode(&[coding], bomb, 1024, CAP).unwrap();
            assert_eq!(flow, Flow::Full, "{coding}");
            assert_eq!(body.len(), CAP, "{coding}");
            assert!(body.iter().all(|&b| b == 0), "{coding}");
            // br writes 100 MiB of zeros in some 200 bytes, read in one piece; the others
            // take about 1 KB per MiB.
            if bomb.len() > 10 * 1024 {
                assert!(
                    fed < bomb.len() / 10,
                    "{coding}: fed {fed} of {}",
                    bomb.len()
                );
            }
        }
    }

    /// Regression guard: every stage of stacked codings is bounded, not only the last. Here
    /// br ends after two bytes and ignores the rest, which gzip would otherwise inflate to
    /// 100 MiB.
    #[test]
    fn every_stage_of_stacked_codings_is_cut_at_the_cap() {
        let bomb = gzip_bomb(&br(b"hi"), 100);
        let (body, flow, fed) = decode(&["br, gzip"], &bomb, 1024, MIB).unwrap();
        assert_eq!(flow, Flow::Full);
        assert_eq!(body, b"hi");
        assert!(fed < bomb.len() / 10, "fed {fed} of {}", bomb.len());
    }

    #[test]
    fn a_body_of_exactly_the_cap_is_not_cut_and_one_byte_more_is() {
        let page = page();
        for (coding, data) in [
            ("gzip", gzip(&page)),
            ("br", br(&page)),
            ("zstd", zstd(&page)),
        ] {
            let (body, flow, _) = decode(&[coding], &data, 512, page.len()).unwrap();
            assert_eq!((body.len(), flow), (page.len(), Flow::More), "{coding}");
            let (body, flow, _) = decode(&[coding], &data, 512, page.len() - 1).unwrap();
            assert_eq!((body.len(), flow), (page.len() - 1, Flow::Full), "{coding}");
        }
    }

    #[test]
    fn corrupt_data_is_an_error_in_every_coding() {
        let page = page();
        let mut flipped = gzip(&page);
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let mut bad_checksum = gzip(&page);
        let crc = bad_checksum.len() - 8;
        bad_checksum[crc] ^= 0xff;
        let mut bad_zlib = zlib(&page);
        bad_zlib[10] ^= 0xff;
        let cases: [(&str, Vec<u8>); 7] = [
            ("gzip", flipped),
            ("gzip", bad_checksum),
            ("gzip", b"<html>not gzip at all</html>".to_vec()),
            ("deflate", bad_zlib),
            ("br", b"<html>not brotli at all</html>".to_vec()),
            ("zstd", b"<html>not zstd at all</html>".to_vec()),
            ("zstd", [zstd(b"one frame"), b"then junk".to_vec()].concat()),
        ];
        for (coding, data) in &cases {
            let err = decode(&[coding], data, 4096, 10 * MIB).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{coding}: {err}");
        }
    }

    #[test]
    fn a_stream_cut_short_gives_what_decoded_and_bytes_after_its_end_are_ignored() {
        let page = page();
        // No trailer (CRC and length): what decoded is the page.
        let data = gzip(&page);
        let (body, flow, _) = decode(&["gzip"], &data[..data.len() - 8], 4096, 10 * MIB).unwrap();
        assert_eq!(flow, Flow::More);
        assert!(body == page);
        // Half the stream: a prefix of the page.
        let (body, _, _) = decode(&["br"], &br(&page)[..1000], 100, 10 * MIB).unwrap();
        assert!(!body.is_empty() && page.starts_with(&body));
        // Junk after the end, even another gzip member: ignored.
        for (coding, data) in [
            ("gzip", [gzip(&page), gzip(b"second member")].concat()),
            ("gzip", [gzip(&page), b"\0\0junk".to_vec()].concat()),
            ("deflate", [zlib(&page), b"junk".to_vec()].concat()),
            ("br", [br(&page), b"junk".to_vec()].concat()),
        ] {
            let (body, flow, _) = decode(&[coding], &data, 4096, 10 * MIB).unwrap();
            assert_eq!(flow, Flow::More, "{coding}");
            assert!(body == page, "{coding}");
        }
    }
}
