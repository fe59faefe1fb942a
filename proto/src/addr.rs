//! Addressing: which account, container and blob a request names. Path style
//! (`/account/container/blob`) on IP literals, `localhost` and other plain host names;
//! virtual-host style (`account.blob.<suffix>`: the account is the first label) otherwise.
//! Absolute-form targets (a client using the node as its HTTP proxy) count their authority as
//! the host. Blob names are split from the path on literal slashes, then percent-decoded, so
//! `%2F` inside a name stays part of the name.

use percent_encoding::percent_decode_str;

use crate::error_code::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub account: String,
    pub container: Option<String>,
    pub blob: Option<String>,
    /// The path exactly as sent (SharedKey signs it).
    pub raw_path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
}

impl Target {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub const MAX_BLOB_NAME: usize = 1024;

/// Whether the host names an account by its first label (`<account>.blob.<suffix>`).
fn virtual_host_account(host: &str) -> Option<&str> {
    let host = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.contains(']') && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let mut labels = host.split('.');
    let account = labels.next()?;
    (labels.next() == Some("blob") && !account.is_empty()).then_some(account)
}

/// Percent-decodes strictly: a `%` must start an escape of two hex digits (`%zz` is not a
/// literal, it is a malformed URI).
fn decode(s: &str) -> Result<String, ErrorCode> {
    let b = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        if !(b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
            return Err(ErrorCode::InvalidUri);
        }
    }
    percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| ErrorCode::InvalidUri)
}

/// A blob name clients can address: no control characters and nothing else XML 1.0 cannot carry
/// (they cannot travel in a header or an XML listing), and no `.` or `..` segment, which URL
/// normalisation removes before a request is sent, so such a blob could never be reached again.
fn valid_blob_name(name: &str) -> bool {
    !name.chars().any(|c| c.is_control() || !crate::xml::is_xml_char(c))
        && !name.split('/').any(|seg| seg == "." || seg == "..")
}

/// An account name as Azure allows them (letters and digits, at most 24), so that nothing else a
/// client puts there reaches a log line or an error message.
pub fn valid_account_name(name: &str) -> bool {
    (1..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses a request target (`path?query`, or an absolute URI) with the `Host` header.
pub fn parse(target: &str, host: Option<&str>) -> Result<Target, ErrorCode> {
    let (authority, path_and_query) = match target.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), "/"),
        },
        None => (None, target),
    };
    let host = authority.or(host).unwrap_or("");
    let (raw_path, raw_query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((decode(k)?, decode(v)?));
    }
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let (account, rest) = match virtual_host_account(host) {
        Some(a) => (a.to_owned(), path),
        None => {
            let (a, rest) = path.split_once('/').unwrap_or((path, ""));
            (decode(a)?, rest)
        }
    };
    let (container, blob) = match rest.split_once('/') {
        Some((c, b)) => (c, Some(b)),
        None => (rest, None),
    };
    let container = (!container.is_empty()).then(|| decode(container)).transpose()?;
    let blob = blob.filter(|b| !b.is_empty()).map(decode).transpose()?;
    if !valid_account_name(&account) {
        return Err(ErrorCode::InvalidUri);
    }
    if let Some(e) = container.as_deref().and_then(container_name_error) {
        return Err(e);
    }
    // Azure counts a name's length in UTF-16 code units (a character outside the BMP is two).
    if blob.as_ref().is_some_and(|b| b.encode_utf16().count() > MAX_BLOB_NAME) {
        return Err(ErrorCode::OutOfRangeInput);
    }
    if blob.as_ref().is_some_and(|b| !valid_blob_name(b)) {
        return Err(ErrorCode::InvalidUri);
    }
    Ok(Target { account, container, blob, raw_path: raw_path.to_owned(), query })
}

/// Azure's container naming rules: 3 to 63 of lower-case letters, digits and single hyphens,
/// starting with a letter or digit; or one of the special containers.
pub fn valid_container_name(c: &str) -> bool {
    container_name_error(c).is_none()
}

/// What Azure answers a container name that breaks its rules: a length outside 3 to 63 is
/// `OutOfRangeInput`, a character or hyphen out of place `InvalidResourceName`.
fn container_name_error(c: &str) -> Option<ErrorCode> {
    if matches!(c, "$root" | "$logs" | "$web") {
        return None;
    }
    let b = c.as_bytes();
    let chars_ok = b.iter().all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--");
    if !chars_ok {
        Some(ErrorCode::InvalidResourceName)
    } else if !(3..=63).contains(&b.len()) {
        Some(ErrorCode::OutOfRangeInput)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(target: &str, host: &str) -> Target {
        parse(target, Some(host)).unwrap()
    }

    #[test]
    fn path_style_on_ip_hosts_and_plain_names() {
        let x = t("/devstoreaccount1/ctr/dir%2Fname%20x?comp=block&blockid=YQ%3D%3D", "127.0.0.1:10000");
        assert_eq!(x.account, "devstoreaccount1");
        assert_eq!(x.container.as_deref(), Some("ctr"));
        assert_eq!(x.blob.as_deref(), Some("dir/name x"));
        assert_eq!(x.raw_path, "/devstoreaccount1/ctr/dir%2Fname%20x");
        assert_eq!(x.param("blockid"), Some("YQ=="));
        let y = t("/devstoreaccount1/ctr/a/b/c.txt", "localhost");
        assert_eq!(y.blob.as_deref(), Some("a/b/c.txt"));
        let z = t("/devstoreaccount1/ctr/dir/", "[::1]:10000");
        assert_eq!(z.blob.as_deref(), Some("dir/"), "a trailing slash is part of the name");
    }

    #[test]
    fn service_urls_with_and_without_trailing_slash() {
        for target in ["/devstoreaccount1?comp=list", "/devstoreaccount1/?comp=list"] {
            let x = t(target, "127.0.0.1");
            assert_eq!(
                (x.account.as_str(), x.container.as_deref(), x.param("comp")),
                ("devstoreaccount1", None, Some("list"))
            );
        }
    }

    #[test]
    fn virtual_host_style_and_absolute_form() {
        let x = t("/ctr/b.bin", "acct.blob.core.windows.net");
        assert_eq!(
            (x.account.as_str(), x.container.as_deref(), x.blob.as_deref()),
            ("acct", Some("ctr"), Some("b.bin"))
        );
        let y = parse("http://devstoreaccount1.blob.core.windows.net/newc?restype=container", Some("127.0.0.1:10000"))
            .unwrap();
        assert_eq!((y.account.as_str(), y.container.as_deref()), ("devstoreaccount1", Some("newc")));
        assert_eq!(y.raw_path, "/newc");
        let z = t("/?comp=list&include=", "acct.blob.core.windows.net:443");
        assert_eq!((z.container.as_deref(), z.param("include")), (None, Some("")));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(parse("/a/Upper/b", Some("127.0.0.1")), Err(ErrorCode::InvalidResourceName));
        // Azure: a length out of range is OutOfRangeInput; a bad character InvalidResourceName.
        assert_eq!(parse("/a/ab/b", Some("127.0.0.1")), Err(ErrorCode::OutOfRangeInput));
        assert_eq!(parse(&format!("/a/{}/b", "c".repeat(64)), Some("127.0.0.1")), Err(ErrorCode::OutOfRangeInput));
        assert!(parse(&format!("/a/{}/b", "c".repeat(63)), Some("127.0.0.1")).is_ok());
        assert_eq!(parse("/a/a--b/b", Some("127.0.0.1")), Err(ErrorCode::InvalidResourceName));
        assert_eq!(parse("/a/-ab/b", Some("127.0.0.1")), Err(ErrorCode::InvalidResourceName));
        assert_eq!(parse("/a/a_/b", Some("127.0.0.1")), Err(ErrorCode::InvalidResourceName));
        let long = format!("/a/ccc/{}", "x".repeat(1025));
        assert_eq!(parse(&long, Some("127.0.0.1")), Err(ErrorCode::OutOfRangeInput));
        assert!(
            parse(&format!("/a/ccc/{}", "ü".repeat(1024)), Some("127.0.0.1")).is_ok(),
            "the limit counts characters, not bytes"
        );
        // ... in UTF-16 code units, as Azure does: 512 characters outside the BMP fill it.
        assert!(parse(&format!("/a/ccc/{}", "😊".repeat(512)), Some("127.0.0.1")).is_ok());
        assert_eq!(parse(&format!("/a/ccc/{}", "😊".repeat(513)), Some("127.0.0.1")), Err(ErrorCode::OutOfRangeInput));
        assert_eq!(parse("/a/ccc/%FF", Some("127.0.0.1")), Err(ErrorCode::InvalidUri));
        for bad in [
            "/a/ccc/%zz",
            "/a/ccc/b%",
            "/a/ccc/b%4",
            "/a/ccc/b?comp=%g1",
            "/a/ccc/%00",
            "/a/ccc/x%0D%0Ay",
            "/a/ccc/non%EF%BF%BEchar",
            "/a%0A%1B[31m/ccc/x",
            "/an-account/ccc/x",
            "/aaaaaaaaaaaaaaaaaaaaaaaaa/ccc/x",
            "/a/ccc/.",
            "/a/ccc/..",
            "/a/ccc/d/../x",
            "/a/ccc/./x",
        ] {
            assert_eq!(parse(bad, Some("127.0.0.1")), Err(ErrorCode::InvalidUri), "{bad}");
        }
        for good in ["/a/ccc/.hidden", "/a/ccc/a..b", "/a/ccc/dir./x", "/a/ccc/100%25"] {
            assert!(parse(good, Some("127.0.0.1")).is_ok(), "{good}");
        }
        assert!(valid_container_name("$root") && valid_container_name("a-1") && !valid_container_name("-ab"));
    }
}
