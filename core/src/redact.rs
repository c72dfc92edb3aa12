//! Repository URLs handled with suspicion: credentials never leave in text (URL userinfo is
//! replaced by `***` in logs, metric labels, errors, status) and dot-segment URLs are spotted.

/// `url` with its userinfo replaced by `***` (`https://***@host/x`); unchanged without one.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

/// `text` with the userinfo of every `scheme://user[:pass]@` in it replaced by `***`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace — unless a password
        // holds a raw '/' ('user:ab/cd@host'): then it ends after the first '@' that follows a
        // ':' of the user part.
        let word_end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let word = &tail[..word_end];
        let plain_end = word.find(['/', '?', '#']).unwrap_or(word.len());
        let userinfo_end = match word[..plain_end].rfind('@') {
            Some(at) => Some(at),
            None => word
                .find('@')
                .filter(|&at| word[..at].contains(':') && !word[..at].contains("://")),
        };
        match userinfo_end {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
        let next = rest
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        out.push_str(&rest[..next]);
        rest = &rest[next..];
    }
    out.push_str(rest);
    out
}

/// Whether `repo_url` has a `.` or `..` path segment, plain or percent-encoded (`%2e`), with
/// `/`, `\` (or their encodings `%2f`, `%5c`) or `:` (SCP-like `host:../x`) as separators.
/// Git clients and servers resolve those segments, so a URL that matches a `sourceRepos` glob
/// as text (`https://github.com/my-org/../evil/repo` against `https://github.com/my-org/*`)
/// could fetch another repository: such URLs are never allowed.
pub fn has_dot_segments(repo_url: &str) -> bool {
    let lower = repo_url.to_ascii_lowercase();
    let decoded = lower
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    decoded
        .split(['/', ':'])
        .any(|segment| segment == "." || segment == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_replaced_everywhere_and_other_text_is_kept() {
        assert_eq!(
            redact_url("http://alice:TOPSECRET@127.0.0.1:8080/x.git"),
            "http://***@127.0.0.1:8080/x.git"
        );
        assert_eq!(redact_url("https://token@host/x"), "https://***@host/x");
        assert_eq!(redact_url("https://host/x@y"), "https://host/x@y");
        assert_eq!(
            redact_url("https://u:ab/cd@host/x"),
            "https://***@host/x",
            "a raw '/' in the password"
        );
        assert_eq!(
            redact_url("git@github.com:org/repo"),
            "git@github.com:org/repo"
        );
        let text = "fetching https://u:p@a/x: failed; then git://b/y and http://k:v@c?q=1";
        let red = redact_text(text);
        assert!(!red.contains("u:p") && !red.contains("k:v"), "{red}");
        assert!(
            red.contains("https://***@a/x") && red.contains("git://b/y"),
            "{red}"
        );
        assert!(red.contains("http://***@c?q=1"), "{red}");
    }
}
