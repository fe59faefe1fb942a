//! Request headers into values: conditions, dates, blob properties, metadata, MD5s. Empty
//! `x-ms-blob-*` values count as unset (rclone sends them empty).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::HeaderMap;

use crate::conditions::{Conditions, ETagMatch};
use crate::error_code::ErrorCode;

pub fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// RFC 1123 date of a time in nanoseconds since the epoch, at second granularity.
pub fn http_date(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000).max(0) as u64;
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

pub fn parse_date(v: &str) -> Option<i64> {
    httpdate::parse_http_date(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
}

fn etags(v: &str) -> ETagMatch {
    if v.trim() == "*" {
        return ETagMatch::Any;
    }
    ETagMatch::Tags(
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/").trim_matches('"').to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

/// The conditional headers, in the order [`Conditions`] holds them.
pub const CONDITIONS: [&str; 4] = ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"];

/// The same conditions on a copy's source, in the same order.
pub const SOURCE_CONDITIONS: [&str; 4] = [
    "x-ms-source-if-match",
    "x-ms-source-if-none-match",
    "x-ms-source-if-modified-since",
    "x-ms-source-if-unmodified-since",
];

/// The conditional headers. Unparsable dates are ignored, as HTTP says.
pub fn conditions(h: &HeaderMap) -> Conditions {
    conditions_named(h, CONDITIONS)
}

/// The source conditions of a copy (`x-ms-source-if-*`).
pub fn source_conditions(h: &HeaderMap) -> Conditions {
    conditions_named(h, SOURCE_CONDITIONS)
}

fn conditions_named(h: &HeaderMap, [m, nm, ms, us]: [&str; 4]) -> Conditions {
    Conditions {
        if_match: get(h, m).map(etags),
        if_none_match: get(h, nm).map(etags),
        if_modified_since: get(h, ms).and_then(parse_date),
        if_unmodified_since: get(h, us).and_then(parse_date),
    }
}

/// A base64 MD5 header, if present.
pub fn md5(h: &HeaderMap, name: &str) -> Result<Option<[u8; 16]>, ErrorCode> {
    match get(h, name) {
        None => Ok(None),
        Some(v) => {
            B64.decode(v).ok().and_then(|b| <[u8; 16]>::try_from(b).ok()).map(Some).ok_or(ErrorCode::InvalidHeaderValue)
        }
    }
}

/// Azure's bound on a blob's or container's metadata: names and values together.
pub const MAX_METADATA_BYTES: usize = 8 << 10;

/// A metadata name must be a C# identifier (Azure's rule): a letter or `_`, then letters, digits
/// or `_`. Header names are ASCII, so the letters are ASCII letters.
fn valid_metadata_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a metadata entry is one the node keeps for itself (a container's stored access
/// policies, a blob's tier): those are named with a leading `$`, which no metadata name a client
/// can send has (names are C# identifiers), and no answer shows them.
pub fn is_reserved_metadata_name(name: &str) -> bool {
    name.starts_with('$')
}

/// User metadata from `x-ms-meta-*`. `names` gives the header names as the client wrote them,
/// where the HTTP layer kept them, so that their case is kept. Names must be identifiers
/// (`InvalidMetadata`), and names and values together at most 8 KiB (`MetadataTooLarge`).
pub fn metadata(h: &HeaderMap, names: &[String]) -> Result<Vec<(String, String)>, ErrorCode> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in h.iter() {
        let Some(name) = k.as_str().strip_prefix("x-ms-meta-") else { continue };
        if name.is_empty() {
            return Err(ErrorCode::InvalidHeaderValue);
        }
        let original = names
            .iter()
            .find(|n| n.len() == k.as_str().len() && n.eq_ignore_ascii_case(k.as_str()))
            .map_or(name, |n| &n["x-ms-meta-".len()..]);
        if !valid_metadata_name(original) {
            return Err(ErrorCode::InvalidMetadata);
        }
        let value = v.to_str().map_err(|_| ErrorCode::InvalidHeaderValue)?.trim().to_owned();
        // Names compare in any case; one sent twice is refused, as Azure documents it (400).
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(original)) {
            return Err(ErrorCode::InvalidMetadata);
        }
        out.push((original.to_owned(), value));
    }
    if out.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_METADATA_BYTES {
        return Err(ErrorCode::MetadataTooLarge);
    }
    Ok(out)
}

/// The standard blob properties a write sets. Put Blob also takes the plain `Content-*`
/// headers when the `x-ms-blob-*` ones are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_disposition: Option<String>,
    pub cache_control: Option<String>,
    pub content_md5: Option<[u8; 16]>,
}

pub fn blob_headers(h: &HeaderMap, fall_back_to_content: bool) -> Result<BlobHeaders, ErrorCode> {
    let pick = |blob: &str, plain: &str| {
        get(h, blob).or_else(|| if fall_back_to_content { get(h, plain) } else { None }).map(str::to_owned)
    };
    Ok(BlobHeaders {
        content_type: pick("x-ms-blob-content-type", "content-type"),
        content_encoding: pick("x-ms-blob-content-encoding", "content-encoding"),
        content_language: pick("x-ms-blob-content-language", "content-language"),
        content_disposition: pick("x-ms-blob-content-disposition", "content-disposition"),
        cache_control: pick("x-ms-blob-cache-control", "cache-control"),
        content_md5: md5(h, "x-ms-blob-content-md5")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn conditions_parse_lists_stars_and_dates() {
        let c = conditions(&h(&[
            ("if-match", "\"0xA\", \"0xB\""),
            ("if-none-match", "*"),
            ("if-unmodified-since", "Sun, 22 Nov 2026 09:31:17 GMT"),
            ("if-modified-since", "not a date"),
        ]));
        assert_eq!(c.if_match, Some(ETagMatch::Tags(vec!["0xA".into(), "0xB".into()])));
        assert_eq!(c.if_none_match, Some(ETagMatch::Any));
        assert_eq!(c.if_unmodified_since, Some(1_795_339_877));
        assert_eq!(c.if_modified_since, None);
    }

    #[test]
    fn dates_roundtrip_at_seconds() {
        assert_eq!(http_date(1_795_339_877_900_000_000), "Sun, 22 Nov 2026 09:31:17 GMT");
    }

    #[test]
    fn empty_blob_headers_are_unset_and_put_blob_falls_back() {
        let m = h(&[
            ("x-ms-blob-cache-control", ""),
            ("content-type", "text/plain"),
            ("x-ms-blob-content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
        ]);
        let b = blob_headers(&m, true).unwrap();
        assert_eq!(b.cache_control, None);
        assert_eq!(b.content_type.as_deref(), Some("text/plain"));
        assert_eq!(b.content_md5.map(|m| m[0]), Some(0xd4));
        assert_eq!(blob_headers(&m, false).unwrap().content_type, None);
        assert_eq!(blob_headers(&h(&[("x-ms-blob-content-md5", "bad")]), true), Err(ErrorCode::InvalidHeaderValue));
    }

    #[test]
    fn metadata_names_are_identifiers_and_the_whole_at_most_8_kib() {
        for bad in ["x-ms-meta-1abc", "x-ms-meta-a-b", "x-ms-meta-a.b"] {
            assert_eq!(metadata(&h(&[(bad, "v")]), &[]), Err(ErrorCode::InvalidMetadata), "{bad}");
        }
        assert!(metadata(&h(&[("x-ms-meta-_ok_1", "v"), ("x-ms-meta-hdi_isfolder", "true")]), &[]).is_ok());
        let mut m = HeaderMap::new();
        m.insert("x-ms-meta-big", "v".repeat(MAX_METADATA_BYTES - 3).parse().unwrap());
        assert_eq!(metadata(&m, &[]).map(|md| md.len()), Ok(1), "exactly 8 KiB with its name");
        m.insert("x-ms-meta-b", "v".parse().unwrap());
        assert_eq!(metadata(&m, &[]), Err(ErrorCode::MetadataTooLarge));
    }

    #[test]
    fn metadata_keeps_the_case_it_was_sent_with() {
        let m = h(&[("x-ms-meta-mixed_case", "X"), ("x-ms-meta-k1", "v1")]);
        let md = metadata(&m, &["x-ms-meta-Mixed_Case".into()]).unwrap();
        assert_eq!(md, vec![("Mixed_Case".to_owned(), "X".to_owned()), ("k1".to_owned(), "v1".to_owned())]);
        // A name sent twice, in any case, is refused (Azure: 400), not joined into one value.
        let mut twice = HeaderMap::new();
        twice.append("x-ms-meta-foo", "1".parse().unwrap());
        twice.append("x-ms-meta-foo", "2".parse().unwrap());
        let names = ["x-ms-meta-Foo".to_owned(), "x-ms-meta-foo".to_owned()];
        assert_eq!(metadata(&twice, &names), Err(ErrorCode::InvalidMetadata));
    }
}
