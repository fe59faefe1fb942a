//! Where requests go and how they are authorised: an endpoint and a credential, from a connection
//! string (`UseDevelopmentStorage=true` included), or an endpoint with an account key or a SAS.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgeblob_proto::{sas, shared_key};
use http::HeaderMap;

pub use edgeblob::config::{DEV_ACCOUNT, DEV_KEY};

#[derive(Clone)]
pub enum Credential {
    Key(Vec<u8>),
    /// A SAS query string (without `?`), appended to every request.
    Sas(String),
    /// An Entra ID access token, sent as `Authorization: Bearer` (the node takes it over TLS).
    Bearer(String),
    Anonymous,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Key(_) => "account key",
            Credential::Sas(_) => "SAS",
            Credential::Bearer(_) => "Entra ID token",
            Credential::Anonymous => "anonymous",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Endpoint {
    pub https: bool,
    /// `host:port` to connect to.
    pub authority: String,
    /// The host name for TLS and the Host header.
    pub host: String,
    /// Path before the container: `/<account>` in path style, empty in virtual-host style.
    pub base_path: String,
    pub account: String,
    pub credential: Credential,
}

fn split_url(url: &str) -> Result<(bool, String, String, String), String> {
    let (https, rest) = match url.split_once("://") {
        Some(("https", r)) => (true, r),
        Some(("http", r)) => (false, r),
        _ => return Err(format!("endpoint {url}: expected http:// or https://")),
    };
    let (hostport, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, String::new()));
    if hostport.is_empty() {
        return Err(format!("endpoint {url}: no host"));
    }
    let has_port = hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !hostport.ends_with(']');
    let authority = if has_port { hostport.to_owned() } else { format!("{hostport}:{}", if https { 443 } else { 80 }) };
    let host = if has_port { hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport) } else { hostport };
    Ok((https, authority, host.trim_matches(['[', ']']).to_owned(), path.trim_end_matches('/').to_owned()))
}

impl Endpoint {
    /// An endpoint URL (`http://127.0.0.1:10000/devstoreaccount1` or
    /// `https://acct.blob.core.windows.net`) with an account name (taken from the URL when absent)
    /// and a credential.
    pub fn new(url: &str, account: Option<&str>, credential: Credential) -> Result<Endpoint, String> {
        let (https, authority, host, path) = split_url(url)?;
        let from_host = host.split_once(".blob.").map(|(a, _)| a.to_owned());
        let from_path = path.trim_start_matches('/').split('/').next().filter(|s| !s.is_empty()).map(str::to_owned);
        let account = account
            .map(str::to_owned)
            .or(from_path.clone())
            .or(from_host)
            .ok_or_else(|| format!("endpoint {url}: no account name (give account=)"))?;
        Ok(Endpoint { https, authority, host, base_path: path, account, credential })
    }

    /// A connection string: `UseDevelopmentStorage=true`, or `AccountName`, `AccountKey` or
    /// `SharedAccessSignature`, and `BlobEndpoint` or `DefaultEndpointsProtocol`+`EndpointSuffix`.
    pub fn from_connection_string(cs: &str) -> Result<Endpoint, String> {
        let mut kv = std::collections::HashMap::new();
        for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("connection string: `{part}` is not key=value"))?;
            kv.insert(k.to_ascii_lowercase(), v.to_owned());
        }
        let get = |k: &str| kv.get(k).map(String::as_str);
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let proxy = get("developmentstorageproxyuri").unwrap_or("http://127.0.0.1");
            let url = format!("{}:10000/{DEV_ACCOUNT}", proxy.trim_end_matches('/'));
            return Endpoint::new(&url, Some(DEV_ACCOUNT), key_credential(DEV_KEY)?);
        }
        let account = get("accountname");
        let credential = match (get("accountkey"), get("sharedaccesssignature")) {
            (Some(k), _) => key_credential(k)?,
            (None, Some(s)) => Credential::Sas(s.trim_start_matches('?').to_owned()),
            (None, None) => Credential::Anonymous,
        };
        let url = match get("blobendpoint") {
            Some(u) => u.to_owned(),
            None => {
                let a = account.ok_or("connection string: no AccountName or BlobEndpoint")?;
                let proto = get("defaultendpointsprotocol").unwrap_or("https");
                format!("{proto}://{a}.blob.{}", get("endpointsuffix").unwrap_or("core.windows.net"))
            }
        };
        Endpoint::new(&url, account, credential)
    }

    /// The path of a container or blob, percent-encoded as it goes on the wire.
    pub fn path(&self, container: &str, blob: Option<&str>) -> String {
        let mut p = format!("{}/{container}", self.base_path);
        if let Some(b) = blob {
            p.push('/');
            p.push_str(&percent_encoding::utf8_percent_encode(b, BLOB_NAME).to_string());
        }
        p
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{path_and_query}", if self.https { "https" } else { "http" }, self.authority)
    }

    /// Adds the SAS to the query, or signs the request with the key (SharedKey).
    pub fn authorize(&self, method: &str, path: &str, query: &mut String, headers: &mut HeaderMap, body_len: u64) {
        match &self.credential {
            Credential::Anonymous => {}
            Credential::Bearer(token) => {
                if let Ok(v) = format!("Bearer {token}").parse() {
                    headers.insert(http::header::AUTHORIZATION, v);
                }
            }
            Credential::Sas(s) => {
                query.push(if query.is_empty() { '?' } else { '&' });
                query.push_str(s);
            }
            Credential::Key(key) => {
                let pairs: Vec<(String, String)> = query
                    .trim_start_matches('?')
                    .split('&')
                    .filter(|s| !s.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
                        (dec(k), dec(v))
                    })
                    .collect();
                let req = shared_key::SignedRequest { method, raw_path: path, query: &pairs, headers };
                let len = if body_len == 0 { String::new() } else { body_len.to_string() };
                let sig = shared_key::sign(key, &shared_key::string_to_sign(&self.account, &req, &len));
                if let Ok(v) = format!("SharedKey {}:{sig}", self.account).parse() {
                    headers.insert(http::header::AUTHORIZATION, v);
                }
            }
        }
    }

    /// An account SAS (read, list; all services' blob resources) valid for `hours`, for URLs
    /// handed to another party (a copy source, azcopy). A SAS credential is passed through.
    pub fn account_sas(&self, hours: i64) -> Result<String, String> {
        match &self.credential {
            Credential::Sas(s) => Ok(s.clone()),
            Credential::Anonymous => Ok(String::new()),
            Credential::Bearer(_) => Err("a SAS for another party needs the account key, not a token".into()),
            Credential::Key(key) => {
                let now = std::time::SystemTime::now();
                let fmt = iso8601;
                let st = fmt(now - std::time::Duration::from_secs(300));
                let se = fmt(now + std::time::Duration::from_secs(hours.max(1) as u64 * 3600));
                let (sv, ss, srt, sp, spr) = ("2021-08-06", "b", "sco", "rwdlacu", "https,http");
                let to_sign = format!("{}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{sv}\n\n", self.account);
                let sig = sas::sign(key, &to_sign);
                let enc =
                    |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
                Ok(format!(
                    "sv={sv}&ss={ss}&srt={srt}&sp={sp}&st={}&se={}&spr={}&sig={}",
                    enc(&st),
                    enc(&se),
                    enc(spr),
                    enc(&sig)
                ))
            }
        }
    }
}

fn key_credential(k: &str) -> Result<Credential, String> {
    B64.decode(k.trim()).map(Credential::Key).map_err(|_| "the account key is not base64".to_owned())
}

/// Builds a credential from settings: a key wins over a SAS, a SAS over a token (read from a
/// file, so that it never shows in a process listing or a job file).
pub fn credential(key: Option<&str>, sas: Option<&str>, token_file: Option<&str>) -> Result<Credential, String> {
    match (key, sas, token_file) {
        (Some(k), _, _) => key_credential(k),
        (None, Some(s), _) => Ok(Credential::Sas(s.trim_start_matches('?').to_owned())),
        (None, None, Some(f)) => std::fs::read_to_string(f)
            .map(|t| Credential::Bearer(t.trim().to_owned()))
            .map_err(|e| format!("token_file {f}: {e}")),
        (None, None, None) => Ok(Credential::Anonymous),
    }
}

/// `YYYY-MM-DDThh:mm:ssZ`, as SAS times are written.
fn iso8601(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    edgeblob_proto::sas::iso_time(secs)
}

/// What a blob name keeps unencoded in a path: RFC 3986 unreserved characters and `/`.
const BLOB_NAME: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_storage_is_the_local_emulator_account() {
        let e = Endpoint::from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(
            (e.https, e.authority.as_str(), e.base_path.as_str()),
            (false, "127.0.0.1:10000", "/devstoreaccount1")
        );
        assert_eq!(e.account, DEV_ACCOUNT);
        assert!(matches!(e.credential, Credential::Key(ref k) if k.len() == 64));
    }

    #[test]
    fn connection_strings_with_endpoint_or_suffix() {
        let e = Endpoint::from_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=a1;AccountKey=a2V5;BlobEndpoint=http://10.0.0.2:8080/a1;",
        )
        .unwrap();
        assert_eq!((e.authority.as_str(), e.base_path.as_str(), e.account.as_str()), ("10.0.0.2:8080", "/a1", "a1"));
        let e = Endpoint::from_connection_string("AccountName=lake;SharedAccessSignature=sv=x&sig=y").unwrap();
        assert_eq!((e.https, e.authority.as_str(), e.base_path.as_str()), (true, "lake.blob.core.windows.net:443", ""));
        assert!(matches!(e.credential, Credential::Sas(ref s) if s == "sv=x&sig=y"));
        assert!(Endpoint::from_connection_string("AccountKey").is_err());
    }

    #[test]
    fn blob_paths_are_percent_encoded_except_slashes() {
        let e = Endpoint::new("https://acct.blob.core.windows.net", None, Credential::Anonymous).unwrap();
        assert_eq!(e.account, "acct");
        assert_eq!(e.path("c", Some("a b/ü.bin")), "/c/a%20b/%C3%BC.bin");
    }

    #[test]
    fn iso_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(iso8601(t), "2026-11-18T11:06:40Z");
        assert_eq!(iso8601(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn account_sas_verifies_with_the_node_rules() {
        let e = Endpoint::new("http://127.0.0.1:1/devstoreaccount1", None, key_credential(DEV_KEY).unwrap()).unwrap();
        let q = e.account_sas(1).unwrap();
        let t = edgeblob_proto::addr::parse(&format!("/devstoreaccount1/cont/b?{q}"), Some("127.0.0.1")).unwrap();
        let keys = [B64.decode(DEV_KEY).unwrap()];
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let req = sas::SasRequest {
            target: &t,
            op: edgeblob_proto::op::Operation::GetBlob,
            now,
            client_ip: None,
            https: false,
            policy: None,
        };
        assert_eq!(sas::verify(DEV_ACCOUNT, &keys, &req), Ok(sas::Signer::AccountKey));
    }
}
