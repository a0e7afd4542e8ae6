//! `/ui/` — the admin web UI: a few static files embedded in the binary (no
//! Node at runtime, no CDN). The page calls only the companion API with the
//! session cookie and opens the admin socket; everything it shows, it is
//! allowed to see by the API's own checks. Served with a strict
//! Content-Security-Policy: this origin's scripts and styles only (no inline
//! code), no framing, no third-party origins.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The UI's files: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/app.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../ui/icon.svg"),
    ),
];

/// No inline scripts or styles, nothing from elsewhere, never in a frame.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Each file's ETag (a hash of its content), computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, body)| {
                let d = crate::crypto::Sha256::digest(body.as_bytes());
                format!(
                    "\"{}\"",
                    d[..12]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                )
            })
            .collect()
    })
}

/// `GET /ui` — to `/ui/`.
pub async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/` — the admin web UI (log in through the browser flow; it
/// calls this API with the session cookie).
/// **Permissions**: none to load; each page needs its API's.
#[utoipa::path(get, path = "/ui/", tag = "ui", responses((status = 200, description = "the page (text/html) with a strict Content-Security-Policy", content_type = "text/html"), (status = 304, description = "not modified (If-None-Match)")))]
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{file}` — the page's script, styles and icon (`app.js`,
/// `app.css`, `icon.svg`).
#[utoipa::path(get, path = "/ui/{file}", tag = "ui", params(("file" = String, Path, description = "app.js, app.css or icon.svg")), responses((status = 200, description = "the file"), (status = 304, description = "not modified (If-None-Match)"), (status = 404, description = "no such file", body = crate::http::api::ErrorBody)))]
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return crate::http::api::error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such file of the admin UI".into(),
        );
    };
    let (_, ctype, body) = FILES[i];
    let tag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, ctype)], body).into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    r
}
