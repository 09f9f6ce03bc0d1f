//! STOMP frames and their wire format (1.0, 1.1 and 1.2), with limits for hostile input. Pure
//! encoding, no I/O: the broker re-exports it as `broker::stomp::frame`, and the fuzz target
//! `stomp_frame` builds it without the broker.
//!
//! ```text
//! COMMAND EOL
//! (name:value EOL)*
//! EOL
//! body NUL
//! ```
//! EOL is `\n` or `\r\n`. From 1.1 on, header names and values escape `\\`, `\n`, `\r` (1.2)
//! and `:` as `\\\\`, `\\n`, `\\r`, `\\c`, except in CONNECT and CONNECTED frames. A
//! `content-length` header gives the body's length (the body may then hold NULs); without it
//! the body ends at the first NUL. A repeated header keeps its first value. Between frames a
//! peer may send bare EOLs (heart-beats).
//!
//! The decoder never panics and never buffers more than the limits allow: a frame whose
//! headers or body grow past them is an error before it is complete.

use bytes::{Buf, Bytes, BytesMut};

/// The protocol version agreed at CONNECT; it decides header escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }
}

/// Bounds on what a peer may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 * 1024 * 1024,
            max_headers: 1000,
            max_header_bytes: 10 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("a header line longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame {
            command: command.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Frame {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn escaped(&self) -> bool {
        !matches!(self.command.as_str(), "CONNECT" | "CONNECTED" | "STOMP")
    }

    /// Appends the wire form to `out`. A `content-length` header is added when the body is
    /// not empty and none is given.
    pub fn encode(&self, version: Version, out: &mut BytesMut) {
        out.extend_from_slice(self.command.as_bytes());
        out.extend_from_slice(b"\n");
        let escape = version >= Version::V1_1 && self.escaped();
        for (k, v) in &self.headers {
            push_escaped(out, k, escape, version);
            out.extend_from_slice(b":");
            push_escaped(out, v, escape, version);
            out.extend_from_slice(b"\n");
        }
        if !self.body.is_empty() && self.get("content-length").is_none() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\n");
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"\0");
    }

    pub fn to_bytes(&self, version: Version) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + self.body.len());
        self.encode(version, &mut out);
        out.freeze()
    }
}

fn push_escaped(out: &mut BytesMut, s: &str, escape: bool, version: Version) {
    if !escape {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            ':' => out.extend_from_slice(b"\\c"),
            '\r' if version >= Version::V1_2 => out.extend_from_slice(b"\\r"),
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

fn unescape(s: &str, version: Version) -> Result<String, FrameError> {
    if !s.contains('\\') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('r') if version >= Version::V1_2 => out.push('\r'),
            other => {
                return Err(FrameError::Malformed(format!(
                    "undefined escape sequence \\{}",
                    other.map(String::from).unwrap_or_default()
                )));
            }
        }
    }
    Ok(out)
}

/// Frames from a byte stream.
///
/// The decoder remembers how far it got in the frame it is reading (the header lines found,
/// where the search for the body's NUL stopped), so a frame arriving in many small reads is
/// scanned once: linear in its size, not quadratic.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub limits: Limits,
    /// Decides escaping; set once CONNECT is answered.
    pub version: Version,
    progress: Option<Progress>,
    /// The `receipt` header of the frame the last error was about, when its header lines
    /// had been read: the ERROR then names it (`receipt-id`).
    failed_receipt: Option<String>,
}

/// How far the frame at the start of the buffer has been read.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Header lines found so far, as (start, end) in the buffer.
    lines: Vec<(usize, usize)>,
    /// Where the next header line starts.
    pos: usize,
    head: Option<Head>,
    /// The body holds no NUL before this offset.
    nul_from: usize,
}

/// A parsed header block.
#[derive(Debug, Clone)]
struct Head {
    command: String,
    headers: Vec<(String, String)>,
    content_length: Option<usize>,
    body_start: usize,
}

const COMMANDS: &[&str] = &[
    "CONNECT",
    "STOMP",
    "CONNECTED",
    "SEND",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "ACK",
    "NACK",
    "BEGIN",
    "COMMIT",
    "ABORT",
    "DISCONNECT",
    "MESSAGE",
    "RECEIPT",
    "ERROR",
];

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            version: Version::V1_0,
            progress: None,
            failed_receipt: None,
        }
    }

    /// Skips heart-beat EOLs; true if any were seen.
    pub fn skip_heartbeats(buf: &mut BytesMut) -> bool {
        let mut n = 0;
        while n < buf.len() {
            match buf[n] {
                b'\n' => n += 1,
                b'\r' if buf.get(n + 1) == Some(&b'\n') => n += 2,
                _ => break,
            }
        }
        buf.advance(n);
        n > 0
    }

    /// The next complete frame, `None` if more bytes are needed. Between calls the caller only
    /// appends to `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if self.progress.is_none() {
            Self::skip_heartbeats(buf);
            if buf.is_empty() {
                return Ok(None);
            }
        }
        let mut progress = self.progress.take().unwrap_or_default();
        let result = self.resume(&mut progress, buf);
        match &result {
            Ok(None) => self.progress = Some(progress),
            Ok(Some(_)) => {}
            Err(_) => self.failed_receipt = self.receipt_in(&progress, buf),
        }
        result
    }

    /// After `decode` failed: the `receipt` header of the malformed frame, if its header
    /// lines had arrived.
    pub fn failed_receipt(&self) -> Option<&str> {
        self.failed_receipt.as_deref()
    }

    /// The receipt among the header lines read so far (parsed, or raw when the block did not
    /// parse: then an escaped value is unescaped if it can be, and taken as is if not).
    fn receipt_in(&self, p: &Progress, buf: &[u8]) -> Option<String> {
        if let Some(head) = &p.head {
            return head
                .headers
                .iter()
                .find(|(k, _)| k == "receipt")
                .map(|(_, v)| v.clone());
        }
        p.lines.iter().skip(1).find_map(|&(a, b)| {
            let line = std::str::from_utf8(buf.get(a..b)?).ok()?;
            let v = line.strip_prefix("receipt:")?;
            Some(unescape(v, self.version).unwrap_or_else(|_| v.to_owned()))
        })
    }

    fn resume(&self, p: &mut Progress, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let limits = self.limits;
        if p.head.is_none() {
            // Header block: lines up to an empty line.
            let body_start = loop {
                let Some(nl) = buf[p.pos..].iter().position(|&b| b == b'\n') else {
                    if buf.len() - p.pos > limits.max_header_bytes {
                        return Err(FrameError::HeaderTooLong {
                            limit: limits.max_header_bytes,
                        });
                    }
                    if buf.len() > limits.max_frame_bytes {
                        return Err(FrameError::TooLarge {
                            limit: limits.max_frame_bytes,
                        });
                    }
                    return Ok(None);
                };
                let pos = p.pos;
                let mut end = pos + nl;
                if end > pos && buf[end - 1] == b'\r' {
                    end -= 1;
                }
                if end - pos > limits.max_header_bytes {
                    return Err(FrameError::HeaderTooLong {
                        limit: limits.max_header_bytes,
                    });
                }
                let next = pos + nl + 1;
                p.pos = next;
                if end == pos {
                    break next;
                }
                p.lines.push((pos, end));
                if p.lines.len() > limits.max_headers + 1 {
                    return Err(FrameError::TooManyHeaders {
                        limit: limits.max_headers,
                    });
                }
                if next > limits.max_frame_bytes {
                    return Err(FrameError::TooLarge {
                        limit: limits.max_frame_bytes,
                    });
                }
            };
            p.head = Some(self.parse_head(&p.lines, buf, body_start)?);
            p.nul_from = body_start;
        }
        let Some(head) = &p.head else {
            return Ok(None);
        };
        let body_start = head.body_start;
        let (body_end, frame_end) = match head.content_length {
            Some(n) => {
                let end = body_start + n;
                if buf.len() < end + 1 {
                    return Ok(None);
                }
                if buf[end] != 0 {
                    return Err(FrameError::Malformed(
                        "the body is not followed by NUL where content-length says it ends".into(),
                    ));
                }
                (end, end + 1)
            }
            None => match buf[p.nul_from..].iter().position(|&b| b == 0) {
                Some(n) => (p.nul_from + n, p.nul_from + n + 1),
                None => {
                    if buf.len() - body_start > limits.max_frame_bytes {
                        return Err(FrameError::TooLarge {
                            limit: limits.max_frame_bytes,
                        });
                    }
                    p.nul_from = buf.len();
                    return Ok(None);
                }
            },
        };
        let Some(head) = p.head.take() else {
            return Ok(None);
        };
        let mut frame_bytes = buf.split_to(frame_end);
        let body = frame_bytes.split_off(body_start);
        let mut body = body.freeze();
        body.truncate(body_end - body_start);
        Ok(Some(Frame {
            command: head.command,
            headers: head.headers,
            body,
        }))
    }

    /// The command and headers of a complete header block.
    fn parse_head(
        &self,
        lines: &[(usize, usize)],
        buf: &[u8],
        body_start: usize,
    ) -> Result<Head, FrameError> {
        let limits = self.limits;
        let text = |(a, b): (usize, usize)| {
            std::str::from_utf8(&buf[a..b])
                .map_err(|_| FrameError::Malformed("a header line is not UTF-8".into()))
        };
        let Some(&first) = lines.first() else {
            return Err(FrameError::Malformed("missing command".into()));
        };
        let command = text(first)?.to_owned();
        if !COMMANDS.contains(&command.as_str()) {
            return Err(FrameError::Malformed(format!(
                "unknown command {:?}",
                truncate(&command)
            )));
        }
        let escape = version_escapes(self.version, &command);
        let mut headers = Vec::with_capacity(lines.len() - 1);
        let mut content_length = None;
        for &line in &lines[1..] {
            let l = text(line)?;
            let Some((k, v)) = l.split_once(':') else {
                return Err(FrameError::Malformed(format!(
                    "header line without a colon: {:?}",
                    truncate(l)
                )));
            };
            let (k, v) = if escape {
                (unescape(k, self.version)?, unescape(v, self.version)?)
            } else {
                (k.to_owned(), v.to_owned())
            };
            if k == "content-length" && content_length.is_none() {
                let n: usize = v.trim().parse().map_err(|_| {
                    FrameError::Malformed(format!("bad content-length {:?}", truncate(&v)))
                })?;
                // The whole frame, headers included, must fit the limit.
                if n > limits.max_frame_bytes.saturating_sub(body_start) {
                    return Err(FrameError::TooLarge {
                        limit: limits.max_frame_bytes,
                    });
                }
                content_length = Some(n);
            }
            headers.push((k, v));
        }
        Ok(Head {
            command,
            headers,
            content_length,
            body_start,
        })
    }
}

fn version_escapes(version: Version, command: &str) -> bool {
    version >= Version::V1_1 && !matches!(command, "CONNECT" | "CONNECTED" | "STOMP")
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dec(v: Version) -> Decoder {
        let mut d = Decoder::new(Limits {
            max_frame_bytes: 1024,
            max_headers: 8,
            max_header_bytes: 100,
        });
        d.version = v;
        d
    }

    fn one(v: Version, bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        dec(v).decode(&mut BytesMut::from(bytes))
    }

    /// The ERROR for a malformed frame can name its receipt when the header lines were read.
    #[test]
    fn a_failed_frame_names_its_receipt_when_its_headers_were_read() {
        let failed = |bytes: &[u8]| {
            let mut d = dec(Version::V1_2);
            assert!(d.decode(&mut BytesMut::from(bytes)).is_err(), "{bytes:?}");
            d.failed_receipt().map(str::to_owned)
        };
        // Parsed headers, the body wrong.
        assert_eq!(
            failed(b"SEND\nreceipt:a\\cb\ncontent-length:1\n\nxy\0").as_deref(),
            Some("a:b")
        );
        // The header block itself refused: read raw.
        assert_eq!(
            failed(b"SEND\nreceipt:r1\ncontent-length:x\n\n\0").as_deref(),
            Some("r1")
        );
        assert_eq!(
            failed(b"SEND\nreceipt:r2\ncontent-length:99999\n\n").as_deref(),
            Some("r2")
        );
        // An unknown command: its header lines were read all the same.
        assert_eq!(failed(b"BOGUS\nreceipt:r3\n\n\0").as_deref(), Some("r3"));
        // No receipt, or none read before the failure.
        assert_eq!(failed(b"SEND\ncontent-length:x\n\n\0"), None);
        let long = format!("SEND\n{}", "x".repeat(200));
        assert_eq!(failed(long.as_bytes()), None);
    }

    #[test]
    fn decodes_frames_with_and_without_content_length() {
        let f = one(Version::V1_2, b"SEND\ndestination:/queue/a\n\nhello\0")
            .unwrap()
            .unwrap();
        assert_eq!(f.command, "SEND");
        assert_eq!(f.get("destination"), Some("/queue/a"));
        assert_eq!(&f.body[..], b"hello");
        let f = one(Version::V1_2, b"SEND\r\ncontent-length:3\r\n\r\na\0b\0")
            .unwrap()
            .unwrap();
        assert_eq!(&f.body[..], b"a\0b");
    }

    #[test]
    fn heartbeats_and_partial_input() {
        let mut d = dec(Version::V1_1);
        let mut buf = BytesMut::from(&b"\n\r\n\nSEND\ndest"[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"ination:x\n\nbody");
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\0\nSEND\n\n\0");
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap().body[..], b"body");
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().command, "SEND");
        assert!(buf.is_empty());
    }

    #[test]
    fn escaping_by_version() {
        let f = one(Version::V1_2, b"SEND\na\\cb:c\\nd\\\\e\\r\n\n\0")
            .unwrap()
            .unwrap();
        assert_eq!(f.headers[0], ("a:b".into(), "c\nd\\e\r".into()));
        let f = one(Version::V1_0, b"SEND\nk:a\\cb\n\n\0").unwrap().unwrap();
        assert_eq!(f.get("k"), Some("a\\cb"), "1.0 has no escapes");
        let f = one(Version::V1_2, b"CONNECT\nlogin:a\\cb\n\n\0")
            .unwrap()
            .unwrap();
        assert_eq!(f.get("login"), Some("a\\cb"), "CONNECT is never escaped");
        assert!(one(Version::V1_2, b"SEND\nk:\\t\n\n\0").is_err());
        assert!(
            one(Version::V1_1, b"SEND\nk:\\r\n\n\0").is_err(),
            "\\r is 1.2 only"
        );
        let frame = Frame::new("MESSAGE").header("k:x", "a\nb\\c\r");
        let bytes = frame.to_bytes(Version::V1_2);
        let back = one(Version::V1_2, &bytes).unwrap().unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn repeated_headers_keep_the_first() {
        let f = one(Version::V1_2, b"SEND\nk:1\nk:2\n\n\0")
            .unwrap()
            .unwrap();
        assert_eq!(f.get("k"), Some("1"));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_hang() {
        assert!(matches!(
            one(Version::V1_2, b"HELLO\n\n\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            one(Version::V1_2, b"SEND\nnocolon\n\n\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            one(Version::V1_2, b"SEND\ncontent-length:x\n\n\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            one(Version::V1_2, b"SEND\ncontent-length:1\n\nab\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            one(Version::V1_2, b"SEND\ncontent-length:99999\n\n"),
            Err(FrameError::TooLarge { .. })
        ));
        let long = format!("SEND\nk:{}\n\n\0", "x".repeat(200));
        assert!(matches!(
            one(Version::V1_2, long.as_bytes()),
            Err(FrameError::HeaderTooLong { .. })
        ));
        let unterminated = format!("SEND\nk:{}", "x".repeat(200));
        assert!(matches!(
            one(Version::V1_2, unterminated.as_bytes()),
            Err(FrameError::HeaderTooLong { .. })
        ));
        let many: String = (0..20).map(|i| format!("h{i}:v\n")).collect();
        assert!(matches!(
            one(Version::V1_2, format!("SEND\n{many}\n\0").as_bytes()),
            Err(FrameError::TooManyHeaders { .. })
        ));
        let big = format!("SEND\n\n{}", "x".repeat(2000));
        assert!(matches!(
            one(Version::V1_2, big.as_bytes()),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            one(Version::V1_2, b"SEND\nk:\xff\n\n\0"),
            Err(FrameError::Malformed(_))
        ));
    }

    /// Frames fed in pieces decode exactly as when fed whole: the saved progress is right.
    fn in_pieces(bytes: &[u8], piece: usize) -> Vec<Result<Frame, FrameError>> {
        let mut d = dec(Version::V1_2);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            buf.extend_from_slice(chunk);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(f)) => out.push(Ok(f)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn a_frame_read_in_pieces_is_scanned_once() {
        let mut bytes = Frame::new("SEND")
            .header("destination", "/queue/a")
            .with_body("with length")
            .to_bytes(Version::V1_2)
            .to_vec();
        bytes.extend_from_slice(b"SEND\ndestination:/queue/a\n\nno length\0\n");
        bytes.extend_from_slice(
            &Frame::new("SEND")
                .header("x", "y")
                .with_body(&b"a\0b"[..])
                .to_bytes(Version::V1_2),
        );
        bytes.extend_from_slice(b"SEND\nk:v\n\n");
        bytes.extend_from_slice(&[b'z'; 600]);
        bytes.push(0);
        let whole = in_pieces(&bytes, bytes.len());
        assert_eq!(whole.len(), 4);
        assert!(whole.iter().all(Result::is_ok), "{whole:?}");
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(
                in_pieces(&bytes, piece),
                whole,
                "fed {piece} bytes at a time"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn pieces_decode_as_the_whole(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), piece in 1usize..40) {
            proptest::prop_assert_eq!(in_pieces(&bytes, piece), in_pieces(&bytes, bytes.len().max(1)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut d = dec(Version::V1_2);
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..10 {
                match d.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }

        #[test]
        fn encode_then_decode_round_trips(
            headers in proptest::collection::vec(("[a-z:\\\\\n\r-]{1,8}", "[ -~\n\r]{0,12}"), 0..5),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut f = Frame::new("SEND");
            let mut seen = std::collections::HashSet::new();
            for (k, v) in headers {
                if k != "content-length" && seen.insert(k.clone()) {
                    f.headers.push((k, v));
                }
            }
            f.body = Bytes::from(body);
            let bytes = f.to_bytes(Version::V1_2);
            let mut whole = Decoder::new(Limits::default());
            whole.version = Version::V1_2;
            let back = whole
                .decode(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap();
            proptest::prop_assert_eq!(&back.body, &f.body);
            for (k, v) in &f.headers {
                proptest::prop_assert_eq!(back.get(k), Some(v.as_str()));
            }
        }
    }
}
