//! The gRPC codec every generated client and server uses: prost's, except that a message that
//! does not decode is `INVALID_ARGUMENT` ("malformed protobuf message: …") rather than
//! tonic-prost's `INTERNAL`. A malformed request is the caller's fault and retrying it cannot
//! help; `INTERNAL` made clients think the server was broken.
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// [`ProstCodec`] with decode errors mapped to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ShaleCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for ShaleCodec<T, U> {
    fn default() -> Self {
        ShaleCodec {
            inner: ProstCodec::default(),
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
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ShaleDecoder {
            inner: self.inner.decoder(),
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
