//! The request as the proxy saw it: strict parsing and canonicalisation of host,
//! path, method and client address. Pure: no I/O, no HTTP types.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;

/// Longest path (bytes, before decoding) that is considered at all.
pub const MAX_PATH_LEN: usize = 8192;
/// Most `X-Forwarded-For` hops that are considered at all.
pub const MAX_FORWARDED_HOPS: usize = 32;
const MAX_HOST_LEN: usize = 253;

/// Why a request could not be turned into a [`Target`]; every one of them denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetError {
    MissingHeader(&'static str),
    DuplicateHeader(&'static str),
    BadScheme,
    BadHost,
    BadPath,
    BadMethod,
    BadForwardedFor,
    AbsoluteFormUri,
    UserInfo,
    UntrustedCaller,
}

impl TargetError {
    /// Stable reason code for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::DuplicateHeader(_) => "duplicate_header",
            Self::BadScheme => "bad_scheme",
            Self::BadHost => "bad_host",
            Self::BadPath => "bad_path",
            Self::BadMethod => "bad_method",
            Self::BadForwardedFor => "bad_forwarded_for",
            Self::AbsoluteFormUri => "absolute_form_uri",
            Self::UserInfo => "userinfo_in_url",
            Self::UntrustedCaller => "untrusted_caller",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn parse(s: &str) -> Result<Self, TargetError> {
        if s.eq_ignore_ascii_case("https") {
            Ok(Self::Https)
        } else if s.eq_ignore_ascii_case("http") {
            Ok(Self::Http)
        } else {
            Err(TargetError::BadScheme)
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// What a request is for, canonicalised; rules match against this only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub scheme: Scheme,
    /// Lower case, no trailing dot, no port.
    pub host: Cow<'a, str>,
    /// Present only when it is not the scheme's default.
    pub port: Option<u16>,
    /// Decoded, dot-segments resolved, empty segments and `;params` removed.
    pub path: Cow<'a, str>,
    /// The path and query exactly as the client sent them (for the login `rd`).
    pub raw_path_and_query: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub client: IpAddr,
    /// The client asked for a WebSocket upgrade.
    pub websocket: bool,
    /// Request time, seconds since the Unix epoch (allowlist expiry).
    pub at: i64,
}

impl Target<'_> {
    /// The original URL, rebuilt from canonical host and raw path, for `rd`.
    pub fn original_url(&self) -> String {
        let mut s = String::with_capacity(16 + self.host.len() + self.raw_path_and_query.len());
        s.push_str(self.scheme.as_str());
        s.push_str("://");
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        s.push_str(&self.raw_path_and_query);
        s
    }
}

/// Validates and canonicalises an HTTP method token.
pub fn canonical_method(m: &str) -> Result<Cow<'_, str>, TargetError> {
    if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(TargetError::BadMethod);
    }
    Ok(if m.bytes().all(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(m)
    } else {
        Cow::Owned(m.to_ascii_uppercase())
    })
}

/// Canonical host name (lower case, no trailing dot) and non-default port.
pub fn canonical_host(
    raw: &str,
    scheme: Scheme,
) -> Result<(Cow<'_, str>, Option<u16>), TargetError> {
    if raw.is_empty() || raw.len() > MAX_HOST_LEN + 7 {
        return Err(TargetError::BadHost);
    }
    // One byte loop rather than `str` searches: this runs on every decision.
    let mut user_info = false;
    let mut last_colon = None;
    for (i, &b) in raw.as_bytes().iter().enumerate() {
        user_info |= b == b'@';
        if b == b':' {
            last_colon = Some(i);
        }
    }
    if user_info {
        return Err(TargetError::UserInfo);
    }
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal
        let end = rest.find(']').ok_or(TargetError::BadHost)?;
        let lit = &rest[..end];
        let addr: std::net::Ipv6Addr = lit.parse().map_err(|_| TargetError::BadHost)?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':').ok_or(TargetError::BadHost)?,
            )?),
        };
        (Cow::Owned(format!("[{addr}]")), port)
    } else {
        let (name, port) = match last_colon {
            Some(i) => (&raw[..i], Some(parse_port(&raw[i + 1..])?)),
            None => (raw, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > MAX_HOST_LEN {
            return Err(TargetError::BadHost);
        }
        let name = match labels(name.as_bytes()) {
            Some(Case::Lower) => Cow::Borrowed(name),
            Some(Case::Mixed) => Cow::Owned(name.to_ascii_lowercase()),
            None => return Err(TargetError::BadHost),
        };
        (name, port)
    };
    let port = port.filter(|p| *p != scheme.default_port());
    Ok((name, port))
}

/// Whether a host name needs lower-casing.
enum Case {
    Lower,
    Mixed,
}

/// Dot-separated labels of 1 to 63 letters, digits, `-` and `_`, neither
/// starting nor ending with `-`; `None` when the name is not that.
fn labels(name: &[u8]) -> Option<Case> {
    let mut len = 0usize;
    let mut prev = b'.';
    let mut upper = false;
    for &b in name {
        if b == b'.' {
            if len == 0 || prev == b'-' {
                return None;
            }
            len = 0;
        } else {
            upper |= b.is_ascii_uppercase();
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') || (len == 0 && b == b'-') {
                return None;
            }
            len += 1;
            if len > 63 {
                return None;
            }
        }
        prev = b;
    }
    (len > 0 && prev != b'-').then_some(if upper { Case::Mixed } else { Case::Lower })
}

fn parse_port(p: &str) -> Result<u16, TargetError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::BadHost);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadHost),
        Ok(n) => Ok(n),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits an origin-form request target into (path, query); rejects anything else.
pub fn split_origin_form(uri: &str) -> Result<(&str, Option<&str>), TargetError> {
    if uri.len() > MAX_PATH_LEN {
        return Err(TargetError::BadPath);
    }
    if !uri.starts_with('/') {
        return Err(if uri.contains("://") {
            TargetError::AbsoluteFormUri
        } else {
            TargetError::BadPath
        });
    }
    if uri.bytes().any(|b| b == b'#' || b <= 0x20 || b >= 0x7f) {
        return Err(TargetError::BadPath);
    }
    Ok(split_query(uri))
}

/// A path and its query, split at the first `?` (a byte search: `str`'s
/// pattern machinery costs more than the search on every decision).
pub fn split_query(uri: &str) -> (&str, Option<&str>) {
    match uri.bytes().position(|b| b == b'?') {
        Some(i) => (&uri[..i], Some(&uri[i + 1..])),
        None => (uri, None),
    }
}

/// Canonical path for matching: a leading `//` refused, percent-decoded (but never `/`, `\`, `#`, NUL or
/// control characters), `;params` dropped from each segment, empty and `.`
/// segments removed, `..` resolved (clamped at the root), trailing slash kept.
pub fn canonical_path(raw: &str) -> Result<Cow<'_, str>, TargetError> {
    if raw.is_empty() || !raw.starts_with('/') || raw.len() > MAX_PATH_LEN {
        return Err(TargetError::BadPath);
    }
    // "//host/x" is a network-path reference to some parsers: authority "host".
    if raw.starts_with("//") {
        return Err(TargetError::BadPath);
    }
    if is_already_canonical(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    canonical_path_general(raw).map(Cow::Owned)
}

/// The full canonicalisation behind [`canonical_path`] (same preconditions checked).
fn canonical_path_general(raw: &str) -> Result<String, TargetError> {
    let bytes = raw.as_bytes();
    // Decode first, then split: after decoding, no byte can introduce a new segment
    // because encoded '/' is refused.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b <= 0x20 || b >= 0x7f || b == b'\\' || b == b'#' || b == b'?' {
            return Err(TargetError::BadPath);
        }
        if b == b'%' {
            let (h, l) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(h), Some(l)) => (hex(*h), hex(*l)),
                _ => return Err(TargetError::BadPath),
            };
            let v = match (h, l) {
                (Some(h), Some(l)) => h * 16 + l,
                _ => return Err(TargetError::BadPath),
            };
            if !(0x20..0x7f).contains(&v) || matches!(v, b'/' | b'\\' | b'#' | b'%' | b'?') {
                return Err(TargetError::BadPath);
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = std::str::from_utf8(&decoded).map_err(|_| TargetError::BadPath)?;
    let trailing = decoded.len() > 1 && decoded.ends_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = match seg.find(';') {
            Some(i) => &seg[..i],
            None => seg,
        };
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len() + 1);
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(path)
}

/// The common case, recognised without allocating: printable ASCII with nothing
/// to decode (`%`), strip (`;`) or resolve (empty, `.` or `..` segments), so the
/// slow path would return the input unchanged. Starts with a single `/`.
fn is_already_canonical(b: &[u8]) -> bool {
    let mut seg_start = 1;
    for i in 1..=b.len() {
        if i < b.len() {
            let c = b[i];
            if c <= 0x20 || c >= 0x7f || matches!(c, b'%' | b';' | b'\\' | b'#' | b'?') {
                return false;
            }
            if c != b'/' {
                continue;
            }
        }
        // a segment ends at i: empty is fine only as the trailing slash
        match &b[seg_start..i] {
            b"" if i < b.len() => return false,
            b"." | b".." => return false,
            _ => {}
        }
        seg_start = i + 1;
    }
    true
}

/// Parses an absolute URL as nginx sends it in `X-Original-URL`.
pub fn split_absolute_url(url: &str) -> Result<(Scheme, &str, &str), TargetError> {
    if url.len() > MAX_PATH_LEN || url.bytes().any(|b| b <= 0x20 || b >= 0x7f) {
        return Err(TargetError::BadPath);
    }
    let (scheme, rest) = url.split_once("://").ok_or(TargetError::BadScheme)?;
    let scheme = Scheme::parse(scheme)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if path_and_query.starts_with('?') || path_and_query.is_empty() {
        // http://host?x or http://host: the path is "/", but keep it unambiguous.
        if path_and_query.is_empty() {
            return Ok((scheme, authority, "/"));
        }
        return Err(TargetError::BadPath);
    }
    Ok((scheme, authority, path_and_query))
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let ip = if let Some(inner) = s.strip_prefix('[') {
        inner
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)?
    } else {
        s.parse::<IpAddr>().ok()?
    };
    Some(ip.to_canonical())
}

/// True when `ip` belongs to one of `nets`.
pub fn in_nets(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The client address: the socket peer, unless the peer is a trusted proxy, in
/// which case the right-most hop of `X-Forwarded-For` that is not itself trusted.
/// `xff` holds every `X-Forwarded-For` header value in order of arrival.
pub fn client_address<'a>(
    peer: IpAddr,
    trusted: &[IpNet],
    xff: impl IntoIterator<Item = &'a str>,
) -> Result<IpAddr, TargetError> {
    let peer = peer.to_canonical();
    if !in_nets(peer, trusted) {
        return Ok(peer);
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in xff {
        for hop in value.split(',') {
            hops.push(hop);
            if hops.len() > MAX_FORWARDED_HOPS {
                return Err(TargetError::BadForwardedFor);
            }
        }
    }
    let mut last = peer;
    for hop in hops.iter().rev() {
        let ip = parse_hop(hop).ok_or(TargetError::BadForwardedFor)?;
        if !in_nets(ip, trusted) {
            return Ok(ip);
        }
        last = ip;
    }
    // Every hop is a trusted proxy: the left-most one is the best we know.
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let ok = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a//b", "/a/b"),
            ("/public/../admin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/%2E%2E/%61dmin", "/admin"),
            ("/./a/./b", "/a/b"),
            ("/../../etc", "/etc"),
            ("/admin;x", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/a;b=c/d", "/a/d"),
            ("/ADMIN", "/ADMIN"),
            ("/a/..", "/"),
            ("/a%7Eb", "/a~b"),
        ];
        for (raw, want) in ok {
            assert_eq!(canonical_path(raw).as_deref(), Ok(want), "{raw}");
        }
        let bad = [
            "",
            "admin",
            "//admin",
            "//evil.example.com/admin",
            "/admin%2F",
            "/admin%2f..",
            "/a%5cb",
            "/a\\b",
            "/a%23b",
            "/a#b",
            "/a%00",
            "/a\0b",
            "/a\tb",
            "/a%0ab",
            "/a%",
            "/a%zz",
            "/a%2",
            "/caf\u{e9}",
            "/caf%C3%A9",
            "/a%25",
            "/a b",
            "/a?b",
            "/a%3fb",
        ];
        for raw in bad {
            assert!(canonical_path(raw).is_err(), "{raw:?} must be refused");
        }
        assert!(canonical_path(&format!("/{}", "a".repeat(MAX_PATH_LEN))).is_err());
    }

    #[test]
    fn encoded_space_is_kept() {
        // File names with spaces are ordinary; only control characters are refused.
        assert_eq!(canonical_path("/my%20doc.pdf").unwrap(), "/my doc.pdf");
    }

    #[test]
    fn a_decided_path_is_decoded_so_not_raw_input_again() {
        // Found by the `forwarded` fuzz target (whose property was too strict):
        // the canonical form is decoded, so it may hold what raw input may not.
        assert_eq!(
            canonical_path("/a/./b/%20p.exmaF..").unwrap(),
            "/a/b/ p.exmaF.."
        );
        assert!(canonical_path("/a/b/ p.exmaF..").is_err());
    }

    #[test]
    fn hosts() {
        use Scheme::*;
        let ok = [
            ("Grafana.Example.COM", Https, ("grafana.example.com", None)),
            ("grafana.example.com.", Https, ("grafana.example.com", None)),
            (
                "grafana.example.com:443",
                Https,
                ("grafana.example.com", None),
            ),
            (
                "grafana.example.com:80",
                Http,
                ("grafana.example.com", None),
            ),
            (
                "grafana.example.com:8443",
                Https,
                ("grafana.example.com", Some(8443)),
            ),
            ("[::1]:8080", Http, ("[::1]", Some(8080))),
            ("10.0.0.1", Http, ("10.0.0.1", None)),
            ("A_b.Ex-ample.COM.", Https, ("a_b.ex-ample.com", None)),
            (
                &format!("{}.com", "a".repeat(63)),
                Https,
                (&format!("{}.com", "a".repeat(63)), None),
            ),
        ];
        for (raw, s, (h, p)) in ok {
            assert_eq!(canonical_host(raw, s), Ok((h.into(), p)), "{raw}");
        }
        for bad in [
            "",
            "user@host",
            "host:",
            "host:0",
            "host:99999",
            "host:8x",
            "a..b",
            ".",
            "ho st",
            "host/x",
            "h\u{e9}st",
            "-a.com",
            "[::1",
            "[zz]",
            "a:b:c",
            "host\r\n",
            "a-.com",
            "a.-b.com",
            "a.b-",
            "a..",
            "_.-",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(
                canonical_host(bad, Https).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn methods() {
        assert_eq!(canonical_method("get").unwrap(), "GET");
        for bad in ["", "G ET", "GET\n", "PROPFINDPROPFINDX", "G3T"] {
            assert!(canonical_method(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn origin_form() {
        assert_eq!(split_origin_form("/a?b=1").unwrap(), ("/a", Some("b=1")));
        assert_eq!(split_origin_form("/a").unwrap(), ("/a", None));
        assert_eq!(
            split_origin_form("http://evil/a"),
            Err(TargetError::AbsoluteFormUri)
        );
        assert!(split_origin_form("a").is_err());
        assert!(split_origin_form("/a#x").is_err());
        assert!(split_origin_form("/a\r\nX: y").is_err());
    }

    #[test]
    fn absolute_urls() {
        assert_eq!(
            split_absolute_url("https://app.example.com/x?y=1").unwrap(),
            (Scheme::Https, "app.example.com", "/x?y=1")
        );
        assert_eq!(
            split_absolute_url("http://app:8080").unwrap(),
            (Scheme::Http, "app:8080", "/")
        );
        assert!(split_absolute_url("ftp://a/b").is_err());
        assert!(split_absolute_url("/relative").is_err());
        assert!(split_absolute_url("https://a?x").is_err());
        assert!(split_absolute_url("https://a/b c").is_err());
    }

    #[test]
    fn forwarded_for() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let out: IpAddr = "203.0.113.9".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // untrusted peer: headers ignored
        assert_eq!(client_address(out, &trusted, ["6.6.6.6"]).unwrap(), out);
        // trusted peer, no header: the peer
        assert_eq!(client_address(lo, &trusted, []).unwrap(), lo);
        // spoofed left-most entry loses to the right-most untrusted hop
        assert_eq!(
            client_address(lo, &trusted, ["6.6.6.6, 198.51.100.7"]).unwrap(),
            ip("198.51.100.7")
        );
        // trusted hops are skipped, across several header lines
        assert_eq!(
            client_address(lo, &trusted, ["6.6.6.6, 198.51.100.7", "10.1.2.3"]).unwrap(),
            ip("198.51.100.7")
        );
        // all trusted: the left-most
        assert_eq!(
            client_address(lo, &trusted, ["10.0.0.5, 10.0.0.6"]).unwrap(),
            ip("10.0.0.5")
        );
        // IPv6 forms and mapped addresses
        assert_eq!(
            client_address(lo, &trusted, ["[2001:db8::1]"]).unwrap(),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_address(lo, &trusted, ["::ffff:198.51.100.7"]).unwrap(),
            ip("198.51.100.7")
        );
        let mapped_lo: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_address(mapped_lo, &trusted, ["198.51.100.7"]).unwrap(),
            ip("198.51.100.7")
        );
        // garbage on the path to the client denies
        for bad in ["unknown", "1.2.3.4:80", "", "6.6.6.6,", "1.2.3", "[::1"] {
            assert!(client_address(lo, &trusted, [bad]).is_err(), "{bad:?}");
        }
        // garbage to the left of the client is never looked at
        assert_eq!(
            client_address(lo, &trusted, ["junk, 198.51.100.7"]).unwrap(),
            ip("198.51.100.7")
        );
        let many = vec!["1.1.1.1"; MAX_FORWARDED_HOPS + 1].join(",");
        assert!(client_address(lo, &trusted, [many.as_str()]).is_err());
    }

    #[test]
    fn fast_path_agrees_with_the_general_one() {
        let parts = [
            "a", "b.c", ".", "..", "", "%41", ";x", "A", "-", "~", ".x", "x.",
        ];
        let mut n = 0;
        for a in parts {
            for b in parts {
                for c in parts {
                    for trail in ["", "/"] {
                        let raw = format!("/{a}/{b}/{c}{trail}");
                        if raw.starts_with("//") {
                            continue;
                        }
                        if is_already_canonical(raw.as_bytes()) {
                            n += 1;
                            assert_eq!(canonical_path_general(&raw), Ok(raw.clone()), "{raw}");
                        }
                        assert_eq!(
                            canonical_path(&raw).map(Cow::into_owned),
                            canonical_path_general(&raw),
                            "{raw}"
                        );
                    }
                }
            }
        }
        assert!(n > 100, "the fast path was taken {n} times");
    }
}
