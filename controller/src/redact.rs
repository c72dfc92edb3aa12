//! Credentials embedded in URLs (`https://user:TOKEN@host/x`) hidden before a URL or a message
//! reaches a log line, a metric label or an Application's status. Pure string functions.

/// The one implementation lives in `flotilla-core`, shared with the repo-server.
pub use flotilla_core::redact::{redact_text, redact_url};

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
