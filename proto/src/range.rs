//! Byte ranges of Get Blob: `x-ms-range` (which wins) or `Range`, `bytes=START-END` or
//! `bytes=START-`, and the `Content-Range` of the answer.

use http::HeaderMap;

use crate::error_code::ErrorCode;

/// `bytes=a-b` or `bytes=a-` as (a, Some(b) or None); None when it is not one such range.
pub fn parse(v: &str) -> Option<(u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b = b.trim();
    if b.is_empty() {
        return Some((a, None));
    }
    let b: u64 = b.parse().ok()?;
    (b >= a).then_some((a, Some(b)))
}

/// The range a request asks for. A malformed `x-ms-range` is an error (it is Azure's own
/// header); a malformed `Range` is ignored, as HTTP says.
pub fn requested(h: &HeaderMap) -> Result<Option<(u64, Option<u64>)>, ErrorCode> {
    if let Some(v) = h.get("x-ms-range") {
        let v = v.to_str().map_err(|_| ErrorCode::InvalidHeaderValue)?;
        return parse(v).map(Some).ok_or(ErrorCode::InvalidHeaderValue);
    }
    Ok(h.get("range").and_then(|v| v.to_str().ok()).and_then(parse))
}

/// `Content-Range` for bytes `[start, end)` of `total`.
pub fn content_range(start: u64, end: u64, total: u64) -> String {
    debug_assert!(start < end && end <= total);
    format!("bytes {start}-{}/{total}", end - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("bytes=0-99"), Some((0, Some(99))));
        assert_eq!(parse("bytes=100-"), Some((100, None)));
        assert_eq!(parse("bytes=5-4"), None);
        assert_eq!(parse("bytes=-10"), None, "suffix ranges are not Azure's");
        assert_eq!(parse("bytes=0-1,5-6"), None);
        assert_eq!(parse("items=0-1"), None);
        assert_eq!(content_range(0, 100, 1000), "bytes 0-99/1000");
    }

    #[test]
    fn x_ms_range_wins_and_must_be_valid() {
        let mut h = HeaderMap::new();
        h.insert("range", "bytes=0-1".parse().unwrap());
        assert_eq!(requested(&h), Ok(Some((0, Some(1)))));
        h.insert("x-ms-range", "bytes=10-19".parse().unwrap());
        assert_eq!(requested(&h), Ok(Some((10, Some(19)))));
        h.insert("x-ms-range", "garbage".parse().unwrap());
        assert_eq!(requested(&h), Err(ErrorCode::InvalidHeaderValue));
        let mut h = HeaderMap::new();
        h.insert("range", "garbage".parse().unwrap());
        assert_eq!(requested(&h), Ok(None));
    }
}
