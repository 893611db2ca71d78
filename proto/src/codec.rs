//! The gRPC codec every generated client and server uses: prost's, except that a message that
//! does not decode is `INVALID_ARGUMENT` ("malformed protobuf message: …") rather than
//! tonic-prost's `INTERNAL`. A malformed request is the caller's fault and retrying it cannot
//! help; `INTERNAL` made clients think the server was broken.
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Each call's encode and decode buffers start this size and grow as a message needs.
/// tonic's default is 8 KiB: on glibc, an allocation that large is served past the per-thread
/// cache and first merges every freed small block back into the heap (`malloc_consolidate`),
/// once per buffer, so twice per call on each side; a metadata message is ~100 bytes. 512
/// bytes stays within the cache's sizes.
const BUFFER_BYTES: usize = 512;
/// How many bytes a stream encodes before it yields to the runtime (tonic's default).
const YIELD_BYTES: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
}

/// [`ProstCodec`] with decode errors mapped to `INVALID_ARGUMENT`, and small buffers.
#[derive(Debug, Clone)]
pub struct ShaleCodec<T, U> {
    _pd: std::marker::PhantomData<(T, U)>,
}

impl<T, U> Default for ShaleCodec<T, U> {
    fn default() -> Self {
        ShaleCodec {
            _pd: std::marker::PhantomData,
        }
    }
}

impl<T, U> Codec for ShaleCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ShaleDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ShaleDecoder {
            inner: ProstCodec::<T, U>::raw_decoder(buffer_settings()),
        }
    }
}

/// [`ProstDecoder`] with decode errors mapped to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ShaleDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: prost::Message + Default> Decoder for ShaleDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(buf).map_err(|s| {
            if s.code() == Code::Internal {
                Status::invalid_argument(format!("malformed protobuf message: {}", s.message()))
            } else {
                s
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
