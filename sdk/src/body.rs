//! The body view a stage reads in a body phase, and what it may decide there.
//!
//! Envoy hands a filter a body in chunks. A stage that only counts (a size limit) lets
//! each chunk through ([`BodyAction::Continue`]) and reads [`Body::received`], the bytes
//! of this body seen so far, which the shell keeps right whether or not earlier chunks
//! were buffered. A stage that needs the whole body (a JSON rewrite) asks for it
//! ([`crate::Decision::WaitForBody`]), buffers ([`BodyAction::Buffer`]) until
//! [`Body::end_of_stream`], and may then replace the bytes. The headers cannot wait for
//! the body in Envoy (a Wasm filter that pauses its headers gets no body until it
//! continues them), so they go on first, without `content-length`; a body phase can
//! no longer change them.
//!
//! The bytes are fetched from the host only when a stage first asks for them: a
//! counting stage costs no copy of the body.

use crate::headers::HeaderMap;
use crate::stage::LocalReply;
use std::cell::OnceCell;

/// What the stream should do with the body after this chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAction {
    /// Pass what the host holds on (Envoy's `Continue`).
    Continue,
    /// Hold this chunk with the earlier ones until the next call (Envoy's
    /// `StopIterationAndBuffer`); the next call sees them all.
    Buffer,
    /// Answer locally. Envoy can do so only while the response has not started; in a
    /// response body phase use [`BodyAction::Reset`].
    Reply(LocalReply),
    /// Reset the stream (the client sees the connection or HTTP/2 stream cut).
    Reset,
}

/// One body callback's view.
pub struct Body<'a> {
    len: usize,
    chunk_len: usize,
    received: u64,
    end_of_stream: bool,
    fetch: &'a dyn Fn(usize) -> Vec<u8>,
    bytes: OnceCell<Vec<u8>>,
    replaced: bool,
    /// The message's headers, to read: they went on before the body, so edits made
    /// here are dropped (with a warning).
    pub headers: HeaderMap,
}

impl<'a> Body<'a> {
    /// `len`: bytes the host holds now (earlier buffered chunks and this one);
    /// `chunk_len`: the new bytes of this call; `received`: bytes of the body so far,
    /// this chunk included; `fetch(len)` reads the held bytes from the host.
    pub fn new(
        len: usize,
        chunk_len: usize,
        received: u64,
        end_of_stream: bool,
        fetch: &'a dyn Fn(usize) -> Vec<u8>,
        headers: HeaderMap,
    ) -> Self {
        Self {
            len,
            chunk_len,
            received,
            end_of_stream,
            fetch,
            bytes: OnceCell::new(),
            replaced: false,
            headers,
        }
    }

    /// Bytes the host holds now.
    pub fn len(&self) -> usize {
        self.bytes.get().map_or(self.len, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New bytes in this call.
    pub fn chunk_len(&self) -> usize {
        self.chunk_len
    }

    /// Bytes of this body received so far, this chunk included (bytes the stage let
    /// through earlier count too).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether this is the body's last chunk. With trailers, no chunk is: the body
    /// ends at the trailers instead.
    pub fn end_of_stream(&self) -> bool {
        self.end_of_stream
    }

    /// The bytes the host holds (fetched on first use), or the replacement.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get_or_init(|| (self.fetch)(self.len))
    }

    /// Replaces the bytes the host holds with `bytes`.
    pub fn replace(&mut self, bytes: Vec<u8>) {
        self.bytes = OnceCell::from(bytes);
        self.replaced = true;
    }

    /// The replacement, if a stage made one (for the shell to write back).
    pub fn take_replacement(&mut self) -> Option<Vec<u8>> {
        if !self.replaced {
            return None;
        }
        self.replaced = false;
        self.bytes.take()
    }
}

/// A shell's count of one direction's body: the bytes received, and how many of the
/// bytes the host will hand over next time are ones already counted (a buffered call
/// is followed by one that holds the earlier bytes too).
#[derive(Debug, Default, Clone, Copy)]
pub struct BodyCount {
    received: u64,
    held: usize,
}

impl BodyCount {
    /// The host holds `len` bytes in this call: returns (new bytes, received so far).
    pub fn on_chunk(&mut self, len: usize) -> (usize, u64) {
        let new = len.saturating_sub(self.held);
        self.received = self.received.saturating_add(new as u64);
        (new, self.received)
    }

    /// Settles a body callback once the stage has answered, the same for every shell:
    /// a `Buffer` on the last chunk becomes `Continue` (nothing more will come to
    /// release a held body), header edits are dropped with a warning (the headers went
    /// on before the body), and the count moves on. Returns the action, and the
    /// replacement for the shell to write back to its host.
    pub fn settle(
        &mut self,
        body: &mut Body<'_>,
        mut action: BodyAction,
    ) -> (BodyAction, Option<Vec<u8>>) {
        if body.end_of_stream() && action == BodyAction::Buffer {
            action = BodyAction::Continue;
        }
        let replacement = body.take_replacement();
        if !body.headers.take_ops().is_empty() {
            crate::warn!("header edits in a body phase dropped: the headers went on already");
        }
        self.after(&action, body.len());
        (action, replacement)
    }

    /// After the call: `held` bytes stay with the host (0 unless it buffered).
    pub fn after(&mut self, action: &BodyAction, len_now: usize) {
        self.held = if *action == BodyAction::Buffer {
            len_now
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_counts_each_byte_once_across_buffered_calls() {
        let mut count = BodyCount::default();
        assert_eq!(count.on_chunk(10), (10, 10));
        count.after(&BodyAction::Buffer, 10);
        // The host now holds the first 10 bytes and 5 new ones.
        assert_eq!(count.on_chunk(15), (5, 15));
        count.after(&BodyAction::Continue, 15);
        assert_eq!(count.on_chunk(7), (7, 22));
    }

    #[test]
    fn a_replacement_replaces_what_later_stages_read() {
        let fetch = |n: usize| vec![b'a'; n];
        let mut body = Body::new(3, 3, 3, true, &fetch, HeaderMap::default());
        assert_eq!(body.bytes(), b"aaa");
        assert_eq!(body.take_replacement(), None);
        body.replace(b"bb".to_vec());
        assert_eq!(body.bytes(), b"bb");
        assert_eq!(body.len(), 2);
        assert_eq!(body.take_replacement(), Some(b"bb".to_vec()));
    }
}
