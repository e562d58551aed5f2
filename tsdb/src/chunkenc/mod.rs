//! Chunk encodings.
//!
//! A chunk is a compressed run of samples of one series. Blocks and the head store chunks as
//! an encoding byte plus opaque data; this module turns samples into that data and back. The
//! float (XOR) encoding and Thanos's downsampled chunk ([`aggr`], aggregates that are XOR
//! chunks) are implemented; the ids of the native-histogram encodings are known so that readers
//! can name what they skip.

pub mod aggr;
mod bstream;
mod open;
mod xor;

use std::fmt;

pub use aggr::{AggrChunk, AggrType, SubChunk};
pub use open::OpenChunk;
pub use xor::{XorAppender, XorIter};

use crate::Error;

/// The encoding byte stored in front of every chunk, with Prometheus's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Never valid on disk; Prometheus uses it for "no chunk".
    None = 0,
    /// Float samples, Gorilla-style XOR compression.
    Xor = 1,
    /// Integer native histograms (Prometheus 2.40+).
    Histogram = 2,
    /// Float native histograms (Prometheus 2.42+).
    FloatHistogram = 3,
    /// Thanos's downsampled chunk: up to five aggregate chunks ([`AggrChunk`]).
    Aggr = 0xff,
}

impl Encoding {
    /// The sample count of a chunk with this encoding and data: the 2-byte header of the sample
    /// encodings; the number of windows of a downsampled chunk (as Thanos counts it); `None`
    /// when the data is too short or malformed to tell.
    pub fn num_samples(self, data: &bytes::Bytes) -> Option<u16> {
        match self {
            Encoding::None => None,
            Encoding::Xor | Encoding::Histogram | Encoding::FloatHistogram => {
                data.first_chunk::<2>().map(|h| u16::from_be_bytes(*h))
            }
            Encoding::Aggr => AggrChunk::decode(data).ok().map(|c| c.num_samples()),
        }
    }
}

impl TryFrom<u8> for Encoding {
    type Error = Error;

    fn try_from(b: u8) -> Result<Self, Error> {
        match b {
            0 => Ok(Encoding::None),
            1 => Ok(Encoding::Xor),
            2 => Ok(Encoding::Histogram),
            3 => Ok(Encoding::FloatHistogram),
            0xff => Ok(Encoding::Aggr),
            _ => Err(Error::CorruptChunk(format!("unknown chunk encoding {b}"))),
        }
    }
}

impl fmt::Display for Encoding {
    /// The names Prometheus prints for these encodings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::None => "none",
            Encoding::Xor => "XOR",
            Encoding::Histogram => "histogram",
            Encoding::FloatHistogram => "floathistogram",
            Encoding::Aggr => "aggr",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_ids_round_trip() {
        for e in [Encoding::None, Encoding::Xor, Encoding::Histogram, Encoding::FloatHistogram, Encoding::Aggr] {
            assert_eq!(Encoding::try_from(e as u8).ok(), Some(e));
        }
        // 4 is Prometheus 3.11's XOR2, not ours to decode.
        assert!(Encoding::try_from(4).is_err());
        assert_eq!(Encoding::try_from(0xff).ok(), Some(Encoding::Aggr));
        assert_eq!(Encoding::Xor.to_string(), "XOR");
    }
}
