//! Upstream clients. Streamable HTTP upstreams are reached with a shared `reqwest`
//! client from [`crate::front`]; stdio and legacy HTTP+SSE upstreams are message
//! [`channel`]s, one per agent session.

pub mod channel;

pub use toolgate_protocol::upstream::id_key;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (in the buffer, its newline included when there was one).
    Read,
    /// A line longer than the limit: read to its end and dropped (the buffer holds none of
    /// it), so the stream stays usable.
    TooLong,
    /// The end of the stream.
    End,
}

/// Reads one line of at most `max` bytes into `buf` (cleared first). A longer line is
/// consumed to its end without being kept: memory stays within `max` whatever the peer
/// sends, and the next line is read normally.
pub async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let n = (&mut *reader)
        .take(max as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(Line::End);
    }
    if buf.len() <= max || buf.ends_with(b"\n") && buf.len() == max + 1 {
        return Ok(Line::Read);
    }
    // Too long: skip to the end of the line, a bounded chunk at a time.
    loop {
        buf.clear();
        let n = (&mut *reader)
            .take(64 * 1024)
            .read_until(b'\n', buf)
            .await?;
        if n == 0 || buf.ends_with(b"\n") {
            buf.clear();
            return Ok(Line::TooLong);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_over_the_limit_is_skipped_and_the_next_one_read() {
        let mut data: Vec<u8> = b"short\n".to_vec();
        data.extend(vec![b'x'; 200_000]);
        data.extend(b"\nafter\nexact\n");
        let mut r = tokio::io::BufReader::new(&data[..]);
        let mut buf = vec![];
        assert_eq!(read_line(&mut r, &mut buf, 5).await.unwrap(), Line::Read);
        assert_eq!(buf, b"short\n");
        assert_eq!(read_line(&mut r, &mut buf, 5).await.unwrap(), Line::TooLong);
        assert!(buf.is_empty());
        assert_eq!(read_line(&mut r, &mut buf, 5).await.unwrap(), Line::Read);
        assert_eq!(buf, b"after\n");
        assert_eq!(read_line(&mut r, &mut buf, 5).await.unwrap(), Line::Read);
        assert_eq!(buf, b"exact\n");
        assert_eq!(read_line(&mut r, &mut buf, 5).await.unwrap(), Line::End);
    }
}
