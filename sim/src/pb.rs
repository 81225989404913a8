//! The simulator's own pbbp2 codec, written independently of the gateway's
//! so that a mistake in one is not mirrored in the other.

/// A pbbp2 frame as the server side sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub seq_id: u64,
    pub log_id: u64,
    pub service: i32,
    pub method: i32,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.uint(1, self.seq_id);
        w.uint(2, self.log_id);
        w.uint(3, self.service as i64 as u64);
        w.uint(4, self.method as i64 as u64);
        for (k, v) in &self.headers {
            let mut h = Writer(Vec::new());
            h.bytes(1, k.as_bytes());
            h.bytes(2, v.as_bytes());
            w.bytes(5, &h.0);
        }
        if !self.payload.is_empty() {
            w.bytes(8, &self.payload);
        }
        w.0
    }

    /// Parses a frame; `None` for anything malformed.
    pub fn from_bytes(b: &[u8]) -> Option<Frame> {
        let mut f = Frame::default();
        let mut required = 0u8;
        for (field, val) in fields(b)? {
            match (field, val) {
                (1, Val::Int(v)) => (f.seq_id, required) = (v, required | 1),
                (2, Val::Int(v)) => (f.log_id, required) = (v, required | 2),
                (3, Val::Int(v)) => (f.service, required) = (v as i32, required | 4),
                (4, Val::Int(v)) => (f.method, required) = (v as i32, required | 8),
                (5, Val::Len(h)) => {
                    let (mut k, mut v) = (None, None);
                    for (hf, hv) in fields(h)? {
                        match (hf, hv) {
                            (1, Val::Len(s)) => k = Some(String::from_utf8(s.to_vec()).ok()?),
                            (2, Val::Len(s)) => v = Some(String::from_utf8(s.to_vec()).ok()?),
                            _ => {}
                        }
                    }
                    f.headers.push((k?, v?));
                }
                (8, Val::Len(p)) => f.payload = p.to_vec(),
                _ => {}
            }
        }
        (required == 15).then_some(f)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn uint(&mut self, field: u64, v: u64) {
        self.varint(field << 3);
        self.varint(v);
    }
    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.varint((field << 3) | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

enum Val<'a> {
    Int(u64),
    Len(&'a [u8]),
    Other,
}

fn fields(mut b: &[u8]) -> Option<Vec<(u64, Val<'_>)>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut out = 0u64;
        for shift in (0..70).step_by(7) {
            let (&first, rest) = b.split_first()?;
            *b = rest;
            out |= u64::from(first & 0x7f).checked_shl(shift).unwrap_or(0);
            if first < 0x80 {
                return Some(out);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let val = match key & 7 {
            0 => Val::Int(varint(&mut b)?),
            2 => {
                let n = usize::try_from(varint(&mut b)?).ok()?;
                if n > b.len() {
                    return None;
                }
                let (head, rest) = b.split_at(n);
                b = rest;
                Val::Len(head)
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                b = b.get(n..)?;
                Val::Other
            }
            _ => return None,
        };
        out.push((key >> 3, val));
    }
    Some(out)
}
