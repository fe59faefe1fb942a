//! XML bodies in Azure's schema: errors, List Containers, List Blobs, Get Block List (out), and
//! Put Block List (in). Element names and order follow Azure's responses as the clients read them.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use quick_xml::escape::{escape, partial_escape};
use quick_xml::events::Event;

use crate::error_code::ErrorCode;
use crate::etag_string;

const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#;

/// Whether `c` may appear in an XML 1.0 document at all (its `Char` production): escaping cannot
/// carry the others, not even as character references.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

pub fn is_xml_text(s: &str) -> bool {
    s.chars().all(is_xml_char)
}

/// The time an error body gives (`Time:`), as Azure writes it: UTC to the 100 ns tick,
/// `2026-11-22T09:31:17.2410000Z`.
pub fn error_time(unix_ns: i64) -> String {
    let (secs, ns) = (unix_ns.div_euclid(1_000_000_000), unix_ns.rem_euclid(1_000_000_000));
    let whole = crate::sas::iso_time(secs);
    format!("{}.{:07}Z", whole.trim_end_matches('Z'), ns / 100)
}

/// An error body. Its message may quote what a client sent (an id, a name): a character XML
/// cannot carry becomes U+FFFD rather than making the whole answer unreadable.
pub fn error(code: &str, message: &str, request_id: &str, time: &str) -> String {
    error_with_detail(code, message, None, request_id, time)
}

/// An error body with Azure's `<AuthenticationErrorDetail>`: what a refused credential got
/// wrong (a token's expired lifetime, a signature's string-to-sign).
pub fn error_with_detail(code: &str, message: &str, detail: Option<&str>, request_id: &str, time: &str) -> String {
    let clean = |s: &str| -> String { s.chars().map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' }).collect() };
    let detail = detail
        .map(|d| format!("<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>", partial_escape(clean(d))))
        .unwrap_or_default();
    format!(
        "{DECL}<Error><Code>{}</Code><Message>{}\nRequestId:{request_id}\nTime:{time}</Message>{detail}</Error>",
        partial_escape(code),
        partial_escape(clean(message))
    )
}

/// `<name>value</name>`. Values reaching here are checked where they enter (names, headers and
/// query parameters refuse what XML cannot hold); a blob name is written by [`name_tag`].
fn tag(out: &mut String, name: &str, value: &str) {
    debug_assert!(is_xml_text(value), "{name} holds a character XML cannot carry");
    let _ = write!(out, "<{name}>{}</{name}>", partial_escape(value));
}

/// A blob name (or a prefix of one): escaped, or, if it holds a character XML cannot carry,
/// percent-encoded with `Encoded="true"`, as Azure writes such names and as the SDKs decode
/// them. The listing stays well-formed whatever a name holds.
fn name_tag(out: &mut String, name: &str) {
    if is_xml_text(name) {
        tag(out, "Name", name);
    } else {
        let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let _ = write!(out, r#"<Name Encoded="true">{encoded}</Name>"#);
    }
}

fn opt_tag(out: &mut String, name: &str, value: Option<&str>) {
    match value {
        Some(v) => tag(out, name, v),
        None => {
            let _ = write!(out, "<{name} />");
        }
    }
}

fn metadata(out: &mut String, md: &[(String, String)]) {
    out.push_str("<Metadata>");
    for (k, v) in md.iter().filter(|(k, _)| !crate::headers::is_reserved_metadata_name(k)) {
        tag(out, k, v);
    }
    out.push_str("</Metadata>");
}

pub struct ContainerItem<'a> {
    pub name: &'a str,
    pub last_modified: String,
    pub etag: u64,
    pub metadata: Option<&'a [(String, String)]>,
}

pub struct ListContainers<'a> {
    pub service_endpoint: &'a str,
    pub prefix: &'a str,
    pub marker: Option<&'a str>,
    pub max_results: Option<usize>,
    pub items: Vec<ContainerItem<'a>>,
    pub next_marker: Option<&'a str>,
}

pub fn list_containers(l: &ListContainers) -> String {
    let mut o = String::from(DECL);
    let _ = write!(o, r#"<EnumerationResults ServiceEndpoint="{}">"#, escape(l.service_endpoint));
    if !l.prefix.is_empty() {
        tag(&mut o, "Prefix", l.prefix);
    }
    if let Some(m) = l.marker {
        tag(&mut o, "Marker", m);
    }
    if let Some(n) = l.max_results {
        tag(&mut o, "MaxResults", &n.to_string());
    }
    o.push_str("<Containers>");
    for c in &l.items {
        o.push_str("<Container>");
        tag(&mut o, "Name", c.name);
        o.push_str("<Properties>");
        tag(&mut o, "Last-Modified", &c.last_modified);
        tag(&mut o, "Etag", &format!("\"{}\"", etag_string(c.etag)));
        o.push_str("<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>");
        o.push_str("<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold>");
        o.push_str("</Properties>");
        if let Some(md) = c.metadata {
            metadata(&mut o, md);
        }
        o.push_str("</Container>");
    }
    o.push_str("</Containers>");
    opt_tag(&mut o, "NextMarker", l.next_marker.filter(|m| !m.is_empty()));
    o.push_str("</EnumerationResults>");
    o
}

pub struct BlobItem<'a> {
    pub name: &'a str,
    pub creation_time: String,
    pub last_modified: String,
    pub etag: u64,
    pub size: u64,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub content_language: Option<&'a str>,
    pub content_disposition: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub content_md5: Option<[u8; 16]>,
    /// The access tier; inferred when none was set (the account's default).
    pub access_tier: &'a str,
    pub access_tier_inferred: bool,
    pub access_tier_change_time: Option<String>,
    pub metadata: Option<&'a [(String, String)]>,
}

// A page is mostly blobs: boxing each would cost an allocation per item for nothing.
#[allow(clippy::large_enum_variant)]
pub enum ListItem<'a> {
    Blob(BlobItem<'a>),
    Prefix(&'a str),
}

pub struct ListBlobs<'a> {
    pub service_endpoint: &'a str,
    pub container: &'a str,
    pub prefix: &'a str,
    pub marker: Option<&'a str>,
    pub max_results: Option<usize>,
    pub delimiter: Option<&'a str>,
    pub items: Vec<ListItem<'a>>,
    pub next_marker: Option<&'a str>,
}

pub fn list_blobs(l: &ListBlobs) -> String {
    let mut o = String::from(DECL);
    let _ = write!(
        o,
        r#"<EnumerationResults ServiceEndpoint="{}" ContainerName="{}">"#,
        escape(l.service_endpoint),
        escape(l.container)
    );
    tag(&mut o, "Prefix", l.prefix);
    opt_tag(&mut o, "Marker", l.marker.filter(|m| !m.is_empty()));
    if let Some(n) = l.max_results {
        tag(&mut o, "MaxResults", &n.to_string());
    }
    if let Some(d) = l.delimiter.filter(|d| !d.is_empty()) {
        tag(&mut o, "Delimiter", d);
    }
    o.push_str("<Blobs>");
    for item in &l.items {
        match item {
            ListItem::Prefix(p) => {
                o.push_str("<BlobPrefix>");
                name_tag(&mut o, p);
                o.push_str("</BlobPrefix>");
            }
            ListItem::Blob(b) => {
                o.push_str("<Blob>");
                name_tag(&mut o, b.name);
                o.push_str("<Properties>");
                tag(&mut o, "Creation-Time", &b.creation_time);
                tag(&mut o, "Last-Modified", &b.last_modified);
                tag(&mut o, "Etag", &etag_string(b.etag));
                tag(&mut o, "Content-Length", &b.size.to_string());
                tag(&mut o, "Content-Type", b.content_type.unwrap_or("application/octet-stream"));
                opt_tag(&mut o, "Content-Encoding", b.content_encoding);
                opt_tag(&mut o, "Content-Language", b.content_language);
                opt_tag(&mut o, "Content-CRC64", None);
                match b.content_md5 {
                    Some(m) => tag(&mut o, "Content-MD5", &B64.encode(m)),
                    None => opt_tag(&mut o, "Content-MD5", None),
                }
                opt_tag(&mut o, "Cache-Control", b.cache_control);
                opt_tag(&mut o, "Content-Disposition", b.content_disposition);
                o.push_str("<BlobType>BlockBlob</BlobType>");
                tag(&mut o, "AccessTier", b.access_tier);
                if b.access_tier_inferred {
                    o.push_str("<AccessTierInferred>true</AccessTierInferred>");
                }
                if let Some(t) = &b.access_tier_change_time {
                    tag(&mut o, "AccessTierChangeTime", t);
                }
                o.push_str("<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>");
                o.push_str("</Properties>");
                if let Some(md) = b.metadata {
                    metadata(&mut o, md);
                }
                o.push_str("</Blob>");
            }
        }
    }
    o.push_str("</Blobs>");
    // Always present, empty at the end: blobfile indexes it.
    opt_tag(&mut o, "NextMarker", l.next_marker.filter(|m| !m.is_empty()));
    o.push_str("</EnumerationResults>");
    o
}

/// Get Block List: `committed` None leaves out the element (blocklisttype=uncommitted).
pub fn block_list(committed: Option<&[(Vec<u8>, u64)]>, uncommitted: Option<&[(Vec<u8>, u64)]>) -> String {
    let mut o = String::from(DECL);
    o.push_str("<BlockList>");
    for (name, list) in [("CommittedBlocks", committed), ("UncommittedBlocks", uncommitted)] {
        let Some(list) = list else { continue };
        let _ = write!(o, "<{name}>");
        for (id, size) in list {
            o.push_str("<Block>");
            tag(&mut o, "Name", &B64.encode(id));
            tag(&mut o, "Size", &size.to_string());
            o.push_str("</Block>");
        }
        let _ = write!(o, "</{name}>");
    }
    o.push_str("</BlockList>");
    o
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Committed,
    Uncommitted,
    Latest,
}

/// A Put Block List body: the blocks in order, ids decoded from base64.
pub fn parse_block_list(body: &[u8]) -> Result<Vec<(BlockKind, Vec<u8>)>, ErrorCode> {
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut closed = false;
    // One `<BlockList>` root, with items only directly inside it: a nested or second root is
    // not a block list (a nested one used to commit an empty blob).
    let mut opened = false;
    let mut current: Option<BlockKind> = None;
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).map_err(|_| ErrorCode::InvalidXmlDocument)? {
            Event::Start(e) => {
                let inside = opened && !closed && current.is_none();
                match e.name().as_ref() {
                    b"BlockList" if !opened => opened = true,
                    b"Committed" if inside => current = Some(BlockKind::Committed),
                    b"Uncommitted" if inside => current = Some(BlockKind::Uncommitted),
                    b"Latest" if inside => current = Some(BlockKind::Latest),
                    _ => return Err(ErrorCode::InvalidXmlDocument),
                }
            }
            Event::Empty(e) if e.name().as_ref() == b"BlockList" && !opened => {
                opened = true;
                closed = true;
            }
            Event::Text(t) => {
                text = t.unescape().map_err(|_| ErrorCode::InvalidXmlDocument)?.into_owned();
            }
            Event::End(e) => {
                if e.name().as_ref() == b"BlockList" {
                    if current.is_some() {
                        return Err(ErrorCode::InvalidXmlDocument);
                    }
                    closed = true;
                } else {
                    let kind = current.take().ok_or(ErrorCode::InvalidXmlDocument)?;
                    let id = B64.decode(text.trim()).map_err(|_| ErrorCode::InvalidBlockList)?;
                    out.push((kind, id));
                    text.clear();
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            _ => return Err(ErrorCode::InvalidXmlDocument),
        }
        buf.clear();
    }
    if !closed {
        return Err(ErrorCode::InvalidXmlDocument);
    }
    Ok(out)
}

/// An element of a small request body (Get User Delegation Key's `KeyInfo`, Set Container ACL's
/// `SignedIdentifiers`): its name, its text, its children in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The text of the first child named `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.children.iter().find(|c| c.name == name).map(|c| c.text.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Parses a small XML body whose root must be `root` into its element tree: no attributes kept,
/// mixed text trimmed, nesting at most 8 deep (the bodies here are 3 deep). The caller bounds
/// the body's size.
pub fn parse_tree(body: &[u8], root: &str) -> Result<Element, ErrorCode> {
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut done: Option<Element> = None;
    let mut buf = Vec::new();
    let bad = ErrorCode::InvalidXmlDocument;
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|_| bad)?;
        let opened = match &event {
            Event::Start(e) => Some((e.name(), true)),
            Event::Empty(e) => Some((e.name(), false)),
            _ => None,
        };
        if let Some((name, open)) = opened {
            // One root, and no deeper than the bodies here ever go.
            if done.is_some() || stack.len() >= 8 {
                return Err(bad);
            }
            let el =
                Element { name: std::str::from_utf8(name.as_ref()).map_err(|_| bad)?.to_owned(), ..Element::default() };
            match (open, stack.last_mut()) {
                (true, _) => stack.push(el),
                (false, Some(parent)) => parent.children.push(el),
                (false, None) => done = Some(el),
            }
            buf.clear();
            continue;
        }
        match event {
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| bad)?;
                stack.last_mut().ok_or(bad)?.text.push_str(&text);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or(bad)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => done = Some(el),
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            _ => return Err(bad),
        }
        buf.clear();
    }
    match done {
        Some(el) if stack.is_empty() && el.name == root => Ok(el),
        _ => Err(bad),
    }
}

/// A user delegation key as Get User Delegation Key answers it: its fields, and its value.
pub fn user_delegation_key(k: &crate::sas::DelegationKeyFields, value: &str) -> String {
    let mut out = format!("{DECL}<UserDelegationKey>");
    tag(&mut out, "SignedOid", k.oid);
    tag(&mut out, "SignedTid", k.tid);
    tag(&mut out, "SignedStart", k.start);
    tag(&mut out, "SignedExpiry", k.expiry);
    tag(&mut out, "SignedService", k.service);
    tag(&mut out, "SignedVersion", k.version);
    if !k.delegated_tid.is_empty() {
        tag(&mut out, "SignedDelegatedUserTid", k.delegated_tid);
    }
    tag(&mut out, "Value", value);
    out.push_str("</UserDelegationKey>");
    out
}

/// The most stored access policies a container holds, as Azure allows.
pub const MAX_SIGNED_IDENTIFIERS: usize = 5;

/// A Set Container ACL body's stored access policies (an empty body defines none): at most
/// five, ids of 1 to 64 characters, each once; times ISO 8601; permission letters of a
/// container SAS.
pub fn parse_signed_identifiers(body: &[u8]) -> Result<Vec<crate::sas::StoredPolicy>, ErrorCode> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let tree = parse_tree(body, "SignedIdentifiers")?;
    if tree.children.len() > MAX_SIGNED_IDENTIFIERS {
        return Err(ErrorCode::InvalidXmlDocument);
    }
    let mut out: Vec<crate::sas::StoredPolicy> = Vec::new();
    for si in &tree.children {
        let id = si.child_text("Id").unwrap_or("").trim();
        // An id is kept one per line with its fields tab-separated: no control characters.
        if si.name != "SignedIdentifier" || id.is_empty() || id.chars().count() > 64 || id.chars().any(char::is_control)
        {
            return Err(ErrorCode::InvalidXmlDocument);
        }
        if out.iter().any(|p| p.id == id) {
            return Err(ErrorCode::InvalidXmlDocument);
        }
        let field = |name: &str| {
            si.child("AccessPolicy").and_then(|p| p.child_text(name)).map(str::trim).filter(|v| !v.is_empty())
        };
        let time = |name: &str| match field(name) {
            Some(v) if crate::sas::parse_time(v).is_none() => Err(ErrorCode::InvalidXmlNodeValue),
            v => Ok(v.map(str::to_owned)),
        };
        let permission = field("Permission").map(str::to_owned);
        if permission.as_deref().is_some_and(|p| !p.chars().all(|c| "racwdxyltmeopi".contains(c))) {
            return Err(ErrorCode::InvalidXmlNodeValue);
        }
        out.push(crate::sas::StoredPolicy {
            id: id.to_owned(),
            start: time("Start")?,
            expiry: time("Expiry")?,
            permission,
        });
    }
    Ok(out)
}

/// Get Container ACL's body: the stored access policies.
pub fn signed_identifiers(policies: &[crate::sas::StoredPolicy]) -> String {
    if policies.is_empty() {
        return format!("{DECL}<SignedIdentifiers />");
    }
    let mut out = format!("{DECL}<SignedIdentifiers>");
    for p in policies {
        out.push_str("<SignedIdentifier>");
        tag(&mut out, "Id", &p.id);
        out.push_str("<AccessPolicy>");
        for (name, v) in [("Start", &p.start), ("Expiry", &p.expiry), ("Permission", &p.permission)] {
            if let Some(v) = v {
                tag(&mut out, name, v);
            }
        }
        out.push_str("</AccessPolicy></SignedIdentifier>");
    }
    out.push_str("</SignedIdentifiers>");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_gives_its_time_as_azure_does() {
        // 1_795_339_877 s is Sun, 22 Nov 2026 09:31:17 GMT.
        assert_eq!(super::error_time(1_795_339_877_241_000_050), "2026-11-22T09:31:17.2410000Z");
        assert_eq!(super::error_time(1_795_339_877_000_000_099), "2026-11-22T09:31:17.0000000Z");
        let body = super::error("BlobNotFound", "The specified blob does not exist.", "rid", "T");
        assert!(
            body.contains("<Message>The specified blob does not exist.\nRequestId:rid\nTime:T</Message>"),
            "{body}"
        );
    }

    #[test]
    fn a_small_body_parses_into_its_tree_and_only_under_its_root() {
        let body = b"<?xml version=\"1.0\"?><SignedIdentifiers><SignedIdentifier><Id>a&amp;b</Id><AccessPolicy><Permission>rl</Permission></AccessPolicy></SignedIdentifier><SignedIdentifier><Id>c</Id></SignedIdentifier></SignedIdentifiers>";
        let t = parse_tree(body, "SignedIdentifiers").unwrap();
        assert_eq!(t.children.len(), 2);
        assert_eq!(t.children[0].child_text("Id"), Some("a&b"));
        assert_eq!(t.children[0].child("AccessPolicy").and_then(|p| p.child_text("Permission")), Some("rl"));
        assert_eq!(parse_tree(b"<SignedIdentifiers/>", "SignedIdentifiers").unwrap().children.len(), 0);
        for bad in [
            &b"<KeyInfo></KeyInfo>"[..],
            b"<SignedIdentifiers><a></b></SignedIdentifiers>",
            b"<SignedIdentifiers></SignedIdentifiers><SignedIdentifiers/>",
            b"<SignedIdentifiers>",
            b"<a><a><a><a><a><a><a><a><a></a></a></a></a></a></a></a></a></a>",
            b"text",
        ] {
            assert!(parse_tree(bad, "SignedIdentifiers").is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    use super::*;

    #[test]
    fn a_block_list_has_one_root_and_items_only_directly_inside() {
        let ok = br#"<?xml version="1.0"?><BlockList><Latest>YQ==</Latest></BlockList>"#;
        assert_eq!(parse_block_list(ok).map(|l| l.len()), Ok(1));
        assert_eq!(parse_block_list(b"<BlockList/>"), Ok(vec![]));
        for bad in [
            &b"<BlockList><BlockList><Latest>YQ==</Latest></BlockList></BlockList>"[..],
            b"<BlockList></BlockList><BlockList><Latest>YQ==</Latest></BlockList>",
            b"<BlockList/><BlockList/>",
            b"<Latest>YQ==</Latest>",
            b"<BlockList><Latest><Latest>YQ==</Latest></Latest></BlockList>",
        ] {
            assert_eq!(parse_block_list(bad), Err(ErrorCode::InvalidXmlDocument), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn acl_bodies_with_and_without_stored_policies() {
        assert_eq!(parse_signed_identifiers(b""), Ok(vec![]));
        assert_eq!(parse_signed_identifiers(b"<?xml version=\"1.0\"?><SignedIdentifiers />"), Ok(vec![]));
        let policy = b"<SignedIdentifiers><SignedIdentifier><Id>p</Id><AccessPolicy><Expiry>2030-01-01T00:00:00.0000000Z</Expiry><Permission>rl</Permission></AccessPolicy></SignedIdentifier></SignedIdentifiers>";
        let got = parse_signed_identifiers(policy).unwrap();
        assert_eq!(
            (got[0].id.as_str(), got[0].permission.as_deref(), got[0].start.as_deref()),
            ("p", Some("rl"), None)
        );
        let written = signed_identifiers(&got);
        assert_eq!(parse_signed_identifiers(written.as_bytes()), Ok(got), "what Get Container ACL writes reads back");
        let six = format!(
            "<SignedIdentifiers>{}</SignedIdentifiers>",
            (0..6).map(|i| format!("<SignedIdentifier><Id>{i}</Id></SignedIdentifier>")).collect::<String>()
        );
        for (bad, code) in [
            (six.as_bytes().to_vec(), ErrorCode::InvalidXmlDocument),
            (b"\xff".to_vec(), ErrorCode::InvalidXmlDocument),
            (b"<SignedIdentifiers><SignedIdentifier><Id></Id></SignedIdentifier></SignedIdentifiers>".to_vec(), ErrorCode::InvalidXmlDocument),
            (format!("<SignedIdentifiers><SignedIdentifier><Id>{}</Id></SignedIdentifier></SignedIdentifiers>", "x".repeat(65)).into_bytes(), ErrorCode::InvalidXmlDocument),
            (b"<SignedIdentifiers><SignedIdentifier><Id>a</Id></SignedIdentifier><SignedIdentifier><Id>a</Id></SignedIdentifier></SignedIdentifiers>".to_vec(), ErrorCode::InvalidXmlDocument),
            (b"<SignedIdentifiers><SignedIdentifier><Id>a</Id><AccessPolicy><Expiry>soon</Expiry></AccessPolicy></SignedIdentifier></SignedIdentifiers>".to_vec(), ErrorCode::InvalidXmlNodeValue),
            (b"<SignedIdentifiers><SignedIdentifier><Id>a</Id><AccessPolicy><Permission>rz</Permission></AccessPolicy></SignedIdentifier></SignedIdentifiers>".to_vec(), ErrorCode::InvalidXmlNodeValue),
        ] {
            assert_eq!(parse_signed_identifiers(&bad), Err(code), "{}", String::from_utf8_lossy(&bad));
        }
    }

    #[test]
    fn block_list_bodies_of_every_client_parse() {
        let full = br#"<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>YQ==</Latest><Committed>Yg==</Committed><Uncommitted>Yw==</Uncommitted></BlockList>"#;
        assert_eq!(
            parse_block_list(full).unwrap(),
            vec![
                (BlockKind::Latest, b"a".to_vec()),
                (BlockKind::Committed, b"b".to_vec()),
                (BlockKind::Uncommitted, b"c".to_vec())
            ]
        );
        assert!(parse_block_list(b"<BlockList/>").unwrap().is_empty());
        assert!(parse_block_list(b"<BlockList></BlockList>").unwrap().is_empty());
        assert!(
            parse_block_list(b"<?xml version=\"1.0\"?>\n<BlockList>\n  <Latest>YQ==</Latest>\n</BlockList>")
                .unwrap()
                .len()
                == 1
        );
        assert_eq!(parse_block_list(b"<BlockList><Latest>YQ==</Latest>"), Err(ErrorCode::InvalidXmlDocument));
        assert_eq!(parse_block_list(b"not xml"), Err(ErrorCode::InvalidXmlDocument));
        assert_eq!(parse_block_list(b"<BlockList><Latest>!!</Latest></BlockList>"), Err(ErrorCode::InvalidBlockList));
    }

    /// Reads `x` to its end with a strict parser; returns each `Name` element's text, decoded
    /// as a client does (`Encoded="true"`: percent-encoded).
    fn names_in(x: &str) -> Vec<String> {
        let mut r = quick_xml::Reader::from_str(x);
        let (mut names, mut encoded, mut in_name) = (Vec::new(), false, false);
        loop {
            match r.read_event().unwrap_or_else(|e| panic!("malformed XML ({e}): {x}")) {
                Event::Start(e) if e.name().as_ref() == b"Name" => {
                    in_name = true;
                    encoded = e.try_get_attribute("Encoded").ok().flatten().is_some_and(|a| &*a.value == b"true");
                }
                Event::Text(t) if in_name => {
                    let text = t.unescape().unwrap().into_owned();
                    names.push(if encoded {
                        percent_encoding::percent_decode_str(&text).decode_utf8().unwrap().into_owned()
                    } else {
                        text
                    });
                }
                Event::End(_) => in_name = false,
                Event::Eof => return names,
                _ => {}
            }
        }
    }

    #[test]
    fn every_name_survives_a_listing_and_the_listing_stays_well_formed() {
        let odd = ["a&b<c>\"d'", "ctl\u{1}\u{1f}name", "non\u{FFFE}char", "tab\tand\u{10FFFF}", "sp ace/%41"];
        let item = |name| {
            ListItem::Blob(BlobItem {
                name,
                creation_time: String::new(),
                last_modified: String::new(),
                etag: 1,
                size: 0,
                content_type: None,
                content_encoding: None,
                content_language: None,
                content_disposition: None,
                cache_control: None,
                content_md5: None,
                access_tier: "Hot",
                access_tier_inferred: true,
                access_tier_change_time: None,
                metadata: None,
            })
        };
        let mut items: Vec<ListItem> = odd.iter().map(|n| item(n)).collect();
        items.push(ListItem::Prefix("pre\u{2}fix/"));
        let x = list_blobs(&ListBlobs {
            service_endpoint: "http://h/a",
            container: "ctr",
            prefix: "",
            marker: None,
            max_results: None,
            delimiter: None,
            items,
            next_marker: None,
        });
        let mut want: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
        want.push("pre\u{2}fix/".into());
        assert_eq!(names_in(&x), want);
        assert!(x.contains(r#"<Name Encoded="true">ctl%01%1Fname</Name>"#), "{x}");
        assert!(x.contains("<Name>a&amp;b&lt;c&gt;\"d'</Name>"), "plain names stay plain: {x}");
        let e = error("InvalidBlockList", "block \u{1}<x> does not exist", "id", "now");
        assert!(e.contains("block \u{FFFD}&lt;x&gt; does not exist"), "{e}");
        let mut r = quick_xml::Reader::from_str(&e);
        while r.read_event().unwrap_or_else(|err| panic!("{err}: {e}")) != Event::Eof {}
    }

    #[test]
    fn list_blobs_has_the_fields_clients_index() {
        let md = vec![("Mtime".to_owned(), "x<y".to_owned())];
        let x = list_blobs(&ListBlobs {
            service_endpoint: "http://127.0.0.1:10000/devstoreaccount1",
            container: "ctr",
            prefix: "dir1/",
            marker: None,
            max_results: Some(5000),
            delimiter: Some("/"),
            items: vec![
                ListItem::Prefix("dir1/sub/"),
                ListItem::Blob(BlobItem {
                    name: "dir1/a&b.txt",
                    creation_time: "Sun, 22 Nov 2026 09:31:50 GMT".into(),
                    last_modified: "Sun, 22 Nov 2026 09:31:50 GMT".into(),
                    etag: 0x1F,
                    size: 1000,
                    content_type: Some("text/plain"),
                    content_encoding: None,
                    content_language: None,
                    content_disposition: None,
                    cache_control: None,
                    content_md5: Some([0; 16]),
                    access_tier: "Hot",
                    access_tier_inferred: true,
                    access_tier_change_time: None,
                    metadata: Some(&md),
                }),
            ],
            next_marker: None,
        });
        for needle in [
            "<BlobPrefix><Name>dir1/sub/</Name></BlobPrefix>",
            "<Name>dir1/a&amp;b.txt</Name>",
            "<Creation-Time>Sun, 22 Nov 2026 09:31:50 GMT</Creation-Time>",
            "<Etag>0x1F</Etag>",
            "<Content-Length>1000</Content-Length>",
            "<Content-MD5>AAAAAAAAAAAAAAAAAAAAAA==</Content-MD5>",
            "<BlobType>BlockBlob</BlobType>",
            "<Metadata><Mtime>x&lt;y</Mtime></Metadata>",
            "<NextMarker />",
            "<Delimiter>/</Delimiter>",
        ] {
            assert!(x.contains(needle), "missing {needle} in {x}");
        }
    }

    #[test]
    fn containers_quote_their_etag_and_errors_carry_the_request_id() {
        let x = list_containers(&ListContainers {
            service_endpoint: "http://h/a",
            prefix: "",
            marker: None,
            max_results: None,
            items: vec![ContainerItem { name: "ctr", last_modified: "d".into(), etag: 0xAB, metadata: None }],
            next_marker: Some("next"),
        });
        assert!(x.contains("<Etag>\"0xAB\"</Etag>") && x.contains("<NextMarker>next</NextMarker>"), "{x}");
        let e = error("BlobNotFound", "The specified blob does not exist.", "rid", "t");
        assert!(e.contains("<Code>BlobNotFound</Code>") && e.contains("RequestId:rid"));
        let b = block_list(Some(&[(b"a".to_vec(), 5)]), Some(&[]));
        assert!(b.contains("<CommittedBlocks><Block><Name>YQ==</Name><Size>5</Size></Block></CommittedBlocks><UncommittedBlocks></UncommittedBlocks>"), "{b}");
    }
}
