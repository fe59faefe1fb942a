//! A routed request as a typed operation: each variant carries its parameters parsed and
//! validated from the target and headers, so a handler only acts. Bodies are not read here
//! (that is I/O); the parsers for the small ones (block lists, ACLs, batches) are in `xml` and
//! `batch`. Adding an operation means a variant here, a route in `op`, and one handler.

use http::HeaderMap;

use crate::addr::Target;
use crate::conditions::Conditions;
use crate::error_code::ErrorCode;
use crate::headers::{self as hdr, BlobHeaders};
use crate::op::Operation;

/// User metadata: names as the client wrote them, values trimmed.
pub type Metadata = Vec<(String, String)>;

/// A byte range as sent: first byte, and last byte when given (inclusive).
pub type Range = (u64, Option<u64>);

/// The most items a listing returns in one page.
pub const MAX_RESULTS: usize = 5000;

/// The most bytes Get Blob returns with a digest of the range ([`RangeDigest`]).
pub const MAX_RANGE_DIGEST: u64 = 4 << 20;

/// A digest of a ranged read the client asked for: `x-ms-range-get-content-md5: true` (answered
/// in `Content-MD5`) or `x-ms-range-get-content-crc64: true` (in `x-ms-content-crc64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDigest {
    Md5,
    Crc64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub account: String,
    pub container: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub account: String,
    pub container: String,
    pub blob: String,
}

/// Who may read a container without credentials (`x-ms-blob-public-access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublicAccess {
    #[default]
    None,
    Blob,
    Container,
}

impl PublicAccess {
    /// The header's value, `None` for a private container (Azure omits the header then).
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            PublicAccess::None => None,
            PublicAccess::Blob => Some("blob"),
            PublicAccess::Container => Some("container"),
        }
    }
}

/// `maxresults`: the page size used, and whether the client sent it (the listing echoes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxResults {
    pub value: usize,
    pub sent: bool,
}

/// `If-Range` of Get Blob: the range holds only while the blob is the one the client has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfRange {
    ETag(String),
    /// Seconds since the Unix epoch.
    Date(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockListType {
    Committed,
    Uncommitted,
    All,
}

/// The properties a write sets, and its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobSettings {
    pub headers: BlobHeaders,
    pub metadata: Metadata,
    /// `x-ms-access-tier` of Put Blob, Put Block List and the copies.
    pub access_tier: Option<AccessTier>,
}

/// The online access tiers of a block blob. They differ in Azure's price of storing and
/// reading, not in how a blob is read, which is why the node keeps and reports them as set.
/// Archive (a blob no one can read until it is rehydrated, hours later) is not offered: the
/// node moves cold data to its Azure tier by itself, readable throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessTier {
    Hot,
    Cool,
    Cold,
}

impl AccessTier {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTier::Hot => "Hot",
            AccessTier::Cool => "Cool",
            AccessTier::Cold => "Cold",
        }
    }

    /// A tier's name as Azure spells it, in any case; Archive and the premium page blob tiers
    /// are refused as values this node does not take.
    pub fn parse(v: &str) -> Result<AccessTier, ErrorCode> {
        [AccessTier::Hot, AccessTier::Cool, AccessTier::Cold]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(v.trim()))
            .ok_or(ErrorCode::InvalidHeaderValue)
    }
}

/// The source of a copy: its URL, the part of it wanted, the conditions it must meet, and the
/// headers a request to a remote source carries (its credentials and those conditions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    pub url: String,
    pub range: Option<Range>,
    pub conditions: Conditions,
    pub forward: Vec<(&'static str, String)>,
    /// `x-ms-source-content-md5` / `-crc64`: what the bytes that arrive from the source must
    /// hash to (the copy fails with `Md5Mismatch` / `Crc64Mismatch` otherwise).
    pub md5: Option<[u8; 16]>,
    pub crc64: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListContainers {
    pub account: String,
    pub prefix: String,
    pub marker: Option<String>,
    pub max_results: MaxResults,
    pub include_metadata: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListBlobs {
    pub container: ContainerRef,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub marker: Option<String>,
    pub max_results: MaxResults,
    pub include_metadata: bool,
    /// `include=uncommittedblobs`: blobs with uncommitted blocks only are listed too.
    pub include_uncommitted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutBlob {
    pub blob: BlobRef,
    pub settings: BlobSettings,
    pub content_md5: Option<[u8; 16]>,
    pub content_crc64: Option<u64>,
    pub conditions: Conditions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutBlock {
    pub blob: BlobRef,
    pub block_id: Vec<u8>,
    pub content_md5: Option<[u8; 16]>,
    pub content_crc64: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutBlockList {
    pub blob: BlobRef,
    /// MD5 of the XML body.
    pub content_md5: Option<[u8; 16]>,
    pub settings: BlobSettings,
    pub conditions: Conditions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetBlob {
    pub blob: BlobRef,
    pub range: Option<Range>,
    pub if_range: Option<IfRange>,
    /// A digest of the range to send with it.
    pub range_digest: Option<RangeDigest>,
    pub conditions: Conditions,
}

/// Copy Blob and Put Blob From URL: a whole source into a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFromUrl {
    pub blob: BlobRef,
    pub source: CopySource,
    pub settings: BlobSettings,
    /// Whether the source's properties and metadata pass to the copy where the request sets none
    /// (always for Copy Blob; Put Blob From URL unless `x-ms-copy-source-blob-properties: false`).
    pub keep_source_props: bool,
    pub conditions: Conditions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutBlockFromUrl {
    pub blob: BlobRef,
    pub block_id: Vec<u8>,
    pub source: CopySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobBatch {
    pub account: String,
    /// The container a batch was sent to: its sub-requests must stay inside it.
    pub container: Option<String>,
    pub boundary: String,
    /// The batch's `x-ms-version`, which Azure applies to every sub-request.
    pub version: Option<String>,
}

/// One Blob operation with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    GetAccountInfo,
    ListContainers(ListContainers),
    CreateContainer { container: ContainerRef, metadata: Metadata, public_access: PublicAccess },
    DeleteContainer { container: ContainerRef },
    GetContainerProperties { container: ContainerRef },
    SetContainerMetadata { container: ContainerRef, metadata: Metadata },
    GetContainerAcl { container: ContainerRef },
    SetContainerAcl { container: ContainerRef, public_access: PublicAccess },
    ListBlobs(ListBlobs),
    PutBlob(PutBlob),
    PutBlobFromUrl(CopyFromUrl),
    CopyBlob(CopyFromUrl),
    PutBlock(PutBlock),
    PutBlockFromUrl(PutBlockFromUrl),
    PutBlockList(PutBlockList),
    GetBlockList { blob: BlobRef, list_type: BlockListType },
    GetBlob(GetBlob),
    GetBlobProperties { blob: BlobRef, conditions: Conditions },
    DeleteBlob { blob: BlobRef, conditions: Conditions },
    SetBlobMetadata { blob: BlobRef, metadata: Metadata, conditions: Conditions },
    SetBlobProperties { blob: BlobRef, settings: BlobSettings, conditions: Conditions },
    SetBlobTier { blob: BlobRef, tier: AccessTier },
    AbortCopyBlob { blob: BlobRef, copy_id: String },
    BlobBatch(BlobBatch),
    GetUserDelegationKey,
    GetBlobServiceProperties,
    SetBlobServiceProperties,
}

impl Request {
    /// Parses the parameters of operation `op` (from [`crate::op::route`]). `meta_names` are the
    /// `x-ms-meta-*` header names as the client wrote them, where the HTTP layer kept them.
    pub fn parse(op: Operation, t: &Target, h: &HeaderMap, meta_names: &[String]) -> Result<Request, ErrorCode> {
        use Operation as O;
        let metadata = || hdr::metadata(h, meta_names);
        let settings = |fall_back| -> Result<BlobSettings, ErrorCode> {
            Ok(BlobSettings {
                headers: hdr::blob_headers(h, fall_back)?,
                metadata: metadata()?,
                access_tier: hdr::get(h, "x-ms-access-tier").map(AccessTier::parse).transpose()?,
            })
        };
        let conditions = || hdr::conditions(h);
        Ok(match op {
            O::GetAccountInfo => Request::GetAccountInfo,
            O::GetUserDelegationKey => Request::GetUserDelegationKey,
            O::GetBlobServiceProperties => Request::GetBlobServiceProperties,
            O::SetBlobServiceProperties => Request::SetBlobServiceProperties,
            O::ListContainers => Request::ListContainers(ListContainers {
                account: t.account.clone(),
                prefix: xml_param(t, "prefix")?.unwrap_or_default(),
                marker: marker(t)?,
                max_results: max_results(t)?,
                include_metadata: includes(t, CONTAINER_INCLUDES)?.contains(&"metadata"),
            }),
            O::CreateContainer => Request::CreateContainer {
                container: container(t)?,
                metadata: metadata()?,
                public_access: public_access(h)?,
            },
            O::DeleteContainer => Request::DeleteContainer { container: container(t)? },
            O::GetContainerProperties => Request::GetContainerProperties { container: container(t)? },
            O::SetContainerMetadata => {
                Request::SetContainerMetadata { container: container(t)?, metadata: metadata()? }
            }
            O::GetContainerAcl => Request::GetContainerAcl { container: container(t)? },
            O::SetContainerAcl => {
                Request::SetContainerAcl { container: container(t)?, public_access: public_access(h)? }
            }
            O::ListBlobs => {
                let include = includes(t, BLOB_INCLUDES)?;
                Request::ListBlobs(ListBlobs {
                    container: container(t)?,
                    prefix: xml_param(t, "prefix")?.unwrap_or_default(),
                    delimiter: xml_param(t, "delimiter")?.filter(|d| !d.is_empty()),
                    marker: marker(t)?,
                    max_results: max_results(t)?,
                    include_metadata: include.contains(&"metadata"),
                    include_uncommitted: include.contains(&"uncommittedblobs"),
                })
            }
            O::PutBlob => {
                let blob = blob(t)?;
                block_blob_type(h)?;
                let (content_md5, content_crc64) = (hdr::md5(h, "content-md5")?, crc64(h, "x-ms-content-crc64")?);
                Request::PutBlob(PutBlob {
                    blob,
                    settings: settings(true)?,
                    content_md5,
                    content_crc64,
                    conditions: conditions(),
                })
            }
            O::PutBlock => Request::PutBlock(PutBlock {
                blob: blob(t)?,
                block_id: block_id(t)?,
                content_md5: hdr::md5(h, "content-md5")?,
                content_crc64: crc64(h, "x-ms-content-crc64")?,
            }),
            O::PutBlockList => Request::PutBlockList(PutBlockList {
                blob: blob(t)?,
                content_md5: hdr::md5(h, "content-md5")?,
                settings: settings(false)?,
                conditions: conditions(),
            }),
            O::GetBlockList => Request::GetBlockList { blob: blob(t)?, list_type: block_list_type(t)? },
            O::GetBlob => Request::GetBlob(GetBlob {
                blob: blob(t)?,
                range: crate::range::requested(h)?,
                if_range: if_range(h),
                range_digest: range_digest(h)?,
                conditions: conditions(),
            }),
            O::GetBlobProperties => Request::GetBlobProperties { blob: blob(t)?, conditions: conditions() },
            O::DeleteBlob => Request::DeleteBlob { blob: blob(t)?, conditions: conditions() },
            O::SetBlobMetadata => {
                Request::SetBlobMetadata { blob: blob(t)?, metadata: metadata()?, conditions: conditions() }
            }
            O::AbortCopyBlob => {
                match hdr::get(h, "x-ms-copy-action") {
                    Some(a) if a.eq_ignore_ascii_case("abort") => {}
                    Some(_) => return Err(ErrorCode::InvalidHeaderValue),
                    None => return Err(ErrorCode::MissingRequiredHeader),
                }
                let copy_id = t.param("copyid").filter(|id| !id.is_empty());
                let copy_id = copy_id.ok_or(ErrorCode::MissingRequiredQueryParameter)?.to_owned();
                Request::AbortCopyBlob { blob: blob(t)?, copy_id }
            }
            O::SetBlobTier => Request::SetBlobTier {
                blob: blob(t)?,
                tier: AccessTier::parse(hdr::get(h, "x-ms-access-tier").ok_or(ErrorCode::MissingRequiredHeader)?)?,
            },
            O::SetBlobProperties => {
                Request::SetBlobProperties { blob: blob(t)?, settings: settings(false)?, conditions: conditions() }
            }
            O::CopyBlob | O::PutBlobFromUrl => {
                let copy = CopyFromUrl {
                    blob: blob(t)?,
                    source: copy_source(h, None)?,
                    settings: settings(false)?,
                    keep_source_props: op == O::CopyBlob
                        || hdr::get(h, "x-ms-copy-source-blob-properties") != Some("false"),
                    conditions: conditions(),
                };
                if op == O::CopyBlob {
                    Request::CopyBlob(copy)
                } else {
                    Request::PutBlobFromUrl(copy)
                }
            }
            O::PutBlockFromUrl => {
                let (blob, block_id) = (blob(t)?, block_id(t)?);
                let range = match hdr::get(h, "x-ms-source-range") {
                    None => None,
                    Some(v) => Some(crate::range::parse(v).ok_or(ErrorCode::InvalidHeaderValue)?),
                };
                Request::PutBlockFromUrl(PutBlockFromUrl { blob, block_id, source: copy_source(h, range)? })
            }
            O::BlobBatch => Request::BlobBatch(BlobBatch {
                version: hdr::get(h, "x-ms-version").map(str::to_owned),
                account: t.account.clone(),
                container: t.container.clone(),
                boundary: crate::batch::boundary(hdr::get(h, "content-type").unwrap_or(""))
                    .ok_or(ErrorCode::InvalidHeaderValue)?
                    .to_owned(),
            }),
        })
    }
}

fn container(t: &Target) -> Result<ContainerRef, ErrorCode> {
    let container = t.container.clone().ok_or(ErrorCode::InvalidUri)?;
    Ok(ContainerRef { account: t.account.clone(), container })
}

fn blob(t: &Target) -> Result<BlobRef, ErrorCode> {
    match (&t.container, &t.blob) {
        (Some(c), Some(b)) => Ok(BlobRef { account: t.account.clone(), container: c.clone(), blob: b.clone() }),
        _ => Err(ErrorCode::InvalidUri),
    }
}

fn marker(t: &Target) -> Result<Option<String>, ErrorCode> {
    Ok(xml_param(t, "marker")?.filter(|m| !m.is_empty()))
}

/// A query parameter a listing echoes in its XML: one holding a character XML cannot carry is
/// refused (the answer would be malformed, and clients fail on the whole listing).
fn xml_param(t: &Target, name: &str) -> Result<Option<String>, ErrorCode> {
    match t.param(name) {
        Some(v) if !crate::xml::is_xml_text(v) => Err(ErrorCode::InvalidQueryParameterValue),
        v => Ok(v.map(str::to_owned)),
    }
}

/// The `include` values List Containers takes (Azure's list; only `metadata` adds anything here).
const CONTAINER_INCLUDES: &[&str] = &["metadata", "deleted", "system"];

/// The `include` values List Blobs takes (Azure's list): the node keeps no snapshots, versions,
/// soft-deleted blobs, tags or holds, so those add nothing.
const BLOB_INCLUDES: &[&str] = &[
    "metadata",
    "snapshots",
    "uncommittedblobs",
    "copy",
    "deleted",
    "tags",
    "versions",
    "deletedwithversions",
    "immutabilitypolicy",
    "legalhold",
    "permissions",
];

/// The values a listing's `include` asks for, as `known` spells them. A value Azure does not
/// know is refused, as Azure does (400 `InvalidQueryParameterValue`), rather than ignored: the
/// client asked for something it would silently not get.
fn includes(t: &Target, known: &[&'static str]) -> Result<Vec<&'static str>, ErrorCode> {
    let mut asked = Vec::new();
    for item in t.param("include").unwrap_or_default().split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match known.iter().find(|k| k.eq_ignore_ascii_case(item)) {
            Some(k) => asked.push(*k),
            None => return Err(ErrorCode::InvalidQueryParameterValue),
        }
    }
    Ok(asked)
}

/// `maxresults`: 1 or more (larger values are cut to [`MAX_RESULTS`]), 5000 when absent.
fn max_results(t: &Target) -> Result<MaxResults, ErrorCode> {
    let value = match t.param("maxresults") {
        None | Some("") => MAX_RESULTS,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_RESULTS),
            _ => return Err(ErrorCode::InvalidQueryParameterValue),
        },
    };
    Ok(MaxResults { value, sent: t.param("maxresults").is_some() })
}

fn public_access(h: &HeaderMap) -> Result<PublicAccess, ErrorCode> {
    match hdr::get(h, "x-ms-blob-public-access") {
        None => Ok(PublicAccess::None),
        Some(v) if v.eq_ignore_ascii_case("container") => Ok(PublicAccess::Container),
        Some(v) if v.eq_ignore_ascii_case("blob") => Ok(PublicAccess::Blob),
        Some(_) => Err(ErrorCode::InvalidHeaderValue),
    }
}

/// The digest of a range a Get Blob asks for: one at most (both is 400, as Azure answers).
fn range_digest(h: &HeaderMap) -> Result<Option<RangeDigest>, ErrorCode> {
    let asked = |name| hdr::get(h, name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match (asked("x-ms-range-get-content-md5"), asked("x-ms-range-get-content-crc64")) {
        (true, true) => Err(ErrorCode::InvalidHeaderValue),
        (true, false) => Ok(Some(RangeDigest::Md5)),
        (false, true) => Ok(Some(RangeDigest::Crc64)),
        (false, false) => Ok(None),
    }
}

/// Put Blob must say it writes a block blob: the only kind served.
fn block_blob_type(h: &HeaderMap) -> Result<(), ErrorCode> {
    match hdr::get(h, "x-ms-blob-type") {
        Some("BlockBlob") => Ok(()),
        Some(_) => Err(ErrorCode::InvalidHeaderValue),
        None => Err(ErrorCode::MissingRequiredHeader),
    }
}

/// A CRC-64 header (`x-ms-content-crc64`, `x-ms-source-content-crc64`), if sent: 8 bytes,
/// base64, little-endian.
fn crc64(h: &HeaderMap, name: &str) -> Result<Option<u64>, ErrorCode> {
    use base64::Engine;
    match hdr::get(h, name) {
        None => Ok(None),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v)
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(|b| Some(u64::from_le_bytes(b)))
            .ok_or(ErrorCode::InvalidHeaderValue),
    }
}

/// `blockid`, base64-decoded. Its length is checked where blocks are kept.
fn block_id(t: &Target) -> Result<Vec<u8>, ErrorCode> {
    use base64::Engine;
    let raw = t.param("blockid").ok_or(ErrorCode::InvalidQueryParameterValue)?;
    base64::engine::general_purpose::STANDARD.decode(raw).map_err(|_| ErrorCode::InvalidQueryParameterValue)
}

fn block_list_type(t: &Target) -> Result<BlockListType, ErrorCode> {
    match t.param("blocklisttype").unwrap_or("committed").to_ascii_lowercase().as_str() {
        "committed" => Ok(BlockListType::Committed),
        "uncommitted" => Ok(BlockListType::Uncommitted),
        "all" => Ok(BlockListType::All),
        _ => Err(ErrorCode::InvalidQueryParameterValue),
    }
}

/// `If-Range`: a quoted ETag, else an HTTP date; anything else is ignored (the range holds).
fn if_range(h: &HeaderMap) -> Option<IfRange> {
    let v = hdr::get(h, "if-range")?;
    match v.strip_prefix('"') {
        Some(tag) => Some(IfRange::ETag(tag.trim_end_matches('"').to_owned())),
        None => hdr::parse_date(v).map(IfRange::Date),
    }
}

fn copy_source(h: &HeaderMap, range: Option<Range>) -> Result<CopySource, ErrorCode> {
    let url = hdr::get(h, "x-ms-copy-source").ok_or(ErrorCode::MissingRequiredHeader)?.to_owned();
    let mut forward = Vec::new();
    if let Some(auth) = hdr::get(h, "x-ms-copy-source-authorization") {
        forward.push(("authorization", auth.to_owned()));
    }
    // A remote source checks the source conditions itself, as its own conditional headers.
    for (name, from) in hdr::CONDITIONS.into_iter().zip(hdr::SOURCE_CONDITIONS) {
        if let Some(v) = hdr::get(h, from) {
            forward.push((name, v.to_owned()));
        }
    }
    Ok(CopySource {
        url,
        range,
        conditions: hdr::source_conditions(h),
        forward,
        md5: hdr::md5(h, "x-ms-source-content-md5")?,
        crc64: crc64(h, "x-ms-source-content-crc64")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::parse;
    use crate::conditions::ETagMatch;
    use http::Method;

    fn req(method: Method, target: &str, headers: &[(&'static str, &'static str)]) -> Result<Request, ErrorCode> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, v.parse().unwrap());
        }
        let t = parse(target, Some("127.0.0.1")).unwrap();
        let op = crate::op::route(&method, &t, &h)?;
        Request::parse(op, &t, &h, &["x-ms-meta-Name".to_owned()])
    }

    fn blob_ref() -> BlobRef {
        BlobRef { account: "a".into(), container: "ctr".into(), blob: "dir/b".into() }
    }

    #[test]
    fn listings_take_their_paging_parameters() {
        let r = req(Method::GET, "/a/ctr?restype=container&comp=list&prefix=p&delimiter=%2F&marker=m&maxresults=9000&include=snapshots,metadata", &[]);
        let Ok(Request::ListBlobs(l)) = r else { panic!("{r:?}") };
        assert_eq!((l.prefix.as_str(), l.delimiter.as_deref(), l.marker.as_deref()), ("p", Some("/"), Some("m")));
        assert_eq!(l.max_results, MaxResults { value: MAX_RESULTS, sent: true }, "above 5000 is cut to 5000");
        assert!(l.include_metadata);
        let r = req(Method::GET, "/a/ctr?restype=container&comp=list&include=Copy,,uncommittedblobs", &[]);
        let Ok(Request::ListBlobs(l)) = r else { panic!("{r:?}") };
        assert!(!l.include_metadata && l.include_uncommitted, "known values, no metadata");
        let r = req(Method::GET, "/a/ctr?restype=container&comp=list&include=METADATA", &[]);
        let Ok(Request::ListBlobs(l)) = r else { panic!("{r:?}") };
        assert!(l.include_metadata && !l.include_uncommitted);
        let Ok(Request::ListContainers(c)) = req(Method::GET, "/a?comp=list&include=system,Metadata", &[]) else {
            panic!()
        };
        assert!(c.include_metadata, "values compare in any case");
        for bad in ["prefix=a%01", "marker=%EF%BF%BF", "delimiter=%1F", "include=metadata,foo", "include=system"] {
            let r = req(Method::GET, &format!("/a/ctr?restype=container&comp=list&{bad}"), &[]);
            assert_eq!(r.err(), Some(ErrorCode::InvalidQueryParameterValue), "{bad}: refused");
        }
        let Ok(Request::ListContainers(c)) = req(Method::GET, "/a?comp=list&delimiter=&marker=", &[]) else { panic!() };
        assert_eq!(
            (c.marker, c.max_results, c.include_metadata),
            (None, MaxResults { value: 5000, sent: false }, false)
        );
        let r = req(Method::GET, "/a?comp=list&include=snapshots", &[]);
        assert_eq!(r.err(), Some(ErrorCode::InvalidQueryParameterValue), "a blob listing's value on containers");
        for bad in ["0", "-1", "x"] {
            let target = format!("/a?comp=list&maxresults={bad}");
            let t = parse(&target, None).unwrap();
            let got = Request::parse(Operation::ListContainers, &t, &HeaderMap::new(), &[]);
            assert_eq!(got, Err(ErrorCode::InvalidQueryParameterValue), "maxresults={bad}");
        }
    }

    #[test]
    fn put_blob_needs_the_block_blob_type_and_valid_digests() {
        let ok = req(
            Method::PUT,
            "/a/ctr/dir/b",
            &[
                ("x-ms-blob-type", "BlockBlob"),
                ("content-type", "text/plain"),
                ("x-ms-meta-name", "v"),
                ("x-ms-content-crc64", "AQAAAAAAAAA="),
                ("if-none-match", "*"),
            ],
        );
        let Ok(Request::PutBlob(p)) = ok else { panic!("{ok:?}") };
        assert_eq!(p.blob, blob_ref());
        assert_eq!(
            p.settings.headers.content_type.as_deref(),
            Some("text/plain"),
            "Put Blob falls back to Content-Type"
        );
        assert_eq!(p.settings.metadata, vec![("Name".to_owned(), "v".to_owned())], "the name's case as sent");
        assert_eq!((p.content_crc64, p.content_md5), (Some(1), None));
        assert_eq!(p.conditions.if_none_match, Some(ETagMatch::Any));
        assert_eq!(req(Method::PUT, "/a/ctr/b", &[]), Err(ErrorCode::MissingRequiredHeader));
        assert_eq!(req(Method::PUT, "/a/ctr/b", &[("x-ms-blob-type", "PageBlob")]), Err(ErrorCode::InvalidHeaderValue));
        for (name, v) in [("content-md5", "short"), ("x-ms-content-crc64", "AQID")] {
            let h = [("x-ms-blob-type", "BlockBlob"), (name, v)];
            assert_eq!(req(Method::PUT, "/a/ctr/b", &h), Err(ErrorCode::InvalidHeaderValue), "{name}: {v}");
        }
    }

    #[test]
    fn blocks_decode_their_ids_and_list_types() {
        let Ok(Request::PutBlock(b)) = req(Method::PUT, "/a/ctr/dir/b?comp=block&blockid=YWJj", &[]) else { panic!() };
        assert_eq!((b.blob, b.block_id), (blob_ref(), b"abc".to_vec()));
        assert_eq!(req(Method::PUT, "/a/ctr/b?comp=block", &[]), Err(ErrorCode::InvalidQueryParameterValue));
        assert_eq!(req(Method::PUT, "/a/ctr/b?comp=block&blockid=!!", &[]), Err(ErrorCode::InvalidQueryParameterValue));
        for (q, want) in [("", BlockListType::Committed), ("&blocklisttype=ALL", BlockListType::All)] {
            let r = req(Method::GET, &format!("/a/ctr/dir/b?comp=blocklist{q}"), &[]);
            assert_eq!(r, Ok(Request::GetBlockList { blob: blob_ref(), list_type: want }));
        }
        assert_eq!(
            req(Method::GET, "/a/ctr/b?comp=blocklist&blocklisttype=some", &[]),
            Err(ErrorCode::InvalidQueryParameterValue)
        );
    }

    #[test]
    fn abort_copy_blob_needs_the_abort_action_and_a_copy_id() {
        let abort = [("x-ms-copy-action", "Abort")];
        let r = req(Method::PUT, "/a/ctr/dir/b?comp=copy&copyid=1f2e", &abort);
        assert_eq!(r, Ok(Request::AbortCopyBlob { blob: blob_ref(), copy_id: "1f2e".into() }));
        let r = req(Method::PUT, "/a/ctr/b?comp=copy&copyid=1f2e", &[("x-ms-copy-action", "pause")]);
        assert_eq!(r, Err(ErrorCode::InvalidHeaderValue));
        assert_eq!(req(Method::PUT, "/a/ctr/b?comp=copy&copyid=1f2e", &[]), Err(ErrorCode::MissingRequiredHeader));
        let r = req(Method::PUT, "/a/ctr/b?comp=copy&copyid=", &abort);
        assert_eq!(r, Err(ErrorCode::MissingRequiredQueryParameter));
        assert_eq!(req(Method::GET, "/a/ctr/b?comp=copy&copyid=1f2e", &abort), Err(ErrorCode::UnsupportedHttpVerb));
    }

    #[test]
    fn get_blob_takes_ranges_if_range_and_a_range_digest() {
        let r = req(
            Method::GET,
            "/a/ctr/dir/b",
            &[
                ("x-ms-range", "bytes=5-9"),
                ("range", "bytes=0-1"),
                ("if-range", "\"0xAB\""),
                ("x-ms-range-get-content-md5", "true"),
            ],
        );
        let Ok(Request::GetBlob(g)) = r else { panic!("{r:?}") };
        assert_eq!(
            (g.range, g.if_range, g.range_digest),
            (Some((5, Some(9))), Some(IfRange::ETag("0xAB".into())), Some(RangeDigest::Md5))
        );
        let crc = [("x-ms-range", "bytes=0-9"), ("x-ms-range-get-content-crc64", "True")];
        let Ok(Request::GetBlob(g)) = req(Method::GET, "/a/ctr/b", &crc) else { panic!() };
        assert_eq!(g.range_digest, Some(RangeDigest::Crc64));
        let both = [crc[0], crc[1], ("x-ms-range-get-content-md5", "true")];
        assert_eq!(req(Method::GET, "/a/ctr/b", &both), Err(ErrorCode::InvalidHeaderValue), "one digest at most");
        let Ok(Request::GetBlob(g)) = req(Method::GET, "/a/ctr/b", &[("x-ms-range-get-content-md5", "false")]) else {
            panic!()
        };
        assert_eq!(g.range_digest, None);
        let Ok(Request::GetBlob(g)) = req(Method::GET, "/a/ctr/b", &[("if-range", "Sun, 22 Nov 2026 09:31:17 GMT")])
        else {
            panic!()
        };
        assert_eq!(g.if_range, Some(IfRange::Date(1_795_339_877)));
        assert_eq!(req(Method::GET, "/a/ctr/b", &[("x-ms-range", "bytes=9-5")]), Err(ErrorCode::InvalidHeaderValue));
    }

    #[test]
    fn copies_carry_their_source_and_what_to_forward() {
        let r = req(
            Method::PUT,
            "/a/ctr/dir/b?comp=block&blockid=YQ%3D%3D",
            &[
                ("x-ms-copy-source", "http://src/a/c/b?sig=x"),
                ("x-ms-source-range", "bytes=10-19"),
                ("x-ms-source-if-match", "\"0x1\""),
                ("x-ms-copy-source-authorization", "Bearer t"),
            ],
        );
        let Ok(Request::PutBlockFromUrl(p)) = r else { panic!("{r:?}") };
        assert_eq!((p.source.url.as_str(), p.source.range), ("http://src/a/c/b?sig=x", Some((10, Some(19)))));
        assert_eq!(p.source.conditions.if_match, Some(ETagMatch::Tags(vec!["0x1".into()])));
        assert_eq!(
            p.source.forward,
            vec![("authorization", "Bearer t".to_owned()), ("if-match", "\"0x1\"".to_owned())]
        );
        let h = [("x-ms-copy-source", "http://src/a/c/b"), ("x-ms-source-range", "bytes=x")];
        assert_eq!(req(Method::PUT, "/a/ctr/b?comp=block&blockid=YQ%3D%3D", &h), Err(ErrorCode::InvalidHeaderValue));
        let from_url = [
            ("x-ms-copy-source", "http://s/a/c/b"),
            ("x-ms-blob-type", "BlockBlob"),
            ("x-ms-copy-source-blob-properties", "false"),
        ];
        let Ok(Request::PutBlobFromUrl(c)) = req(Method::PUT, "/a/ctr/b", &from_url) else { panic!() };
        assert!(!c.keep_source_props);
        let Ok(Request::CopyBlob(c)) = req(Method::PUT, "/a/ctr/b", &from_url[..1]) else { panic!() };
        assert!(c.keep_source_props, "Copy Blob always keeps the source's properties");
    }

    #[test]
    fn containers_take_public_access_and_batches_a_boundary() {
        let r = req(Method::PUT, "/a/ctr?restype=container", &[("x-ms-blob-public-access", "Blob")]);
        let container = ContainerRef { account: "a".into(), container: "ctr".into() };
        assert_eq!(r, Ok(Request::CreateContainer { container, metadata: vec![], public_access: PublicAccess::Blob }));
        let bad = [("x-ms-blob-public-access", "everyone")];
        assert_eq!(req(Method::PUT, "/a/ctr?restype=container&comp=acl", &bad), Err(ErrorCode::InvalidHeaderValue));
        let b = req(
            Method::POST,
            "/a/ctr?restype=container&comp=batch",
            &[("content-type", "multipart/mixed; boundary=batch_1"), ("x-ms-version", "2026-10-06")],
        );
        assert_eq!(
            b,
            Ok(Request::BlobBatch(BlobBatch {
                account: "a".into(),
                container: Some("ctr".into()),
                boundary: "batch_1".into(),
                version: Some("2026-10-06".into()),
            }))
        );
        assert_eq!(
            req(Method::POST, "/a?comp=batch", &[("content-type", "text/plain")]),
            Err(ErrorCode::InvalidHeaderValue)
        );
    }
}
