//! Finds where a `chunked` message body ends while its bytes pass through unchanged, or
//! takes its chunk data and trailers apart for a reader that decodes it. The framing is
//! checked strictly (hex sizes, CRLF line ends, bounded extensions and trailers):
//! a body this scanner accepts ends where any conforming reader would end it.

/// Longest chunk-size line (size, extensions), and all trailer lines together, in bytes.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// After the size: whitespace or a chunk extension, up to CR.
    Ext,
    /// CR of the size line seen; LF must follow.
    SizeLf,
    /// Chunk data still to come.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// After the last chunk: CR ends the message, anything else starts a trailer field.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// CR of a trailer line seen; LF must follow.
    TrailerLf,
    /// The final CR seen; LF ends the message.
    EndLf,
    /// The message has ended.
    Done,
}

/// The framing is broken; the connection cannot be trusted any more.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadChunk;

/// How far a scanned slice takes the body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// All of the slice is body; more follows.
    More,
    /// The body ends after this many bytes of the slice.
    End(usize),
}

/// Scanner state across reads.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    line: usize,
    trailers: usize,
}

impl Chunked {
    /// A scanner at the start of a body.
    pub(crate) fn new() -> Self {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Scans the next bytes of the body.
    pub(crate) fn scan(&mut self, data: &[u8]) -> Result<Scan, BadChunk> {
        let mut i = 0;
        while i < data.len() {
            let s = self.step(&data[i..], None)?;
            i += s.used;
            if s.end {
                return Ok(Scan::End(i));
            }
        }
        Ok(Scan::More)
    }

    /// Takes bytes of `data` up to the end of the first run of chunk data, the end of the
    /// body, or the end of `data`, whichever comes first. The trailer section's bytes (its
    /// final empty line included) are appended to `trailers` when given.
    pub(crate) fn step(
        &mut self,
        data: &[u8],
        mut trailers: Option<&mut Vec<u8>>,
    ) -> Result<Step, BadChunk> {
        let mut i = 0;
        while i < data.len() {
            if self.state == State::Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Step {
                    used: i + take,
                    data: Some(i..i + take),
                    end: false,
                });
            }
            let b = data[i];
            i += 1;
            let in_trailers = matches!(
                self.state,
                State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf
            );
            self.state = match (self.state, b) {
                (State::Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits == 15 {
                        return Err(BadChunk);
                    }
                    self.digits += 1;
                    self.size = self.size * 16 + u64::from(hex(b));
                    State::Size
                }
                (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => {
                    self.line = 0;
                    State::Ext
                }
                (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
                (State::Ext, b'\r') => State::SizeLf,
                (State::Ext, b) if b != b'\n' && (b >= 0x20 || b == b'\t') => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(BadChunk);
                    }
                    State::Ext
                }
                (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
                (State::SizeLf, b'\n') => State::Data,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => {
                    self.size = 0;
                    self.digits = 0;
                    State::Size
                }
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::Trailer, b) if b != b'\n' => {
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(BadChunk);
                    }
                    State::Trailer
                }
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Done,
                _ => return Err(BadChunk),
            };
            if in_trailers && let Some(t) = trailers.as_deref_mut() {
                t.push(b);
            }
            if self.state == State::Done {
                return Ok(Step {
                    used: i,
                    data: None,
                    end: true,
                });
            }
        }
        Ok(Step {
            used: i,
            data: None,
            end: false,
        })
    }
}

/// How far one `Chunked::step` went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// Bytes of the input taken.
    pub(crate) used: usize,
    /// Where in the input the chunk data it took lies (it ends the step).
    pub(crate) data: Option<std::ops::Range<usize>>,
    /// The body ended with the last byte taken.
    pub(crate) end: bool,
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &[u8]) -> Result<Scan, BadChunk> {
        Chunked::new().scan(body)
    }

    #[test]
    fn finds_the_end_of_a_body_and_leaves_what_follows() {
        let body = b"5\r\nhello\r\n1a;name=v\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nHTTP/1.1";
        assert_eq!(whole(body), Ok(Scan::End(body.len() - 8)));
    }

    #[test]
    fn trailers_belong_to_the_body() {
        let body = b"3\r\nabc\r\n0\r\nx-sum: 1\r\nx-more: 2\r\n\r\n";
        assert_eq!(whole(body), Ok(Scan::End(body.len())));
    }

    #[test]
    fn any_split_across_reads_gives_the_same_end() {
        let body = b"A\r\n0123456789\r\n0;done\r\nt: v\r\n\r\n";
        for split in 0..body.len() {
            let mut c = Chunked::new();
            let first = c.scan(&body[..split]).unwrap();
            assert_eq!(first, Scan::More, "split at {split}");
            assert_eq!(c.scan(&body[split..]), Ok(Scan::End(body.len() - split)));
        }
    }

    #[test]
    fn broken_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\r",
            b"0\r\n\n",
            b"0\r\nt: v\n\r\n",
            b"ffffffffffffffff0\r\n",
            b"5;a\nb\r\n",
        ] {
            assert_eq!(
                whole(bad),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 1));
        assert_eq!(whole(&long), Err(BadChunk));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..=MAX_TRAILERS / 5 {
            trailers.extend(b"x: 12\r\n");
        }
        assert_eq!(whole(&trailers), Err(BadChunk));
    }

    proptest::proptest! {
        /// Any well-formed body, cut into any reads, ends exactly where it was encoded to end.
        #[test]
        fn encoded_bodies_end_where_they_were_encoded_to_end(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..300), 0..8),
            trailers in proptest::collection::vec("[a-z]{1,8}: [ -~]{0,20}", 0..3),
            cuts in proptest::collection::vec(proptest::num::usize::ANY, 0..6),
            upper in proptest::bool::ANY,
        ) {
            let mut body = Vec::new();
            for c in &chunks {
                let size = if upper { format!("{:X}", c.len()) } else { format!("{:x}", c.len()) };
                body.extend(size.as_bytes());
                body.extend(b";e=1\r\n");
                body.extend(c);
                body.extend(b"\r\n");
            }
            body.extend(b"0\r\n");
            for t in &trailers {
                body.extend(t.as_bytes());
                body.extend(b"\r\n");
            }
            body.extend(b"\r\n");
            let end = body.len();
            body.extend(b"NEXT");
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % end).collect();
            cuts.push(0);
            cuts.sort_unstable();
            cuts.dedup();
            let mut scanner = Chunked::new();
            let mut found = None;
            for (i, &from) in cuts.iter().enumerate() {
                let to = cuts.get(i + 1).copied().unwrap_or(body.len());
                match scanner.scan(&body[from..to]).unwrap() {
                    Scan::More => proptest::prop_assert!(to <= end),
                    Scan::End(n) => {
                        found = Some(from + n);
                        break;
                    }
                }
            }
            proptest::prop_assert_eq!(found, Some(end));
        }

        /// Decoding any well-formed body, cut into any reads, gives back its data and its
        /// trailer section.
        #[test]
        fn decoding_gives_back_the_data_and_trailers(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..300), 0..8),
            trailers in proptest::collection::vec("[a-z]{1,8}: [ -~]{0,20}", 0..3),
            cuts in proptest::collection::vec(proptest::num::usize::ANY, 0..6),
        ) {
            let mut body = Vec::new();
            for c in &chunks {
                body.extend(format!("{:x}\r\n", c.len()).as_bytes());
                body.extend(c);
                body.extend(b"\r\n");
            }
            body.extend(b"0\r\n");
            let mut section = Vec::new();
            for t in &trailers {
                section.extend(t.as_bytes());
                section.extend(b"\r\n");
            }
            section.extend(b"\r\n");
            body.extend(&section);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % body.len()).collect();
            cuts.push(0);
            cuts.sort_unstable();
            cuts.dedup();
            let (mut decoder, mut data, mut got_trailers, mut ended) =
                (Chunked::new(), Vec::new(), Vec::new(), false);
            for (i, &from) in cuts.iter().enumerate() {
                let mut piece = &body[from..cuts.get(i + 1).copied().unwrap_or(body.len())];
                while !piece.is_empty() {
                    proptest::prop_assert!(!ended);
                    let step = decoder.step(piece, Some(&mut got_trailers)).unwrap();
                    if let Some(r) = step.data.clone() {
                        proptest::prop_assert_eq!(r.end, step.used);
                        data.extend_from_slice(&piece[r]);
                    }
                    ended = step.end;
                    piece = &piece[step.used..];
                }
            }
            proptest::prop_assert!(ended);
            proptest::prop_assert_eq!(data, chunks.concat());
            proptest::prop_assert_eq!(got_trailers, section);
        }

        /// Arbitrary bytes never panic the scanner, and an end it reports lies within the input.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(Scan::End(n)) = Chunked::new().scan(&data) {
                proptest::prop_assert!(n <= data.len());
            }
        }
    }
}
