//! The `pbbp2.Frame` protobuf codec used on Feishu's long connection.
//!
//! Every WebSocket message is one binary frame holding a proto2 `Frame`
//! (see `docs/FEISHU.md`). This module encodes and decodes it by hand: the
//! schema is nine fields, so a generated codec would cost more than it saves.
//! It does no I/O and is tested with byte literals.

use std::fmt;

/// `Frame.method` of control frames (ping, pong).
pub const METHOD_CONTROL: i32 = 0;
/// `Frame.method` of data frames (events and their acks).
pub const METHOD_DATA: i32 = 1;

/// One decoded `pbbp2.Frame`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub seq_id: u64,
    pub log_id: u64,
    pub service: i32,
    pub method: i32,
    /// Header key/value pairs in wire order (keys may repeat).
    pub headers: Vec<(String, String)>,
    pub payload_encoding: Option<String>,
    pub payload_type: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub log_id_new: Option<String>,
}

/// Why bytes could not be decoded as a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The input ended inside a field.
    Truncated,
    /// A varint longer than ten bytes.
    VarintTooLong,
    /// A wire type that protobuf does not define (3, 4, 6, 7).
    BadWireType(u8),
    /// A known field arrived with the wrong wire type.
    WrongWireType { field: u32 },
    /// A string field that is not UTF-8.
    NotUtf8 { field: u32 },
    /// One of the proto2 `required` fields is absent.
    MissingField(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "frame truncated"),
            FrameError::VarintTooLong => write!(f, "varint longer than 10 bytes"),
            FrameError::BadWireType(w) => write!(f, "invalid wire type {w}"),
            FrameError::WrongWireType { field } => {
                write!(f, "field {field} has the wrong wire type")
            }
            FrameError::NotUtf8 { field } => write!(f, "field {field} is not valid UTF-8"),
            FrameError::MissingField(name) => write!(f, "required field {name} missing"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    /// The client ping: `{SeqID 0, LogID 0, service, method 0, headers [type=ping]}`.
    pub fn ping(service: i32) -> Frame {
        Frame {
            service,
            method: METHOD_CONTROL,
            headers: vec![("type".into(), "ping".into())],
            ..Frame::default()
        }
    }

    /// The first value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Serialises the frame. The four required scalars are always written,
    /// even when zero, as a proto2 encoder does.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.as_ref().map_or(0, Vec::len));
        put_varint_field(&mut out, 1, self.seq_id);
        put_varint_field(&mut out, 2, self.log_id);
        // int32 is sign-extended to 64 bits on the wire.
        put_varint_field(&mut out, 3, self.service as i64 as u64);
        put_varint_field(&mut out, 4, self.method as i64 as u64);
        for (k, v) in &self.headers {
            let mut header = Vec::with_capacity(k.len() + v.len() + 4);
            put_bytes_field(&mut header, 1, k.as_bytes());
            put_bytes_field(&mut header, 2, v.as_bytes());
            put_bytes_field(&mut out, 5, &header);
        }
        if let Some(s) = &self.payload_encoding {
            put_bytes_field(&mut out, 6, s.as_bytes());
        }
        if let Some(s) = &self.payload_type {
            put_bytes_field(&mut out, 7, s.as_bytes());
        }
        if let Some(p) = &self.payload {
            put_bytes_field(&mut out, 8, p);
        }
        if let Some(s) = &self.log_id_new {
            put_bytes_field(&mut out, 9, s.as_bytes());
        }
        out
    }

    /// Parses a frame. Unknown fields are skipped; fields 1-4 are required.
    pub fn decode(buf: &[u8]) -> Result<Frame, FrameError> {
        let mut frame = Frame::default();
        let mut seen = [false; 4];
        let mut r = Reader { buf, pos: 0 };
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (1..=4, Value::Varint(v)) => {
                    seen[field as usize - 1] = true;
                    match field {
                        1 => frame.seq_id = v,
                        2 => frame.log_id = v,
                        3 => frame.service = v as i32,
                        _ => frame.method = v as i32,
                    }
                }
                (5, Value::Bytes(b)) => frame.headers.push(decode_header(b)?),
                (6, Value::Bytes(b)) => frame.payload_encoding = Some(utf8(b, 6)?),
                (7, Value::Bytes(b)) => frame.payload_type = Some(utf8(b, 7)?),
                (8, Value::Bytes(b)) => frame.payload = Some(b.to_vec()),
                (9, Value::Bytes(b)) => frame.log_id_new = Some(utf8(b, 9)?),
                (1..=9, _) => return Err(FrameError::WrongWireType { field }),
                _ => {} // unknown field: skipped
            }
        }
        for (i, name) in ["SeqID", "LogID", "service", "method"].into_iter().enumerate() {
            if !seen[i] {
                return Err(FrameError::MissingField(name));
            }
        }
        Ok(frame)
    }
}

fn decode_header(buf: &[u8]) -> Result<(String, String), FrameError> {
    let mut r = Reader { buf, pos: 0 };
    let (mut key, mut value) = (None, None);
    while let Some((field, v)) = r.next_field()? {
        match (field, v) {
            (1, Value::Bytes(b)) => key = Some(utf8(b, 1)?),
            (2, Value::Bytes(b)) => value = Some(utf8(b, 2)?),
            (1 | 2, _) => return Err(FrameError::WrongWireType { field }),
            _ => {}
        }
    }
    match (key, value) {
        (Some(k), Some(v)) => Ok((k, v)),
        (None, _) => Err(FrameError::MissingField("Header.key")),
        (_, None) => Err(FrameError::MissingField("Header.value")),
    }
}

fn utf8(b: &[u8], field: u32) -> Result<String, FrameError> {
    String::from_utf8(b.to_vec()).map_err(|_| FrameError::NotUtf8 { field })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, FrameError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(FrameError::Truncated)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FrameError::VarintTooLong)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.pos.checked_add(n).ok_or(FrameError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(FrameError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, FrameError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let value = match (key & 7) as u8 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| FrameError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            w => return Err(FrameError::BadWireType(w)),
        };
        Ok(Some((field, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ping vector from the official SDK's proto2 descriptor (service_id 33554678).
    const PING: [u8; 25] = [
        0x08, 0x00, 0x10, 0x00, 0x18, 0xf6, 0x81, 0x80, 0x10, 0x20, 0x00, 0x2a, 0x0c, 0x0a, 0x04,
        0x74, 0x79, 0x70, 0x65, 0x12, 0x04, 0x70, 0x69, 0x6e, 0x67,
    ];

    #[test]
    fn ping_matches_sdk_bytes() {
        assert_eq!(Frame::ping(33554678).encode(), PING);
        let f = Frame::decode(&PING).unwrap();
        assert_eq!(f, Frame::ping(33554678));
        assert_eq!(f.header("type"), Some("ping"));
    }

    #[test]
    fn full_frame_round_trips() {
        let f = Frame {
            seq_id: u64::MAX,
            log_id: 300,
            service: -5,
            method: METHOD_DATA,
            headers: vec![("type".into(), "event".into()), ("sum".into(), "1".into())],
            payload_encoding: Some("".into()),
            payload_type: Some("json".into()),
            payload: Some(br#"{"a":1}"#.to_vec()),
            log_id_new: Some("x".into()),
        };
        assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn unknown_fields_are_skipped_and_order_is_free() {
        // method first, unknown fixed64 (field 15), unknown fixed32 (field 14), unknown bytes (12).
        let mut b = vec![0x20, 0x01];
        b.extend_from_slice(&[0x79, 1, 2, 3, 4, 5, 6, 7, 8]);
        b.extend_from_slice(&[0x75, 1, 2, 3, 4]);
        b.extend_from_slice(&[0x62, 0x02, b'h', b'i']);
        b.extend_from_slice(&[0x18, 0x07, 0x10, 0x02, 0x08, 0x01]);
        let f = Frame::decode(&b).unwrap();
        assert_eq!((f.seq_id, f.log_id, f.service, f.method), (1, 2, 7, 1));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::MissingField("SeqID")));
        assert_eq!(Frame::decode(&[0x08]), Err(FrameError::Truncated));
        assert_eq!(
            Frame::decode(&[0x08, 0x00, 0x10, 0x00, 0x18, 0x00]),
            Err(FrameError::MissingField("method"))
        );
        assert_eq!(Frame::decode(&[0x0b]), Err(FrameError::BadWireType(3)));
        assert_eq!(Frame::decode(&[0x08, 0x80]), Err(FrameError::Truncated));
        assert_eq!(
            Frame::decode(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Err(FrameError::VarintTooLong)
        );
        assert_eq!(Frame::decode(&[0x42, 0x05, 0x01]), Err(FrameError::Truncated));
        assert_eq!(Frame::decode(&[0x0a, 0x00]), Err(FrameError::WrongWireType { field: 1 }));
        // A header without its value.
        assert_eq!(
            Frame::decode(&[0x2a, 0x03, 0x0a, 0x01, b'k']),
            Err(FrameError::MissingField("Header.value"))
        );
        assert_eq!(Frame::decode(&[0x32, 0x01, 0xff]), Err(FrameError::NotUtf8 { field: 6 }));
        // A huge length must not overflow.
        assert_eq!(
            Frame::decode(&[0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(FrameError::Truncated)
        );
    }
}
