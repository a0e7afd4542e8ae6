//! `[server]`: where gatehouse listens (and with which TLS certificate, if it
//! serves TLS itself), the URL browsers reach it at, the proxies whose
//! forwarded headers are believed, the log format.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::values::V;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    log_format: Option<String>,
    allowed_origins: Option<Vec<String>>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: url::Url,
    pub trusted_proxies: Vec<IpNet>,
    pub log_format: LogFormat,
    /// Origins (`scheme://host[:port]`) besides `public_url`'s from which a
    /// cookie-authenticated admin socket may be opened.
    pub allowed_origins: Vec<String>,
    /// Serve TLS directly (certificate chain, private key; PEM), reloaded on SIGHUP.
    pub tls: Option<TlsFiles>,
}

/// The certificate chain and key files of the TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

impl ServerConfig {
    /// May a browser page of `origin` use the session cookie on the admin socket?
    pub fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.public_url.origin().ascii_serialization()
            || self.allowed_origins.iter().any(|o| o == origin)
    }
}

impl RawServer {
    /// `insecure_http` is `session.insecure_http` (it allows an http:// public URL).
    pub(super) fn validate(self, insecure_http: bool, v: &mut V) -> ServerConfig {
        let raw = self;
        let listen_s = raw.listen.unwrap_or_else(|| "127.0.0.1:9091".into());
        let listen = listen_s.parse::<SocketAddr>().unwrap_or_else(|_| {
            v.err(
                "server.listen",
                format!("{listen_s:?} is not an address:port; write e.g. \"127.0.0.1:9091\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 9091))
        });
        let public_missing = raw.public_url.is_none();
        let public_s = raw.public_url.unwrap_or_else(|| format!("http://{listen}"));
        let public_url = match url::Url::parse(&public_s) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && insecure_http) => {
                if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
                    v.err(
                        "server.public_url",
                        "must not carry a query, fragment or user info",
                    );
                }
                u
            }
            Ok(u) if u.scheme() == "http" => {
                v.err(
                "server.public_url",
                if public_missing {
                    "missing; set the https:// URL where browsers reach gatehouse, e.g. \"https://auth.example.com\""
                } else {
                    "http:// is only allowed with session.insecure_http = true (local development); use https://"
                },
            );
                u
            }
            _ => {
                v.err(
                    "server.public_url",
                    format!(
                        "{public_s:?} is not an https URL; write e.g. \"https://auth.example.com\""
                    ),
                );
                url::Url::parse("http://127.0.0.1:9091").expect("static url")
            }
        };
        let trusted_proxies = raw
            .trusted_proxies
            .unwrap_or_else(|| vec!["127.0.0.1/32".into(), "::1/128".into()])
            .iter()
            .enumerate()
            .filter_map(|(i, s)| v.cidr(&format!("server.trusted_proxies[{i}]"), s))
            .collect();
        let log_format = match raw.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                v.err(
                    "server.log_format",
                    format!("{other:?} is not a log format; use \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        };
        let allowed_origins = raw
            .allowed_origins
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| origin(&format!("server.allowed_origins[{i}]"), s, v))
            .collect();

        let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let files = TlsFiles {
                    cert_file: v.path(c),
                    key_file: v.path(k),
                };
                if let Err(e) = crate::crypto::tls_server_config(&files.cert_file, &files.key_file)
                {
                    v.err(
                        "server.tls_cert_file",
                        format!("{e}; give a PEM certificate chain and its PEM private key"),
                    );
                }
                Some(files)
            }
            (Some(_), None) => {
                v.err(
                    "server.tls_key_file",
                    "missing: tls_cert_file needs its private key (PEM)",
                );
                None
            }
            (None, Some(_)) => {
                v.err(
                    "server.tls_cert_file",
                    "missing: tls_key_file needs its certificate chain (PEM)",
                );
                None
            }
        };

        ServerConfig {
            listen,
            public_url,
            trusted_proxies,
            log_format,
            allowed_origins,
            tls,
        }
    }
}

/// An origin as browsers send it: `https://host[:port]`, nothing after.
fn origin(key: &str, s: &str, v: &mut V) -> Option<String> {
    let fix = "write an origin as browsers send it, e.g. \"https://admin.example.com\"";
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {
            let o = u.origin().ascii_serialization();
            if o.eq_ignore_ascii_case(s.trim_end_matches('/')) {
                Some(o)
            } else {
                v.err(key, format!("{s:?} has more than an origin; {fix}"));
                None
            }
        }
        _ => {
            v.err(key, format!("{s:?} is not an origin; {fix}"));
            None
        }
    }
}
