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

/// The committed blocks of a Get Block List answer: ids and sizes.
pub fn committed_blocks(body: &[u8]) -> Result<Vec<(Vec<u8>, u64)>, String> {
    let mut out = Vec::new();
    let (mut name, mut size) = (None, None);
    walk(body, |path, text| {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match (p.as_slice(), text) {
            ([.., "CommittedBlocks", "Block", "Name"], t) if t != END => {
                name = Some(B64.decode(t.trim()).map_err(|e| format!("a block id is not base64: {e}"))?)
            }
            ([.., "CommittedBlocks", "Block", "Size"], t) if t != END => {
                size = Some(t.trim().parse::<u64>().map_err(|e| format!("a block size: {e}"))?)
            }
            ([.., "CommittedBlocks", "Block"], END) => match (name.take(), size.take()) {
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
}

/// A List Blobs page: its blobs and the marker of the next page.
pub fn list_page(body: &[u8]) -> Result<(Vec<ListedBlob>, Option<String>), String> {
    let mut out = Vec::new();
    let mut next = None;
    let mut cur = ListedBlob { name: String::new(), len: 0, etag: String::new() };
    walk(body, |path, text| {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match (p.as_slice(), text) {
            (["EnumerationResults", "Blobs", "Blob", "Name"], t) if t != END => cur.name.push_str(t),
            (["EnumerationResults", "Blobs", "Blob", "Properties", "Content-Length"], t) if t != END => {
                cur.len = t.trim().parse().map_err(|e| format!("a listed length: {e}"))?
            }
            (["EnumerationResults", "Blobs", "Blob", "Properties", "Etag"], t) if t != END => cur.etag.push_str(t),
            (["EnumerationResults", "Blobs", "Blob"], END) => {
                out.push(std::mem::replace(&mut cur, ListedBlob { name: String::new(), len: 0, etag: String::new() }))
            }
            (["EnumerationResults", "NextMarker"], t) if t != END && !t.trim().is_empty() => {
                next = Some(t.trim().to_owned())
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_as_azure_writes_them() {
        let bl = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><CommittedBlocks><Block><Name>AAE=</Name><Size>5</Size></Block><Block><Name>AAI=</Name><Size>7</Size></Block></CommittedBlocks><UncommittedBlocks><Block><Name>AAM=</Name><Size>1</Size></Block></UncommittedBlocks></BlockList>";
        assert_eq!(committed_blocks(bl).unwrap(), vec![(vec![0, 1], 5), (vec![0, 2], 7)]);
        let page = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"x\" ContainerName=\"c\"><Prefix>p/</Prefix><Blobs><Blob><Name>p/a&amp;b</Name><Properties><Etag>\"0x1\"</Etag><Content-Length>12</Content-Length></Properties></Blob><Blob><Name>p/c</Name><Properties><Content-Length>0</Content-Length><Etag>0x2</Etag></Properties></Blob></Blobs><NextMarker>m2</NextMarker></EnumerationResults>";
        let (blobs, next) = list_page(page).unwrap();
        assert_eq!(blobs.len(), 2);
        assert_eq!((blobs[0].name.as_str(), blobs[0].len, blobs[0].etag.as_str()), ("p/a&b", 12, "\"0x1\""));
        assert_eq!(blobs[1].name, "p/c");
        assert_eq!(next.as_deref(), Some("m2"));
        let last = b"<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>";
        assert_eq!(list_page(last).unwrap(), (vec![], None));
        assert!(committed_blocks(
            b"<BlockList><CommittedBlocks><Block><Name>!!</Name><Size>1</Size></Block></CommittedBlocks></BlockList>"
        )
        .is_err());
        assert_eq!(
            block_list(&[vec![0, 1]]),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>AAE=</Latest></BlockList>"
        );
    }
}
