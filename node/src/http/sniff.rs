//! Keeps the case of `x-ms-meta-*` header names. hyper hands header names over in lower case
//! only, but Azure keeps metadata names as the client wrote them. This reader sits between the
//! socket (or TLS stream) and hyper and records every `x-ms-meta-` name it sees at the start of a
//! line, exactly as written; the handler looks names up there. A body line that happens to look
//! like such a header can at worst change the case of a header of the same name.
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
}

impl NameSet {
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
}

impl<T> Sniff<T> {
    pub fn new(inner: T) -> (Sniff<T>, Names) {
        let names = Names::default();
        (Sniff { inner, names: names.clone(), at_line_start: true, line: Vec::new() }, names)
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
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
