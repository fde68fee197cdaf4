//! The bytes of a segment and of the run file (docs/multiprocess.md): what
//! a record holds and how it is encoded and parsed. No I/O here.

use std::fmt;

pub const SEGMENT_MAGIC: [u8; 8] = *b"PPCMSEG1";
pub const RUN_MAGIC: [u8; 8] = *b"PPCMRUN1";
pub const VERSION: u32 = 1;
/// Bytes of a segment's header; the first record starts here.
pub const HEADER: usize = 64;
/// Header offsets.
pub const AT_FLAGS: usize = 12;
pub const AT_GENERATION: usize = 16;
pub const AT_USED: usize = 32;
pub const AT_PID: usize = 40;
pub const AT_ID: usize = 48;
/// Retained files: a serial number, new at each rewrite.
pub const AT_SERIAL: usize = 56;
pub const FLAG_RETAINED: u32 = 1;
/// Bytes of a record's fixed part, before its metadata.
pub const RECORD_HEAD: usize = 16;
const FOLDED: u8 = 4;
/// Words before a histogram's buckets: sequence, sum, min, max.
pub const HISTOGRAM_HEAD: usize = 4;

/// A malformed file: another program's, another version's, or damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

fn bad(what: impl Into<String>) -> FormatError {
    FormatError(what.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }

    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Counter),
            2 => Some(Kind::Gauge),
            3 => Some(Kind::Histogram),
            _ => None,
        }
    }
}

/// How the processes' values of one gauge make the exported one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Sum = 0,
    Max = 1,
    Min = 2,
    Latest = 3,
    /// One series per process, labelled `pid`.
    Pid = 4,
}

impl Mode {
    pub const ALL: [Mode; 5] = [Mode::Sum, Mode::Max, Mode::Min, Mode::Latest, Mode::Pid];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Sum => "sum",
            Mode::Max => "max",
            Mode::Min => "min",
            Mode::Latest => "latest",
            Mode::Pid => "pid",
        }
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    fn from_byte(byte: u8) -> Option<Mode> {
        Mode::ALL.get(usize::from(byte)).copied()
    }
}

/// A series as every process knows it: what a record's metadata says.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub kind: Kind,
    pub mode: Mode,
    pub namespace: String,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub description: String,
    pub bounds: Vec<f64>,
}

impl Series {
    /// Words of this series' values.
    pub fn value_words(&self) -> usize {
        match self.kind {
            Kind::Counter => 1,
            Kind::Gauge => 2,
            Kind::Histogram => HISTOGRAM_HEAD + self.bounds.len() + 1,
        }
    }

    /// What identifies the series across processes: everything but the
    /// description.
    pub fn identity(&self) -> Vec<u8> {
        let mut out = vec![self.kind as u8, self.mode as u8];
        for bound in &self.bounds {
            out.extend_from_slice(&bound.to_bits().to_le_bytes());
        }
        self.key_into(&mut out);
        out
    }

    fn key_into(&self, out: &mut Vec<u8>) {
        str16(out, &self.namespace);
        str16(out, &self.name);
        let count = u16::try_from(self.labels.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for (name, value) in self.labels.iter().take(usize::from(count)) {
            str16(out, name);
            str16(out, value);
        }
    }

    /// The record's bytes with its values at zero (a histogram's min and max
    /// at +Inf and -Inf); with the offset of the values in it. None if a
    /// string or the label or bound count is too long for the format.
    pub fn record(&self) -> Option<(Vec<u8>, usize)> {
        if self.namespace.len() > usize::from(u16::MAX)
            || self.name.len() > usize::from(u16::MAX)
            || self.labels.len() > usize::from(u16::MAX)
            || self
                .labels
                .iter()
                .any(|(n, v)| n.len() > usize::from(u16::MAX) || v.len() > usize::from(u16::MAX))
            || self.bounds.len() >= usize::from(u16::MAX)
            || u32::try_from(self.description.len()).is_err()
        {
            return None;
        }
        let mut meta = Vec::new();
        self.key_into(&mut meta);
        let description = u32::try_from(self.description.len()).ok()?;
        meta.extend_from_slice(&description.to_le_bytes());
        meta.extend_from_slice(self.description.as_bytes());
        let bounds_at = align(RECORD_HEAD + meta.len());
        let values_at = bounds_at + 8 * self.bounds.len();
        let length = values_at + 8 * self.value_words();
        let mut out = Vec::with_capacity(length);
        out.extend_from_slice(&u32::try_from(length).ok()?.to_le_bytes());
        out.push(self.kind as u8);
        out.push(if self.kind == Kind::Gauge {
            self.mode as u8
        } else {
            0
        });
        out.extend_from_slice(&u16::try_from(self.bounds.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(values_at).ok()?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(meta.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&meta);
        out.resize(bounds_at, 0);
        for bound in &self.bounds {
            out.extend_from_slice(&bound.to_bits().to_le_bytes());
        }
        out.resize(length, 0);
        if self.kind == Kind::Histogram {
            put(&mut out, values_at + 16, f64::INFINITY.to_bits());
            put(&mut out, values_at + 24, f64::NEG_INFINITY.to_bits());
        }
        Some((out, values_at))
    }
}

/// `n` rounded up to a multiple of 8.
pub fn align(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn str16(out: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
}

pub fn put(out: &mut [u8], at: usize, word: u64) {
    if let Some(slot) = out.get_mut(at..at + 8) {
        slot.copy_from_slice(&word.to_le_bytes());
    }
}

pub fn get(bytes: &[u8], at: usize) -> Option<u64> {
    let slot = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(slot.try_into().ok()?))
}

pub fn get32(bytes: &[u8], at: usize) -> Option<u32> {
    let slot = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(slot.try_into().ok()?))
}

fn get16(bytes: &[u8], at: usize) -> Option<u16> {
    let slot = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(slot.try_into().ok()?))
}

/// The first 16 bytes of a record: its length, and how many bytes of it
/// must be read to parse it (all but the values).
pub fn record_head(head: &[u8]) -> Result<(usize, usize), FormatError> {
    if head.len() < RECORD_HEAD {
        return Err(bad("a record is cut short"));
    }
    let length = get32(head, 0).ok_or_else(|| bad("a record is cut short"))? as usize;
    let values_at = get32(head, 8).ok_or_else(|| bad("a record is cut short"))? as usize;
    if length < RECORD_HEAD
        || !length.is_multiple_of(8)
        || values_at > length
        || !values_at.is_multiple_of(8)
    {
        return Err(bad("a record's length or layout is not valid"));
    }
    Ok((length, values_at))
}

/// What parsing a record gives.
pub enum Parsed {
    Series {
        series: Series,
        identity: Vec<u8>,
        /// Offset of the values from the record's start.
        values_at: usize,
    },
    /// The ids of the segments the last fold folded (retained files).
    Folded(Vec<u64>),
}

/// Parses a record from its bytes up to its values (for a folded-ids
/// record, the whole record).
pub fn parse_record(bytes: &[u8]) -> Result<Parsed, FormatError> {
    let (length, values_at) = record_head(bytes)?;
    let kind = bytes[4];
    if kind == FOLDED {
        let count = get(bytes, values_at).ok_or_else(|| bad("a folded-ids record is cut short"))?;
        let fits = |n: &usize| {
            n.checked_mul(8)
                .and_then(|b| b.checked_add(values_at + 8))
                .is_some_and(|end| end <= length)
        };
        let count = usize::try_from(count)
            .ok()
            .filter(fits)
            .ok_or_else(|| bad("a folded-ids record is cut short"))?;
        let ids = (0..count)
            .filter_map(|i| get(bytes, values_at + 8 + 8 * i))
            .collect();
        return Ok(Parsed::Folded(ids));
    }
    let kind = Kind::from_byte(kind).ok_or_else(|| bad(format!("unknown record kind {kind}")))?;
    let mode = if kind == Kind::Gauge {
        Mode::from_byte(bytes[5]).ok_or_else(|| bad("unknown gauge mode"))?
    } else {
        Mode::Sum
    };
    let bound_count = usize::from(get16(bytes, 6).ok_or_else(|| bad("cut short"))?);
    let meta_len = get32(bytes, 12).ok_or_else(|| bad("cut short"))? as usize;
    let meta = bytes
        .get(RECORD_HEAD..RECORD_HEAD + meta_len)
        .ok_or_else(|| bad("a record's metadata is cut short"))?;
    let mut reader = Reader { bytes: meta, at: 0 };
    let namespace = reader.str16()?;
    let name = reader.str16()?;
    let label_count = reader.u16()?;
    let mut labels = Vec::with_capacity(usize::from(label_count));
    for _ in 0..label_count {
        let label = reader.str16()?;
        labels.push((label, reader.str16()?));
    }
    let description = reader.str32()?;
    let bounds_at = align(RECORD_HEAD + meta_len);
    if bounds_at + 8 * bound_count != values_at {
        return Err(bad("a record's bounds do not end where its values start"));
    }
    let bounds = (0..bound_count)
        .map(|i| get(bytes, bounds_at + 8 * i).map(f64::from_bits))
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| bad("a record's bounds are cut short"))?;
    if kind != Kind::Histogram && bound_count != 0 {
        return Err(bad("only a histogram has bounds"));
    }
    let series = Series {
        kind,
        mode,
        namespace,
        name,
        labels,
        description,
        bounds,
    };
    if values_at + 8 * series.value_words() != length {
        return Err(bad("a record's values do not fill it"));
    }
    let identity = series.identity();
    Ok(Parsed::Series {
        series,
        identity,
        values_at,
    })
}

/// A folded-ids record listing `ids`.
pub fn folded_record(ids: &[u64]) -> Vec<u8> {
    let values_at = RECORD_HEAD;
    let length = values_at + 8 + 8 * ids.len();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[FOLDED, 0, 0, 0]);
    out.extend_from_slice(&u32::try_from(values_at).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FormatError> {
        let out = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| bad("a record's metadata is cut short"))?;
        self.at += n;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        let raw = self.take(2)?;
        Ok(u16::from_le_bytes([raw[0], raw[1]]))
    }

    fn text(&mut self, n: usize) -> Result<String, FormatError> {
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| bad("a record holds text that is not UTF-8"))
    }

    fn str16(&mut self) -> Result<String, FormatError> {
        let n = usize::from(self.u16()?);
        self.text(n)
    }

    fn str32(&mut self) -> Result<String, FormatError> {
        let raw = self.take(4)?;
        let n = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        self.text(n)
    }
}

/// A segment's header.
pub fn segment_header(generation: &[u8; 16], pid: u32, id: u64, flags: u32) -> [u8; HEADER] {
    let mut out = [0u8; HEADER];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[AT_FLAGS..AT_FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
    out[AT_GENERATION..AT_GENERATION + 16].copy_from_slice(generation);
    put(&mut out, AT_USED, HEADER as u64);
    out[AT_PID..AT_PID + 4].copy_from_slice(&pid.to_le_bytes());
    put(&mut out, AT_ID, id);
    out
}

/// A segment header's fields, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub generation: [u8; 16],
    pub used: usize,
    pub pid: u32,
    pub id: u64,
    pub serial: u64,
}

pub fn parse_header(bytes: &[u8]) -> Result<Header, FormatError> {
    if bytes.len() < HEADER || bytes[..8] != SEGMENT_MAGIC {
        return Err(bad("not a pepperpy-core metrics segment"));
    }
    let version = get32(bytes, 8).unwrap_or(0);
    if version != VERSION {
        return Err(bad(format!(
            "a metrics segment of format version {version}, not {VERSION}"
        )));
    }
    let mut generation = [0u8; 16];
    generation.copy_from_slice(&bytes[AT_GENERATION..AT_GENERATION + 16]);
    let used = get(bytes, AT_USED).unwrap_or(0);
    Ok(Header {
        flags: get32(bytes, AT_FLAGS).unwrap_or(0),
        generation,
        used: usize::try_from(used).map_err(|_| bad("a segment's length is too large"))?,
        pid: get32(bytes, AT_PID).unwrap_or(0),
        id: get(bytes, AT_ID).unwrap_or(0),
        serial: get(bytes, AT_SERIAL).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(kind: Kind) -> Series {
        Series {
            kind,
            mode: if kind == Kind::Gauge {
                Mode::Max
            } else {
                Mode::Sum
            },
            namespace: "ns".into(),
            name: "requests_total".into(),
            labels: vec![("path".into(), "/é".into())],
            description: "Requests.".into(),
            bounds: if kind == Kind::Histogram {
                vec![0.5, 1.0]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn records_parse_back() {
        for kind in [Kind::Counter, Kind::Gauge, Kind::Histogram] {
            let s = series(kind);
            let (bytes, values_at) = s.record().expect("fits");
            assert_eq!(bytes.len() % 8, 0);
            let Ok(Parsed::Series {
                series,
                identity,
                values_at: at,
            }) = parse_record(&bytes)
            else {
                panic!("a series record")
            };
            assert_eq!(series, s);
            assert_eq!(at, values_at);
            assert_eq!(identity, s.identity());
        }
    }

    #[test]
    fn the_description_is_not_part_of_the_identity() {
        let a = series(Kind::Counter);
        let mut b = a.clone();
        b.description = String::new();
        assert_eq!(a.identity(), b.identity());
        b.labels[0].1 = "/b".into();
        assert_ne!(a.identity(), b.identity());
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let (bytes, _) = series(Kind::Histogram).record().expect("fits");
        for cut in 0..bytes.len() {
            let mut damaged = bytes[..cut].to_vec();
            damaged.resize(bytes.len(), 0xff);
            let _ = parse_record(&damaged);
            let _ = parse_record(&bytes[..cut]);
        }
        assert!(parse_header(&[0; 10]).is_err());
        // Any one byte of a record (a folded-ids record too) set to any of
        // a few values: an error or a record, never a panic or a hang.
        for record in [bytes, folded_record(&[1, 2, 3])] {
            for at in 0..record.len() {
                for value in [0x00, 0x7f, 0x80, 0xff] {
                    let mut damaged = record.clone();
                    damaged[at] = value;
                    let _ = parse_record(&damaged);
                }
            }
        }
    }

    #[test]
    fn folded_ids_parse_back() {
        let record = folded_record(&[7, 9]);
        let Ok(Parsed::Folded(ids)) = parse_record(&record) else {
            panic!("folded ids")
        };
        assert_eq!(ids, vec![7, 9]);
        let mut lying = record.clone();
        put(&mut lying, 16, u64::MAX); // a count no record could hold
        assert!(parse_record(&lying).is_err());
    }
}
