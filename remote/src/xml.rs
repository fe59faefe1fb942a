//! The two XML answers the client reads (Get Block List, List Blobs) and the one body it sends
//! (Put Block List).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use quick_xml::events::Event;
use quick_xml::Reader;

/// A Put Block List body naming `ids` as the latest version of each.
pub fn block_list(ids: &[Vec<u8>]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in ids {
        s.push_str("<Latest>");
        s.push_str(&B64.encode(id));
        s.push_str("</Latest>");
    }
    s.push_str("</BlockList>");
    s
}

/// Walks `body`, calling `on` with the path of open elements and each text node.
fn walk(body: &[u8], mut on: impl FnMut(&[String], &str) -> Result<(), String>) -> Result<(), String> {
    let mut r = Reader::from_reader(body);
    let mut path: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).map_err(|e| format!("bad XML from the remote: {e}"))? {
            Event::Start(e) => path.push(String::from_utf8_lossy(e.name().as_ref()).into_owned()),
            Event::End(_) => {
                on(&path, "\u{0}end")?;
                path.pop();
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| format!("bad XML text from the remote: {e}"))?;
                on(&path, &text)?;
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

const END: &str = "\u{0}end";

/// The blocks of one list of a Get Block List answer (`CommittedBlocks`, `UncommittedBlocks`):
/// ids and sizes.
pub fn blocks(body: &[u8], list: &str) -> Result<Vec<(Vec<u8>, u64)>, String> {
    let mut out = Vec::new();
    let (mut name, mut size) = (None, None);
    walk(body, |path, text| {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match (p.as_slice(), text) {
            ([.., l, "Block", "Name"], t) if t != END && *l == list => {
                name = Some(B64.decode(t.trim()).map_err(|e| format!("a block id is not base64: {e}"))?)
            }
            ([.., l, "Block", "Size"], t) if t != END && *l == list => {
                size = Some(t.trim().parse::<u64>().map_err(|e| format!("a block size: {e}"))?)
            }
            ([.., l, "Block"], END) if *l == list => match (name.take(), size.take()) {
                (Some(n), Some(s)) => out.push((n, s)),
                _ => return Err("a committed block without its name or size".into()),
            },
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// One blob of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    pub name: String,
    pub len: u64,
    pub etag: String,
    /// The blob's other listed properties and metadata (asked for with `include=metadata`), as
    /// the headers Get Blob Properties answers with: `last-modified`, `x-ms-creation-time`,
    /// `content-type` and the other content headers, `content-md5`, `x-ms-meta-*`. Unchecked;
    /// a value no header can carry is left out.
    pub headers: http::HeaderMap,
}

impl ListedBlob {
    fn new() -> ListedBlob {
        ListedBlob { name: String::new(), len: 0, etag: String::new(), headers: http::HeaderMap::new() }
    }

    fn set(&mut self, header: &str, value: &str) {
        if let (Ok(k), Ok(v)) =
            (http::HeaderName::from_bytes(header.as_bytes()), http::HeaderValue::from_str(value.trim()))
        {
            self.headers.append(k, v);
        }
    }
}

/// The header a listed property answers as in Get Blob Properties.
fn property_header(element: &str) -> Option<&'static str> {
    Some(match element {
        "Creation-Time" => "x-ms-creation-time",
        "Last-Modified" => "last-modified",
        "Content-Type" => "content-type",
        "Content-Encoding" => "content-encoding",
        "Content-Language" => "content-language",
        "Content-Disposition" => "content-disposition",
        "Cache-Control" => "cache-control",
        "Content-MD5" => "content-md5",
        _ => return None,
    })
}

/// A List Blobs page: its blobs, its prefixes (with a delimiter), and the marker of the next.
pub type Page = (Vec<ListedBlob>, Vec<String>, Option<String>);

/// A List Blobs page as Azure writes it.
pub fn list_page(body: &[u8]) -> Result<Page, String> {
    let mut out = Vec::new();
    let mut prefixes = Vec::new();
    let mut next = None;
    let mut cur = ListedBlob::new();
    let mut prefix = String::new();
    walk(body, |path, text| {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match (p.as_slice(), text) {
            (["EnumerationResults", "Blobs", "Blob", "Name"], t) if t != END => cur.name.push_str(t),
            (["EnumerationResults", "Blobs", "Blob", "Properties", "Content-Length"], t) if t != END => {
                cur.len = t.trim().parse().map_err(|e| format!("a listed length: {e}"))?
            }
            (["EnumerationResults", "Blobs", "Blob", "Properties", "Etag"], t) if t != END => cur.etag.push_str(t),
            (["EnumerationResults", "Blobs", "Blob", "Properties", element], t) if t != END => {
                if let Some(h) = property_header(element) {
                    cur.set(h, t);
                }
            }
            (["EnumerationResults", "Blobs", "Blob", "Metadata", name], t) if t != END => {
                cur.set(&format!("x-ms-meta-{name}"), t)
            }
            (["EnumerationResults", "Blobs", "Blob"], END) => out.push(std::mem::replace(&mut cur, ListedBlob::new())),
            (["EnumerationResults", "Blobs", "BlobPrefix", "Name"], t) if t != END => prefix.push_str(t),
            (["EnumerationResults", "Blobs", "BlobPrefix"], END) => prefixes.push(std::mem::take(&mut prefix)),
            (["EnumerationResults", "NextMarker"], t) if t != END && !t.trim().is_empty() => {
                next = Some(t.trim().to_owned())
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok((out, prefixes, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_as_azure_writes_them() {
        let bl = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><CommittedBlocks><Block><Name>AAE=</Name><Size>5</Size></Block><Block><Name>AAI=</Name><Size>7</Size></Block></CommittedBlocks><UncommittedBlocks><Block><Name>AAM=</Name><Size>1</Size></Block></UncommittedBlocks></BlockList>";
        assert_eq!(blocks(bl, "CommittedBlocks").unwrap(), vec![(vec![0, 1], 5), (vec![0, 2], 7)]);
        assert_eq!(blocks(bl, "UncommittedBlocks").unwrap(), vec![(vec![0, 3], 1)]);
        let page = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"x\" ContainerName=\"c\"><Prefix>p/</Prefix><Blobs><Blob><Name>p/a&amp;b</Name><Properties><Etag>\"0x1\"</Etag><Content-Length>12</Content-Length></Properties></Blob><Blob><Name>p/c</Name><Properties><Content-Length>0</Content-Length><Etag>0x2</Etag></Properties></Blob></Blobs><NextMarker>m2</NextMarker></EnumerationResults>";
        let (blobs, prefixes, next) = list_page(page).unwrap();
        assert!(prefixes.is_empty());
        assert_eq!(blobs.len(), 2);
        assert_eq!((blobs[0].name.as_str(), blobs[0].len, blobs[0].etag.as_str()), ("p/a&b", 12, "\"0x1\""));
        assert_eq!(blobs[1].name, "p/c");
        assert_eq!(next.as_deref(), Some("m2"));
        let last = b"<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>";
        assert_eq!(list_page(last).unwrap(), (vec![], vec![], None));
        let full = b"<EnumerationResults><Blobs><BlobPrefix><Name>d/</Name></BlobPrefix><Blob><Name>f</Name><Properties><Last-Modified>Sun, 06 Dec 2026 05:00:00 GMT</Last-Modified><Etag>0x3</Etag><Content-Length>1</Content-Length><Content-Type>text/plain</Content-Type><Content-MD5>DMF1ucDxtqgxw5niaXcmYQ==</Content-MD5><AccessTier>Hot</AccessTier></Properties><Metadata><Origin>lake</Origin></Metadata></Blob></Blobs></EnumerationResults>";
        let (blobs, prefixes, _) = list_page(full).unwrap();
        assert_eq!(prefixes, ["d/"]);
        let h = &blobs[0].headers;
        assert_eq!(h.get("last-modified").unwrap(), "Sun, 06 Dec 2026 05:00:00 GMT");
        assert_eq!(h.get("content-type").unwrap(), "text/plain");
        assert_eq!(h.get("content-md5").unwrap(), "DMF1ucDxtqgxw5niaXcmYQ==");
        assert_eq!(h.get("x-ms-meta-origin").unwrap(), "lake");
        assert_eq!(h.len(), 4, "only what Get Blob Properties would answer: {h:?}");
        assert!(blocks(
            b"<BlockList><CommittedBlocks><Block><Name>!!</Name><Size>1</Size></Block></CommittedBlocks></BlockList>",
            "CommittedBlocks"
        )
        .is_err());
        assert_eq!(
            block_list(&[vec![0, 1]]),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>AAE=</Latest></BlockList>"
        );
    }
}
