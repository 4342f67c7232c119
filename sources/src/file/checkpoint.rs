//! The checkpoint file and the identity of a file across renames and restarts.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::listing::FileId;

/// The checkpoint file's name inside the component's state folder.
pub const FILE_NAME: &str = "checkpoints.json";

/// How many leading bytes identify a file's content, at most.
pub const FINGERPRINT_BYTES: usize = 256;

const FORMAT_VERSION: u32 = 1;

/// What `checkpoints.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<Entry>,
}

/// How far one file has been delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Where the file was last seen (informational: identity is device, inode, fingerprint).
    pub path: PathBuf,
    /// The file system's device number.
    pub device: u64,
    /// The inode number.
    pub inode: u64,
    /// Hash of the first line (or first 256 bytes), hex: tells a reused inode apart.
    pub fingerprint: String,
    /// Byte offset up to which every line was delivered.
    pub offset: u64,
}

impl Entry {
    /// True when the entry describes this file.
    pub fn matches(&self, device: u64, inode: u64, fingerprint: u64) -> bool {
        self.device == device && self.inode == inode && self.fingerprint == hex(fingerprint)
    }

    /// The identity of the file it describes (without the fingerprint).
    pub fn id(&self) -> FileId {
        FileId {
            device: self.device,
            inode: self.inode,
        }
    }
}

/// The fingerprint in the form the checkpoint file stores.
pub fn hex(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// Loads the checkpoints; none yet is an empty list, a corrupt file is an error (a silent
/// reset would re-send everything).
pub fn load(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let loaded: Option<CheckpointFile> = siemflow_core::state::load_json(path)
        .with_context(|| format!("cannot read the checkpoints in {}", path.display()))?;
    match loaded {
        None => Ok(Vec::new()),
        Some(file) if file.version == FORMAT_VERSION => Ok(file.files),
        Some(file) => anyhow::bail!(
            "{} has checkpoint format version {}, this build reads version {FORMAT_VERSION}",
            path.display(),
            file.version
        ),
    }
}

/// Writes the checkpoints atomically and durably.
pub fn save(path: &Path, files: Vec<Entry>) -> anyhow::Result<()> {
    let file = CheckpointFile {
        version: FORMAT_VERSION,
        files,
    };
    siemflow_core::state::save_json(path, &file)
        .with_context(|| format!("cannot write the checkpoints to {}", path.display()))
}

/// The fingerprint of a file whose first bytes are `head`: a hash of the first line
/// (newline included) or of the first 256 bytes. `None` while the file is too short to
/// tell (no newline yet and fewer than 256 bytes).
pub fn fingerprint(head: &[u8]) -> Option<u64> {
    let head = &head[..head.len().min(FINGERPRINT_BYTES)];
    let identifying = match memchr::memchr(b'\n', head) {
        Some(newline) => &head[..=newline],
        None if head.len() == FINGERPRINT_BYTES => head,
        None => return None,
    };
    Some(fnv1a(identifying))
}

/// Reads the head of an open file and fingerprints it.
pub fn fingerprint_file(file: &File) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read_at(&mut head[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(fingerprint(&head[..filled]))
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_needs_a_line_or_256_bytes() {
        assert_eq!(fingerprint(b""), None);
        assert_eq!(fingerprint(b"partial"), None);
        assert_eq!(fingerprint(b"a\nb"), fingerprint(b"a\nc"));
        assert_ne!(fingerprint(b"a\n"), fingerprint(b"b\n"));
        assert!(fingerprint(&[b'x'; 300]).is_some());
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        assert_eq!(load(&path).expect("none yet"), Vec::new());
        let entry = Entry {
            path: "/x".into(),
            device: 1,
            inode: 2,
            fingerprint: hex(3),
            offset: 4,
        };
        save(&path, vec![entry.clone()]).expect("save");
        assert_eq!(load(&path).expect("load"), vec![entry]);
    }
}
