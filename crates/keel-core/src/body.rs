//! The one bounded body reader: every backend reads what a server sends through it, so that no
//! answer, however large or endless, can exhaust memory.
//!
//! The core does no network I/O, so the reader works on any stream of byte chunks; an HTTP
//! backend turns its response into such a stream (with `reqwest`, `Response::bytes_stream`
//! and `Response::content_length` as the announced length) and maps
//! [`BodyError`] onto its own [`Error`](crate::Error), naming the server and the request.

use std::fmt;

use futures::{Stream, StreamExt as _};

/// Why a bounded read stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError<E> {
    /// The body is (or announced to be) larger than `limit` bytes; reading stopped there.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Reading a chunk failed (the connection broke off, a timeout...).
    Read(E),
}

impl<E: fmt::Display> fmt::Display for BodyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "the body is larger than the {limit}-byte limit")
            }
            BodyError::Read(e) => write!(f, "the body broke off: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for BodyError<E> {}

/// Reads `chunks` to the end into one buffer of at most `limit` bytes.
///
/// `announced` is the length the sender declared (`Content-Length`), if any: a body announced
/// larger than `limit` is refused before a byte is read. Otherwise reading stops at the first
/// chunk that would pass `limit`, so at most `limit` bytes (plus one chunk being looked at)
/// are ever held.
///
/// ```
/// use futures::stream;
/// use keel_core::body::{BodyError, read_bounded};
///
/// # futures::executor::block_on(async {
/// let chunks = stream::iter([Ok::<_, std::io::Error>(&b"{\"tags\""[..]), Ok(&b":[]}"[..])]);
/// assert_eq!(read_bounded(chunks, None, 64).await.unwrap(), b"{\"tags\":[]}");
///
/// let endless = stream::repeat_with(|| Ok::<_, std::io::Error>(&b"xxxx"[..]));
/// let err = read_bounded(endless, None, 10).await.unwrap_err();
/// assert!(matches!(err, BodyError::TooLarge { limit: 10 }));
/// assert_eq!(err.to_string(), "the body is larger than the 10-byte limit");
/// # });
/// ```
pub async fn read_bounded<S, C, E>(
    chunks: S,
    announced: Option<u64>,
    limit: usize,
) -> Result<Vec<u8>, BodyError<E>>
where
    S: Stream<Item = Result<C, E>>,
    C: AsRef<[u8]>,
{
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    // Trust the announced length only as a hint, and only up to the limit.
    let hint = announced.map_or(0, |n| n as usize).min(limit).min(1 << 20);
    let mut body = Vec::with_capacity(hint);
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        let chunk = chunk.as_ref();
        if chunk.len() > limit - body.len() {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::executor::block_on;
    use futures::stream;

    use super::*;

    #[test]
    fn reads_up_to_and_including_the_limit() {
        let chunks = stream::iter([Ok::<_, String>(vec![1u8; 6]), Ok(vec![2; 4])]);
        let body = block_on(read_bounded(chunks, Some(10), 10)).unwrap();
        assert_eq!(body.len(), 10);
        assert_eq!(&body[5..7], &[1, 2]);
        let empty = stream::iter(Vec::<Result<Vec<u8>, String>>::new());
        assert_eq!(block_on(read_bounded(empty, None, 0)).unwrap(), b"");
    }

    /// An endless body of `chunk`-byte chunks, counting the chunks read in `read`.
    fn endless(
        read: &AtomicUsize,
        chunk: usize,
    ) -> impl Stream<Item = Result<Vec<u8>, String>> + '_ {
        stream::repeat_with(move || {
            read.fetch_add(1, Ordering::SeqCst);
            Ok(vec![0u8; chunk])
        })
    }

    #[test]
    fn stops_at_the_limit_without_reading_on() {
        let read = AtomicUsize::new(0);
        let err = block_on(read_bounded(endless(&read, 1000), None, 4500)).unwrap_err();
        assert_eq!(err, BodyError::TooLarge { limit: 4500 });
        assert_eq!(read.load(Ordering::SeqCst), 5, "read past the limit");
    }

    #[test]
    fn an_announced_length_over_the_limit_is_refused_before_reading() {
        let read = AtomicUsize::new(0);
        let err = block_on(read_bounded(endless(&read, 1), Some(u64::MAX), 100)).unwrap_err();
        assert_eq!(err, BodyError::TooLarge { limit: 100 });
        assert_eq!(read.load(Ordering::SeqCst), 0);
        // An announced length is not trusted to be right: the limit still holds.
        let lying = stream::iter([Ok::<_, String>(vec![0u8; 80]), Ok(vec![0; 80])]);
        let err = block_on(read_bounded(lying, Some(5), 100)).unwrap_err();
        assert_eq!(err, BodyError::TooLarge { limit: 100 });
    }

    #[test]
    fn read_errors_are_passed_on() {
        let chunks = stream::iter([Ok(vec![1u8]), Err("connection reset".to_owned())]);
        let err = block_on(read_bounded(chunks, None, 100)).unwrap_err();
        assert_eq!(err, BodyError::Read("connection reset".to_owned()));
        assert_eq!(err.to_string(), "the body broke off: connection reset");
    }
}
