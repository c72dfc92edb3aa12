//! Credentials embedded in URLs (`https://user:TOKEN@host/x`) hidden before a URL or a message
//! reaches a log line, a metric label or an Application's status. Pure string functions.

/// What replaces the userinfo of a URL.
const MASK: &str = "***";

/// Characters that end a URL's authority in free text (besides the end of the text).
fn ends_authority(c: char) -> bool {
    c.is_whitespace() || matches!(c, '/' | '?' | '#' | '\\' | '"' | '\'' | '<' | '>' | '`')
}

/// The authority that starts `rest` (the text right after `://`), with its userinfo masked,
/// and how many bytes of `rest` it spans.
fn mask_authority(rest: &str) -> (String, usize) {
    let end = rest.find(ends_authority).unwrap_or(rest.len());
    let authority = &rest[..end];
    match authority.rfind('@') {
        Some(at) => (format!("{MASK}{}", &authority[at..]), end),
        None => (authority.to_string(), end),
    }
}

/// `url` with its userinfo (user name, password or token) replaced by `***`:
/// `https://user:TOKEN@host/x` → `https://***@host/x`. URLs without userinfo, and SCP-like
/// forms (`git@host:org/repo`, whose user is not a secret), are returned as they are.
pub fn redact_url(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let (head, rest) = url.split_at(i + 3);
            let (authority, len) = mask_authority(rest);
            format!("{head}{authority}{}", &rest[len..])
        }
        None => url.to_string(),
    }
}

/// `text` with the userinfo of every `scheme://user:pass@host` URL in it replaced by `***`
/// (error text from the repo-server or Git can quote the URL anywhere).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let (authority, len) = mask_authority(tail);
        out.push_str(&authority);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_masks_userinfo_and_keeps_the_rest() {
        assert_eq!(
            redact_url("https://user:TOKEN@host/x"),
            "https://***@host/x"
        );
        assert_eq!(
            redact_url("https://TOKEN@github.com/org/repo.git"),
            "https://***@github.com/org/repo.git"
        );
        assert_eq!(
            redact_url("http://a:p@ss@127.0.0.1:8080/x?q=1"),
            "http://***@127.0.0.1:8080/x?q=1",
            "the last @ ends the userinfo"
        );
        assert_eq!(redact_url("https://host/x"), "https://host/x");
        assert_eq!(redact_url("https://host"), "https://host");
        assert_eq!(
            redact_url("https://host/x@y"),
            "https://host/x@y",
            "@ in the path is no userinfo"
        );
        assert_eq!(redact_url("git@github.com:org/x"), "git@github.com:org/x");
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn redact_text_masks_every_url_userinfo_in_a_message() {
        let msg = "rpc error: fetching https://alice:TOPSECRET@git.example/x.git failed; \
                   mirror 'http://bob:s3cr3t@10.0.0.1:80/y' unreachable (see https://docs/z)";
        let out = redact_text(msg);
        assert!(
            !out.contains("TOPSECRET") && !out.contains("s3cr3t"),
            "{out}"
        );
        assert!(!out.contains("alice") && !out.contains("bob"), "{out}");
        assert_eq!(
            out,
            "rpc error: fetching https://***@git.example/x.git failed; \
             mirror 'http://***@10.0.0.1:80/y' unreachable (see https://docs/z)"
        );
        assert_eq!(
            redact_text("user@example.com wrote: no URL here"),
            "user@example.com wrote: no URL here"
        );
        assert_eq!(
            redact_text("ends with https://u:p@h"),
            "ends with https://***@h"
        );
        assert_eq!(redact_text("https://"), "https://");
    }
}
