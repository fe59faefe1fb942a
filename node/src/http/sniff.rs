//! Keeps the case of `x-ms-meta-*` header names. hyper hands header names over in lower case
//! only, and writes them so, but Azure keeps metadata names as the client wrote them, in
//! listings and in response headers alike. This stream sits between the socket (or TLS stream)
//! and hyper. Reading, it records every `x-ms-meta-` name it sees at the start of a line,
//! exactly as written; the handler looks names up there. A body line that happens to look like
//! such a header can at worst change the case of a header of the same name. Writing, it puts
//! back the stored case of the metadata names in the head of the response that asked for it
//! (see [`NameSet::restore_next`]): only the names' letters change, so every length hyper
//! counted stays true.
//!
//! Bounded: a connection keeps at most [`MAX_NAME_BYTES`] of names, and each request takes (and
//! so clears) what was recorded before it. Past the bound a name is not recorded and its
//! metadata keeps the lower case hyper gives. With pipelined requests, a request may take the
//! names of the next one too, which then loses their case (never their values).

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The names one connection recorded and no request has taken yet.
pub type Names = Rc<RefCell<NameSet>>;

const PREFIX: &[u8] = b"x-ms-meta-";
const MAX_NAME: usize = 512;
/// Azure allows 8 KiB of metadata (names and values) per blob or container.
pub const MAX_NAME_BYTES: usize = 8 << 10;

/// Lower-case name -> the name as the client wrote it.
#[derive(Default)]
pub struct NameSet {
    names: HashMap<String, String>,
    bytes: usize,
    /// Metadata names (as stored) the next response head must carry in their own case.
    restore: Option<Vec<String>>,
}

impl NameSet {
    /// The next response head written on this connection is the answer being returned now (a
    /// connection answers one request at a time): its `x-ms-meta-` names get these cases.
    pub fn restore_next(&mut self, names: Vec<String>) {
        self.restore = Some(names);
    }

    fn record(&mut self, name: &str) {
        if self.bytes + name.len() > MAX_NAME_BYTES {
            return;
        }
        if self.names.insert(name.to_ascii_lowercase(), name.to_owned()).is_none() {
            self.bytes += name.len();
        }
        debug_assert!(self.bytes <= MAX_NAME_BYTES);
    }

    /// The names recorded since the last take, as written; the set is empty afterwards.
    pub fn take(&mut self) -> Vec<String> {
        // A new request: a restore its predecessor asked for and never wrote is void.
        self.restore = None;
        self.bytes = 0;
        std::mem::take(&mut self.names).into_values().collect()
    }

    #[cfg(test)]
    fn get(&self, lower: &str) -> Option<&str> {
        self.names.get(lower).map(String::as_str)
    }
}

pub struct Sniff<T> {
    inner: T,
    names: Names,
    at_line_start: bool,
    /// The current line, while it may still be an `x-ms-meta-` header name.
    line: Vec<u8>,
    /// A response head with its metadata names restored, and how much of it is written.
    head: Option<(Vec<u8>, usize)>,
}

/// `head` (a response head, through its blank line) with each `x-ms-meta-` name that `names`
/// holds in another case written in that case. A name whose case form differs in length (not
/// ASCII) is left alone.
fn restore_case(head: &[u8], names: &[String]) -> Vec<u8> {
    let mut out = head.to_vec();
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&out[at..], b"\r\n").map(|i| at + i + 2) {
        at = i;
        let Some(colon) = memchr::memchr(b':', &out[i..]).map(|c| i + c) else { break };
        let name = &out[i..colon];
        if name.len() <= PREFIX.len() || !name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
            continue;
        }
        let stored = &name[PREFIX.len()..];
        if let Some(n) = names.iter().find(|n| n.len() == stored.len() && n.as_bytes().eq_ignore_ascii_case(stored)) {
            out[i + PREFIX.len()..colon].copy_from_slice(n.as_bytes());
        }
    }
    out
}

impl<T> Sniff<T> {
    pub fn new(inner: T) -> (Sniff<T>, Names) {
        let names = Names::default();
        (Sniff { inner, names: names.clone(), at_line_start: true, line: Vec::new(), head: None }, names)
    }

    /// Whether `buf` begins the head whose names are to be restored; if so, keeps that head
    /// rewritten for the writes that carry it.
    fn start_head(&mut self, buf: &[u8]) {
        if self.head.is_some() || !buf.starts_with(b"HTTP/1.1 ") {
            return;
        }
        let Some(names) = self.names.borrow_mut().restore.take() else { return };
        let end = memchr::memmem::find(buf, b"\r\n\r\n").map_or(buf.len(), |i| i + 4);
        self.head = Some((restore_case(&buf[..end], &names), 0));
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        // Bodies pass through here too (megabytes per Put Block): skip to the next line with
        // memchr and look byte by byte only at the start of a line, where a name may begin.
        while let Some((&b, rest)) = bytes.split_first() {
            if !self.at_line_start {
                match memchr::memchr(b'\n', bytes) {
                    Some(i) => {
                        // The newline itself is handled below, as at a line start.
                        bytes = &bytes[i..];
                        self.at_line_start = true;
                    }
                    None => return,
                }
                continue;
            }
            bytes = rest;
            if b == b'\n' {
                self.line.clear();
                continue;
            }
            if b == b':' {
                if self.line.len() > PREFIX.len() {
                    if let Ok(name) = std::str::from_utf8(&self.line) {
                        self.names.borrow_mut().record(name);
                    }
                }
                self.at_line_start = false;
                continue;
            }
            self.line.push(b);
            let n = self.line.len();
            let still_prefix = n > PREFIX.len() || self.line[n - 1].eq_ignore_ascii_case(&PREFIX[n - 1]);
            if !still_prefix || n > MAX_NAME {
                self.at_line_start = false;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Sniff<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            this.scan(&buf.filled()[before..]);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Sniff<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.names.borrow().restore.is_some() {
            this.start_head(buf);
        }
        let Some((head, pos)) = &mut this.head else { return Pin::new(&mut this.inner).poll_write(cx, buf) };
        // The head's bytes, rewritten, in place of the caller's (the same length): a write may
        // take fewer, and the caller sends the rest again from where it stopped.
        let n = (head.len() - *pos).min(buf.len());
        debug_assert!(buf[..n].eq_ignore_ascii_case(&head[*pos..*pos + n]), "the head rewritten is not this one");
        let res = Pin::new(&mut this.inner).poll_write(cx, &head[*pos..*pos + n]);
        if let Poll::Ready(Ok(k)) = res {
            *pos += k;
            if *pos == head.len() {
                this.head = None;
            }
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.head.is_some() || self.names.borrow().restore.is_some() {
            // The head is the first slice hyper hands over; written alone, then the rest.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_metadata_names_as_written_across_reads() {
        let (mut s, names) = Sniff::new(());
        s.scan(b"PUT /a/c/b HTTP/1.1\r\nX-Ms-Meta-Mtime: 1\r\nx-ms-meta-Mixed_");
        s.scan(b"Case: X\r\nContent-Length: 3\r\n\r\nabc");
        let n = names.borrow();
        assert_eq!(n.get("x-ms-meta-mtime"), Some("X-Ms-Meta-Mtime"));
        assert_eq!(n.get("x-ms-meta-mixed_case"), Some("x-ms-meta-Mixed_Case"));
        assert_eq!(n.names.len(), 2);
    }

    #[test]
    fn a_connection_keeps_a_bounded_set_and_each_request_takes_it() {
        let (mut s, names) = Sniff::new(());
        // Requests the node refuses still pass through here: thousands of distinct names.
        for i in 0..20_000 {
            s.scan(format!("GET / HTTP/1.1\r\nX-Ms-Meta-Name{i}: v\r\n\r\n").as_bytes());
        }
        let kept = names.borrow().names.len();
        assert!(kept > 0 && names.borrow().bytes <= MAX_NAME_BYTES, "{kept} names kept");
        assert!(kept < 20_000 * MAX_NAME_BYTES / 8192 / 10, "the set stopped growing: {kept}");
        assert_eq!(names.borrow_mut().take().len(), kept);
        assert_eq!((names.borrow().names.len(), names.borrow().bytes), (0, 0), "a take empties the set");
        s.scan(b"PUT /a/c/b HTTP/1.1\r\nX-Ms-Meta-Again: 1\r\n\r\n");
        assert_eq!(names.borrow_mut().take(), vec!["X-Ms-Meta-Again".to_owned()], "and it records again");
    }

    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_response_head_gets_its_metadata_names_back_and_nothing_else_changes() {
        let head = b"HTTP/1.1 200 OK\r\nx-ms-meta-mixedcase: V\r\nx-ms-meta-other: w\r\ncontent-length: 2\r\n\r\n";
        let names = vec!["MixedCase".to_owned(), "Nope".to_owned()];
        let out = restore_case(head, &names);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nx-ms-meta-MixedCase: V\r\nx-ms-meta-other: w\r\ncontent-length: 2\r\n\r\n"
        );
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            // A socket that takes three bytes a write: the head is restored across writes.
            let (mut s, names) = Sniff::new(Trickle(Vec::new()));
            names.borrow_mut().restore_next(vec!["MixedCase".into()]);
            let body = b"HTTP/1.1 in a body is only a body";
            s.write_all(head).await.unwrap();
            s.write_all(body).await.unwrap();
            let written = String::from_utf8(s.inner.0.clone()).unwrap();
            assert!(written.starts_with("HTTP/1.1 200 OK\r\nx-ms-meta-MixedCase: V\r\n"), "{written}");
            assert!(written.ends_with("\r\n\r\nHTTP/1.1 in a body is only a body"), "{written}");
        });
    }

    #[test]
    fn lines_split_anywhere_and_long_bodies_are_skipped() {
        let (mut s, names) = Sniff::new(());
        let body: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let text = [
            b"PUT /a/c/b HTTP/1.1\r\nContent-Length: 100000\r\n\r\n".as_slice(),
            &body,
            b"\r\nPUT /a/c/d HTTP/1.1\r\nX-MS-META-Late: 1\r\n\r\n",
        ]
        .concat();
        for piece in text.chunks(7) {
            s.scan(piece);
        }
        assert_eq!(names.borrow().get("x-ms-meta-late"), Some("X-MS-META-Late"));
    }
}
