//! Reading a decision request's head on the fast path (`http::wire`).
//!
//! A proxy asks about every request with the same few header lines. This reads
//! them in one pass over the head and nothing more: each line's end found with
//! `memchr`, each name told apart once ([`Field::of`]), each value checked for
//! the bytes a decision could be fooled by, and the headers a decision reads
//! gathered as they go by ([`Seen`]).
//!
//! It accepts a strict subset of HTTP/1.1 and hands everything else to hyper
//! (which reads it with `httparse` and answers as it always would):
//! - the request line is exactly `METHOD SP target SP HTTP/1.1 CRLF`, with one
//!   of the methods a proxy forwards, the path `/authz/forward` or
//!   `/authz/nginx`, and at most a query of the bytes every URI parser reads
//!   alike;
//! - each header line is `name ":" OWS value OWS CRLF`: a name of token bytes,
//!   a value of visible ASCII, spaces and tabs (no `obs-text`, no controls, no
//!   bare LF or CR, no folded lines); as `httparse`, the value is trimmed;
//! - no body and nothing that changes the framing: `Content-Length: 0` at most
//!   once, no `Transfer-Encoding`, `Upgrade` or `Expect`, a `Connection` of
//!   `close` or `keep-alive` only; at most [`MAX_HEADERS`] lines, [`MAX_HEAD`]
//!   bytes.
//!
//! Everything it accepts, `httparse` (which hyper uses) reads the same way: same
//! length, same header lines. [`agrees_with_httparse`] checks that for any bytes
//! (the unit tests run it on mutated requests, `fuzz/` on whatever it finds).

use crate::http::authz::{header_text, visible_ascii, Field, Flavour, Seen};

/// Header lines the fast path reads; a request with more goes to hyper (which
/// allows 100 and answers 431 beyond).
pub const MAX_HEADERS: usize = 64;
/// Head bytes the fast path waits for; a longer head goes to hyper.
pub const MAX_HEAD: usize = 16 * 1024;

/// What the bytes read so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A whole decision request: `len` bytes of head (any bytes after it are
    /// the next request's); its headers are in the caller's [`Seen`].
    Decision {
        len: usize,
        flavour: Flavour,
        /// The client asked to close the connection after the answer.
        close: bool,
    },
    /// The head is not all here yet, and nothing so far rules the fast path out.
    Partial,
    /// Not for the fast path: hyper's, with the bytes read so far.
    Other,
}

/// Why reading stopped.
enum Stop {
    /// The bytes ran out.
    Short,
    /// Something the fast path does not take.
    Other,
}

/// Reads the head at the start of `buf`, gathering what a decision reads into
/// `seen` (which starts empty; it holds nothing useful unless the head is a
/// [`Head::Decision`]).
pub fn read<'b>(buf: &'b [u8], seen: &mut Seen<'b>) -> Head {
    match strict(buf, seen) {
        Ok(head) => head,
        // A head cut short: what is here may already be an error, which hyper
        // answers at once (httparse stops at the first byte it cannot take).
        Err(Stop::Short) => {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::Request::new(&mut headers).parse(buf) {
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Head::Partial,
                _ => Head::Other,
            }
        }
        Err(Stop::Other) => Head::Other,
    }
}

fn strict<'b>(buf: &'b [u8], seen: &mut Seen<'b>) -> Result<Head, Stop> {
    let end = line_end(buf, 0)?;
    let flavour = request_line(&buf[..end])?;
    let mut at = end + 2;
    let mut close = false;
    let mut content_length = false;
    let mut lines = 0;
    loop {
        let end = line_end(buf, at)?;
        if end == at {
            return Ok(Head::Decision {
                len: end + 2,
                flavour,
                close,
            });
        }
        lines += 1;
        if lines > MAX_HEADERS {
            return Err(Stop::Other);
        }
        let line = &buf[at..end];
        let colon = memchr::memchr(b':', line).ok_or(Stop::Other)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let field = Field::of(name);
        // A name found is letters and dashes; any other must be a token.
        if field == Field::Other && !token(name) {
            return Err(Stop::Other);
        }
        let value = trimmed(value);
        if !visible_ascii(value) {
            return Err(Stop::Other);
        }
        match field {
            Field::ContentLength => {
                if content_length || value != b"0" {
                    return Err(Stop::Other);
                }
                content_length = true;
            }
            Field::TransferEncoding | Field::Upgrade | Field::Expect => return Err(Stop::Other),
            Field::Connection => {
                for option in header_text(value).ok_or(Stop::Other)?.split(',') {
                    let option = option.trim();
                    if option.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if !option.eq_ignore_ascii_case("keep-alive") {
                        return Err(Stop::Other);
                    }
                }
            }
            _ => seen.put::<true>(field, value),
        }
        at = end + 2;
    }
}

/// Where the line starting at `at` ends (its CR, which a LF follows).
#[inline]
fn line_end(buf: &[u8], at: usize) -> Result<usize, Stop> {
    let rest = buf.get(at..).ok_or(Stop::Short)?;
    let cr = at + memchr::memchr(b'\r', rest).ok_or(Stop::Short)?;
    match buf.get(cr + 1) {
        Some(b'\n') => Ok(cr),
        Some(_) => Err(Stop::Other),
        None => Err(Stop::Short),
    }
}

/// The request line (without its CRLF): a plain method, a decision path with
/// at most a plain query, HTTP/1.1.
fn request_line(line: &[u8]) -> Result<Flavour, Stop> {
    let rest = line.strip_suffix(b" HTTP/1.1").ok_or(Stop::Other)?;
    let sp = memchr::memchr(b' ', rest).ok_or(Stop::Other)?;
    let (method, target) = (&rest[..sp], &rest[sp + 1..]);
    match method {
        b"GET" | b"POST" | b"PUT" | b"PATCH" | b"DELETE" | b"OPTIONS" => {}
        _ => return Err(Stop::Other),
    }
    let (path, query) = match memchr::memchr(b'?', target) {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    let flavour = decision_endpoint(path).ok_or(Stop::Other)?;
    if let Some(q) = query {
        // Only what every URI parser reads the same way.
        let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(b);
        if !q.iter().all(plain) {
            return Err(Stop::Other);
        }
    }
    Ok(flavour)
}

/// The decision endpoint a path names, if any (on the fast path and through
/// hyper alike).
pub fn decision_endpoint(path: &[u8]) -> Option<Flavour> {
    match path {
        b"/authz/forward" => Some(Flavour::Forward),
        b"/authz/nginx" => Some(Flavour::Nginx),
        _ => None,
    }
}

/// A field name: one or more token characters (RFC 9110 `tchar`).
fn token(name: &[u8]) -> bool {
    static TCHAR: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = (b as u8).is_ascii_alphanumeric();
            b += 1;
        }
        let specials = b"!#$%&'*+-.^_`|~";
        let mut i = 0;
        while i < specials.len() {
            t[specials[i] as usize] = true;
            i += 1;
        }
        t
    };
    !name.is_empty() && name.iter().all(|&b| TCHAR[usize::from(b)])
}

/// A value without the spaces and tabs around it.
fn trimmed(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Checks [`read`] against `httparse` and the rules above on any bytes (for the
/// tests and the fuzz target): a head taken whole must be one that `httparse`
/// parses to the same length with the same method, path, version and header
/// lines, that the framing rules allow, and whose headers a decision sees the
/// same. `Err` says how they differ.
#[doc(hidden)]
pub fn agrees_with_httparse(buf: &[u8]) -> Result<(), String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(buf);
    let mut seen = Seen::default();
    match (read(buf, &mut seen), parsed) {
        (
            Head::Decision {
                len,
                flavour,
                close,
            },
            Ok(httparse::Status::Complete(n)),
        ) => {
            if len != n {
                return Err(format!("length {len}, httparse {n}"));
            }
            if req.version != Some(1) {
                return Err("not HTTP/1.1 for httparse".into());
            }
            let (path, _) =
                crate::decision::target::split_query(req.path.ok_or("no path for httparse")?);
            let theirs = decision_endpoint(path.as_bytes())
                .ok_or_else(|| format!("httparse's path {path:?}"))?;
            if flavour != theirs {
                return Err(format!("{flavour:?}, httparse {theirs:?}"));
            }
            let mut want = Seen::default();
            let mut closing = false;
            for h in req.headers.iter() {
                want.add(h.name.as_bytes(), h.value);
                match Field::of(h.name.as_bytes()) {
                    Field::TransferEncoding | Field::Upgrade | Field::Expect => {
                        return Err(format!("took a head with {}", h.name))
                    }
                    Field::ContentLength if h.value != b"0" => {
                        return Err("took a body".into());
                    }
                    Field::Connection => {
                        closing |= String::from_utf8_lossy(h.value)
                            .split(',')
                            .any(|o| o.trim().eq_ignore_ascii_case("close"));
                    }
                    _ => {}
                }
            }
            if closing != close {
                return Err(format!("close {close}, httparse's headers say {closing}"));
            }
            let (ours, theirs) = (format!("{seen:?}"), format!("{want:?}"));
            if ours != theirs {
                return Err(format!("seen {ours}\nhttparse {theirs}"));
            }
            Ok(())
        }
        (Head::Decision { .. }, other) => Err(format!("took a head httparse reads as {other:?}")),
        (Head::Partial, Ok(httparse::Status::Partial)) => Ok(()),
        (Head::Partial, other) => Err(format!("waits for a head httparse reads as {other:?}")),
        (Head::Other, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(buf: &[u8]) -> Head {
        super::read(buf, &mut Seen::default())
    }

    fn forward(extra: &str) -> String {
        format!(
            "GET /authz/forward?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: /d/abc?orgId=1\r\n\
             X-Forwarded-Method: GET\r\nX-Forwarded-For: 10.0.0.7\r\n\
             Authorization: Bearer abc.def.ghi\r\n{extra}\r\n"
        )
    }

    #[test]
    fn a_proxy_request_is_taken_whole() {
        let req = forward("Cookie: a=b\r\n");
        let Head::Decision {
            len,
            flavour,
            close,
            ..
        } = read(req.as_bytes())
        else {
            panic!("not taken");
        };
        assert_eq!((len, flavour, close), (req.len(), Flavour::Forward, false));
        agrees_with_httparse(req.as_bytes()).unwrap();
        // Cut anywhere, it waits for the rest.
        for cut in 1..req.len() {
            assert!(
                matches!(read(&req.as_bytes()[..cut]), Head::Partial),
                "cut at {cut}"
            );
        }
        // A second request after it is left alone.
        let two = format!("{req}{req}");
        assert!(matches!(read(two.as_bytes()), Head::Decision { len, .. } if len == req.len()));
        let closing = forward("Connection: Close\r\n");
        assert!(matches!(
            read(closing.as_bytes()),
            Head::Decision { close: true, .. }
        ));
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        let others = [
            forward("Transfer-Encoding: chunked\r\n"),
            forward("Content-Length: 5\r\n"),
            forward("Content-Length: 0\r\nContent-Length: 0\r\n"),
            forward("Upgrade: websocket\r\n"),
            forward("Expect: 100-continue\r\n"),
            forward("Connection: upgrade\r\n"),
            forward("X-Folded: a\r\n b\r\n"),
            forward("X-Bad Name: a\r\n"),
            forward("X-Bad : a\r\n"),
            forward(": a\r\n"),
            forward("X-Utf8: caf\u{e9}\r\n"),
            forward("X-Ctl: a\x01b\r\n"),
            forward("X-Del: a\x7fb\r\n"),
            forward("X-Lf: a\nb\r\n"),
            forward("X-Cr: a\rb\r\n"),
            forward("No colon\r\n"),
            "GET /authz/forward HTTP/1.0\r\n\r\n".into(),
            "GET /authz/forward  HTTP/1.1\r\n\r\n".into(),
            "GET  /authz/forward HTTP/1.1\r\n\r\n".into(),
            "HEAD /authz/forward HTTP/1.1\r\n\r\n".into(),
            "get /authz/forward HTTP/1.1\r\n\r\n".into(),
            "GET /authz/forward/ HTTP/1.1\r\n\r\n".into(),
            "GET /authz/forward#x HTTP/1.1\r\n\r\n".into(),
            "GET /authz/forward?a b HTTP/1.1\r\n\r\n".into(),
            "GET /authz/forward?a\"b HTTP/1.1\r\n\r\n".into(),
            "GET /api/sessions HTTP/1.1\r\n\r\n".into(),
            "GET /authz/forward HTTP/1.1\n\n".into(),
            "GET /authz/forward HTTP/1.1\r\nHost: x\n\r\n".into(),
            "\r\nGET /authz/forward HTTP/1.1\r\n\r\n".into(),
            format!(
                "GET /authz/nginx HTTP/1.1\r\n{}\r\n",
                "X-A: b\r\n".repeat(65)
            ),
        ];
        for o in &others {
            assert!(matches!(read(o.as_bytes()), Head::Other), "{o:?}");
        }
        // At the limit of lines, still taken.
        let many = format!(
            "GET /authz/nginx HTTP/1.1\r\n{}\r\n",
            "X-A: b\r\n".repeat(64)
        );
        assert!(matches!(read(many.as_bytes()), Head::Decision { .. }));
        // What is already wrong is handed over without waiting for the rest.
        assert!(matches!(
            read(b"GET /authz/forward HTTP/1.1\r\nX\x01"),
            Head::Other
        ));
        assert!(matches!(read(b"\x16\x03\x01\x02\x00"), Head::Other));
    }

    #[test]
    fn values_are_trimmed_as_httparse_trims_them() {
        let req = forward(
            "X-Forwarded-Proto-Not: x\r\nAccept: \t text/html \t\r\nX-Empty:\r\nX-Blank:  \r\n",
        );
        agrees_with_httparse(req.as_bytes()).unwrap();
    }

    /// Every single-byte change, deletion and duplication of a proxy's request,
    /// and a few thousand random splices: never a head that httparse reads
    /// otherwise.
    #[test]
    fn mutated_requests_agree_with_httparse() {
        let base = [
            forward("Cookie: a=b\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n"),
            "POST /authz/nginx HTTP/1.1\r\nhost: a\r\nx-original-url: https://a/b?c\r\n\
             x-original-method: POST\r\nx-real-ip: 10.1.1.1\r\nsec-websocket-key: k\r\n\
             sec-websocket-version: 13\r\n\r\n"
                .to_string(),
        ];
        let bytes: &[u8] = b"\r\n\t :;,?#/aAzZ-_.\x00\x01\x7f\x80\xff\"";
        let mut checked = 0;
        for b in &base {
            let b = b.as_bytes();
            for at in 0..b.len() {
                for &x in bytes {
                    let mut m = b.to_vec();
                    m[at] = x;
                    agrees_with_httparse(&m).unwrap_or_else(|e| panic!("{e}: {m:?}"));
                    let mut m = b.to_vec();
                    m.insert(at, x);
                    agrees_with_httparse(&m).unwrap_or_else(|e| panic!("{e}: {m:?}"));
                    checked += 2;
                }
                let mut m = b.to_vec();
                m.remove(at);
                agrees_with_httparse(&m).unwrap_or_else(|e| panic!("{e}: {m:?}"));
            }
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut next = |n: usize| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % n as u64) as usize
            };
            for _ in 0..5000 {
                let mut m = b.to_vec();
                for _ in 0..1 + next(4) {
                    let (from, to) = (next(b.len()), next(m.len()));
                    let len = next(12).min(b.len() - from);
                    m.splice(to..to, b[from..from + len].iter().copied());
                }
                agrees_with_httparse(&m).unwrap_or_else(|e| panic!("{e}: {m:?}"));
                checked += 1;
            }
        }
        assert!(checked > 10_000);
    }
}
