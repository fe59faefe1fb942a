//! Where a remote container is. Azure's form is virtual-host style,
//! `https://<account>.blob.core.windows.net/<container>[/<prefix>]`; an IP literal, `localhost` or
//! any other host whose second label is not `blob` is path style,
//! `http://127.0.0.1:10000/<account>/<container>[/<prefix>]` (Azurite, another edgeblob), as
//! `edgeblob_proto::addr` reads addresses on the serving side.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a path keeps unescaped: RFC 3986's unreserved characters and the slash, which Azure
/// reads as part of a blob's name.
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// `host[:port]`, as the `Host` header carries it.
    pub authority: String,
    pub account: String,
    pub container: String,
    /// What every name this endpoint is asked for is put under: empty, or ending with `/`.
    pub prefix: String,
    path_style: bool,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(r), _) => (true, r),
            (None, Some(r)) => (false, r),
            _ => return Err(format!("{url:?} is not an http or https URL")),
        };
        if rest.contains(['?', '#']) {
            return Err("a remote container's URL carries no query (give a SAS as the credential)".into());
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let mut labels = host.split('.');
        let first = labels.next().unwrap_or("");
        let virtual_host = labels.next() == Some("blob") && !first.is_empty();
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let account = if virtual_host { first.to_owned() } else { segments.next().unwrap_or("").to_owned() };
        let container = segments.next().unwrap_or("").to_owned();
        let prefix: Vec<&str> = segments.collect();
        if account.is_empty() || container.is_empty() {
            return Err(format!("{url:?} names no account and container"));
        }
        let prefix = if prefix.is_empty() { String::new() } else { format!("{}/", prefix.join("/")) };
        Ok(Endpoint { https, authority: authority.to_owned(), account, container, prefix, path_style: !virtual_host })
    }

    /// The container's name for object `name` (under the prefix).
    pub fn full_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The request path (percent-encoded) of object `name`, or of the container.
    pub fn path(&self, name: Option<&str>) -> String {
        let mut p = String::new();
        if self.path_style {
            p.push('/');
            p.extend(utf8_percent_encode(&self.account, PATH));
        }
        p.push('/');
        p.extend(utf8_percent_encode(&self.container, PATH));
        if let Some(n) = name {
            p.push('/');
            p.extend(utf8_percent_encode(&self.full_name(n), PATH));
        }
        p
    }

    /// `scheme://authority`, for messages.
    pub fn origin(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.authority)
    }
}

/// Percent-encodes a query value.
pub(crate) fn query_value(v: &str) -> String {
    utf8_percent_encode(v, NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_urls_are_virtual_host_style_and_others_path_style() {
        let e = Endpoint::parse("https://acct.blob.core.windows.net/tier/node-1").unwrap();
        assert_eq!((e.account.as_str(), e.container.as_str(), e.prefix.as_str()), ("acct", "tier", "node-1/"));
        assert_eq!(e.path(Some("packs/0 1")), "/tier/node-1/packs/0%201");
        assert_eq!(e.path(None), "/tier");
        let e = Endpoint::parse("http://127.0.0.1:10000/devstoreaccount1/tier").unwrap();
        assert_eq!((e.account.as_str(), e.container.as_str(), e.prefix.as_str()), ("devstoreaccount1", "tier", ""));
        assert_eq!(e.path(Some("a/b?c")), "/devstoreaccount1/tier/a/b%3Fc");
        assert_eq!(e.authority, "127.0.0.1:10000");
        for bad in [
            "ftp://x/a/b",
            "http:///a/b",
            "http://127.0.0.1/acct",
            "https://a.blob.core.windows.net/",
            "http://h/a/b?sv=1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
