//! The web UI: the files built from `ui/` (embedded by `build.rs`) served at `/`, with every
//! other non-API path answered by `index.html` so deep links work, under a strict CSP.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// No inline script or style, nothing from another origin, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The embedded file at `path`, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, t, b)| (*t, *b))
}

fn respond(content_type: &'static str, body: &'static [u8], immutable: bool) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// Every GET no API route took: an embedded file, or `index.html` for the UI's own paths.
/// Unknown `/api/`, `/auth/` and asset paths are 404, not the page.
pub async fn serve(method: axum::http::Method, uri: Uri) -> Response {
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return crate::api::error(StatusCode::NOT_FOUND, "no such route");
    }
    let path = uri.path();
    if let Some((t, body)) = asset(path).filter(|_| path != "/index.html") {
        return respond(t, body, path.starts_with("/assets/"));
    }
    let api = ["/api/", "/auth/", "/assets/", "/status/"]
        .iter()
        .any(|p| path.starts_with(p))
        || path == "/api";
    match asset("/index.html") {
        Some((t, body)) if !api => respond(t, body, false),
        _ => crate::api::error(StatusCode::NOT_FOUND, format!("no such route: {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_ui_is_embedded() {
        let (t, body) = asset("/index.html").expect("index.html embedded");
        assert!(t.starts_with("text/html"));
        let html = String::from_utf8_lossy(body);
        assert!(html.contains("<script"), "index.html loads the bundle");
        // Every asset index.html names is embedded too.
        for part in html.split("\"/assets/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                asset(&format!("/assets/{name}")).is_some(),
                "{name} embedded"
            );
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from another origin"
        );
    }

    #[tokio::test]
    async fn deep_links_get_the_page_and_api_paths_do_not() {
        let get = |p: &'static str| serve(axum::http::Method::GET, Uri::from_static(p));
        let page = get("/applications/argocd/guestbook").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("csp")
                .contains("script-src 'self'")
        );
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(get("/api/v1/nothing").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            get("/assets/missing.js").await.status(),
            StatusCode::NOT_FOUND
        );
        let post = serve(axum::http::Method::POST, Uri::from_static("/applications")).await;
        assert_eq!(post.status(), StatusCode::NOT_FOUND);
    }
}
