//! Segment files: a header, then records `[payload length u32][CRC-32 u32][payload]`,
//! little-endian, appended and never rewritten.
//!
//! Nothing but the writer's own bookkeeping says where the valid data ends, so every
//! reader checks every record: a length that cannot be (zero, beyond the size limit,
//! past the end of the file) or a checksum that does not match marks a torn or corrupted
//! record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec;

/// The first bytes of every segment: a name and a format version.
pub(super) const MAGIC: &[u8; 8] = b"SFBUF\0\0\x01";
/// Bytes before the first record.
pub(super) const HEADER_LEN: u64 = MAGIC.len() as u64;
/// Bytes before a record's payload.
pub(super) const RECORD_HEADER_LEN: u64 = 8;
/// The largest payload a record may have; a longer length field is corruption.
pub(super) const MAX_PAYLOAD: u32 = 64 << 20;
/// Suffix of segment file names.
const SUFFIX: &str = ".seg";

/// A record's place: its segment and the offset of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) struct Pos {
    /// Segment id.
    pub segment: u64,
    /// Byte offset of the record header in the segment.
    pub offset: u64,
}

/// What the buffer knows about one record without reading its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordMeta {
    /// Where it is.
    pub pos: Pos,
    /// Payload bytes.
    pub len: u32,
    /// Events in it.
    pub events: u32,
}

impl RecordMeta {
    /// Bytes the record takes on disk.
    pub fn disk_len(&self) -> u64 {
        RECORD_HEADER_LEN + u64::from(self.len)
    }
}

/// A damaged spot found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Damage {
    /// Offset where it starts.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// What scanning a segment found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Plausible records, in order (checksums are verified when each is read).
    pub records: Vec<RecordMeta>,
    /// Damage that ended the scan: the rest of the segment is skipped.
    pub damage: Option<Damage>,
    /// Size of the file.
    pub file_len: u64,
}

/// The file of segment `id`.
pub(super) fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

/// Ids of the segment files in `dir`, ascending.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        ids.push(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Starts a record in an empty buffer: room for the header, filled in by [`seal_record`].
pub(super) fn begin_record(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN as usize]);
}

/// Fills in the header of a record begun with [`begin_record`]; returns the payload length.
pub(super) fn seal_record(record: &mut [u8]) -> u32 {
    let (header, payload) = record.split_at_mut(RECORD_HEADER_LEN as usize);
    let len = payload.len() as u32;
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    len
}

#[cfg(test)]
pub(super) fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    begin_record(out);
    out.extend_from_slice(payload);
    seal_record(&mut out[start..]);
}

/// Reads the record headers of segment `id` from `from` on (a record boundary).
pub(super) fn scan(dir: &Path, id: u64, from: u64) -> io::Result<Scan> {
    let file = File::open(path(dir, id))?;
    let file_len = file.metadata()?.len();
    let mut scan = Scan {
        file_len,
        ..Scan::default()
    };
    let mut magic = [0u8; HEADER_LEN as usize];
    if file_len < HEADER_LEN || file.read_exact_at(&mut magic, 0).is_err() || &magic != MAGIC {
        scan.damage = Some(Damage {
            offset: 0,
            what: "not a siemflow buffer segment (bad header)".into(),
        });
        return Ok(scan);
    }
    let mut offset = from.max(HEADER_LEN);
    while offset < file_len {
        let left = file_len - offset;
        if left < RECORD_HEADER_LEN + 4 {
            scan.damage = Some(Damage {
                offset,
                what: format!("torn record: {left} bytes at the end of the segment"),
            });
            break;
        }
        let mut head = [0u8; RECORD_HEADER_LEN as usize + 4];
        file.read_exact_at(&mut head, offset)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if !(4..=MAX_PAYLOAD).contains(&len) {
            scan.damage = Some(Damage {
                offset,
                what: format!("impossible record length {len}"),
            });
            break;
        }
        let end = offset + RECORD_HEADER_LEN + u64::from(len);
        if end > file_len {
            scan.damage = Some(Damage {
                offset,
                what: format!(
                    "torn record: {len} bytes announced, {} on disk",
                    left - RECORD_HEADER_LEN
                ),
            });
            break;
        }
        let events = codec::event_count(&head[RECORD_HEADER_LEN as usize..]).unwrap_or(0);
        scan.records.push(RecordMeta {
            pos: Pos {
                segment: id,
                offset,
            },
            len,
            events,
        });
        offset = end;
    }
    Ok(scan)
}

/// Why a record could not be read back.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    /// The bytes on disk are not what was written.
    #[error("{0}")]
    Corrupted(String),
    /// The operating system failed the read.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads a record's payload from an open segment and verifies its length and checksum.
pub(super) fn read_record(file: &File, meta: &RecordMeta) -> Result<Bytes, ReadError> {
    let mut raw = vec![0u8; meta.disk_len() as usize];
    file.read_exact_at(&mut raw, meta.pos.offset)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ReadError::Corrupted("record cut short".into()),
            _ => ReadError::Io(e),
        })?;
    let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if len != meta.len {
        return Err(ReadError::Corrupted(format!(
            "record length changed from {} to {len}",
            meta.len
        )));
    }
    let crc = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let mut raw = Bytes::from(raw);
    let payload = raw.split_off(RECORD_HEADER_LEN as usize);
    let actual = crc32fast::hash(&payload);
    if actual != crc {
        return Err(ReadError::Corrupted(format!(
            "checksum mismatch (stored {crc:08x}, computed {actual:08x})"
        )));
    }
    Ok(payload)
}

/// The segment being appended to.
pub(super) struct SegmentWriter {
    /// Its id.
    pub id: u64,
    file: File,
    /// Bytes known to be on disk (synced).
    pub durable_len: u64,
    /// Bytes written, synced or not.
    pub len: u64,
}

impl SegmentWriter {
    /// Creates segment `id` with its header, durably (file and folder entry synced).
    pub fn create(dir: &Path, id: u64) -> io::Result<SegmentWriter> {
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path(dir, id))?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(SegmentWriter {
            id,
            file,
            durable_len: HEADER_LEN,
            len: HEADER_LEN,
        })
    }

    /// Appends bytes (not synced yet).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.durable_len = self.len;
        Ok(())
    }

    /// Cuts what a failed write left after the durable end. False when that failed too.
    pub fn roll_back(&mut self) -> bool {
        let ok = self.file.set_len(self.durable_len).is_ok();
        if ok {
            self.len = self.durable_len;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_records_scan_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = SegmentWriter::create(dir.path(), 7).expect("create");
        let mut bytes = Vec::new();
        encode_record(&[2, 0, 0, 0, 9, 9], &mut bytes);
        encode_record(&[1, 0, 0, 0, 5], &mut bytes);
        writer.append(&bytes).expect("append");
        writer.sync().expect("sync");
        assert_eq!(list(dir.path()).expect("list"), vec![7]);
        let scan = scan(dir.path(), 7, 0).expect("scan");
        assert_eq!(scan.damage, None);
        assert_eq!(
            scan.records.iter().map(|r| r.events).collect::<Vec<_>>(),
            [2, 1]
        );
        let file = File::open(path(dir.path(), 7)).expect("open");
        let payload = read_record(&file, &scan.records[1]).expect("valid");
        assert_eq!(&payload[..], &[1, 0, 0, 0, 5]);
    }
}
