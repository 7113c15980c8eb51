//! The agent's disk spool: every batch is written here (and fsynced) before it is
//! sent, and removed only once the collector acks it, so a crash, a restart or an
//! outage of the collector loses nothing that was observed.
//!
//! One file per batch, `spool/SEQ.batch`, written through a temporary file and a
//! rename. A file is a magic line and then frames `[len u32][crc32 u32][payload]`
//! (little endian): the batch header, then one frame per change (an upsert, a
//! remove, or a kind's completeness mark). A frame whose checksum fails is skipped
//! and counted; the rest of the batch is still delivered.
//!
//! The spool is bounded: a round that does not fit is not written at all (the
//! caller counts it as shed and schedules a full resync).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use census_proto::v1::{Batch, KindChanges};
use prost::Message;

use crate::state::{StateError, write_synced};

const MAGIC: &[u8] = b"census-spool-v1\n";
const EXTENSION: &str = "batch";
/// Largest frame accepted when reading back (a batch is at most a few MB).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A batch read back, with the frames that failed their checksum.
#[derive(Debug)]
pub struct Spooled {
    pub batch: Batch,
    pub corrupt: u64,
}

/// The spool directory and what it holds.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// seq -> file size.
    entries: BTreeMap<u64, u64>,
    bytes: u64,
}

/// A round did not fit.
#[derive(Debug, thiserror::Error)]
#[error("spool full: {needed} more bytes needed, {used} of {max} used")]
pub struct Full {
    pub needed: u64,
    pub used: u64,
    pub max: u64,
}

impl Spool {
    /// Opens (creating) `dir`, dropping temporary files of an interrupted write.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, StateError> {
        let dir = dir.into();
        let io = |source| StateError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut entries = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let seq = name
                .strip_suffix(&format!(".{EXTENSION}"))
                .and_then(|s| s.parse::<u64>().ok());
            match seq {
                Some(seq) => {
                    let size = entry.metadata().map_err(io)?.len();
                    entries.insert(seq, size);
                }
                None => {
                    tracing::warn!(path = %path.display(), "ignoring a stray file in the spool")
                }
            }
        }
        let bytes = entries.values().sum();
        Ok(Spool {
            dir,
            max_bytes,
            entries,
            bytes,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
    }

    /// The spooled seqs above `after`, in order.
    pub fn seqs_after(&self, after: u64) -> impl Iterator<Item = u64> + '_ {
        self.entries.range(after + 1..).map(|(seq, _)| *seq)
    }

    /// Writes every batch of a round, or none of them if they do not fit.
    pub fn append(&mut self, batches: &[Batch]) -> Result<Result<(), Full>, StateError> {
        let encoded: Vec<(u64, Vec<u8>)> = batches.iter().map(|b| (b.seq, encode(b))).collect();
        let needed: u64 = encoded.iter().map(|(_, bytes)| bytes.len() as u64).sum();
        if self.bytes + needed > self.max_bytes {
            return Ok(Err(Full {
                needed,
                used: self.bytes,
                max: self.max_bytes,
            }));
        }
        for (seq, bytes) in encoded {
            let path = self.path(seq);
            write_synced(&path, &path.with_extension("tmp"), &bytes)?;
            self.bytes += bytes.len() as u64;
            if let Some(previous) = self.entries.insert(seq, bytes.len() as u64) {
                self.bytes -= previous;
            }
        }
        // The renames are durable once the directory is.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StateError::Io {
                path: self.dir.clone(),
                source,
            })?;
        Ok(Ok(()))
    }

    /// Reads batch `seq` back, skipping (and counting) frames that fail their checksum.
    pub fn read(&self, seq: u64) -> Result<Spooled, StateError> {
        let path = self.path(seq);
        let bytes = std::fs::read(&path).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(decode(seq, &bytes))
    }

    /// Removes every batch up to and including `seq` (acked, or applied already).
    pub fn remove_through(&mut self, seq: u64) {
        let done: Vec<u64> = self.entries.range(..=seq).map(|(s, _)| *s).collect();
        for seq in done {
            if let Err(error) = std::fs::remove_file(self.path(seq))
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(seq, %error, "cannot remove an acked batch from the spool");
            }
            if let Some(size) = self.entries.remove(&seq) {
                self.bytes -= size;
            }
        }
    }

    /// Drops everything (the collector is ahead of this spool's numbering).
    pub fn clear(&mut self) {
        self.remove_through(u64::MAX);
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{EXTENSION}"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A batch as spool bytes: header frame, then one frame per change.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    frame(
        &mut out,
        &Batch {
            seq: batch.seq,
            kinds: Vec::new(),
        }
        .encode_to_vec(),
    );
    for kind in &batch.kinds {
        let one = |changes: KindChanges| changes.encode_to_vec();
        for record in &kind.upserts {
            frame(
                &mut out,
                &one(KindChanges {
                    kind: kind.kind.clone(),
                    upserts: vec![record.clone()],
                    ..Default::default()
                }),
            );
        }
        for key in &kind.removes {
            frame(
                &mut out,
                &one(KindChanges {
                    kind: kind.kind.clone(),
                    removes: vec![key.clone()],
                    ..Default::default()
                }),
            );
        }
        // The kind's own frame, even when empty: it carries completeness and order.
        frame(
            &mut out,
            &one(KindChanges {
                kind: kind.kind.clone(),
                complete_from_seq: kind.complete_from_seq,
                ..Default::default()
            }),
        );
    }
    out
}

/// Spool bytes back into a batch. Change frames of one kind merge into one entry;
/// a frame that fails its checksum or does not decode is skipped and counted; a
/// damaged length ends the file (the rest counts as one corrupt frame).
pub fn decode(seq: u64, bytes: &[u8]) -> Spooled {
    let mut batch = Batch {
        seq,
        kinds: Vec::new(),
    };
    let mut corrupt = 0;
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return Spooled { batch, corrupt: 1 };
    };
    let mut first = true;
    while !rest.is_empty() {
        if rest.len() < 8 {
            corrupt += 1;
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default());
        if len > MAX_FRAME || rest.len() < 8 + len {
            corrupt += 1;
            break;
        }
        let payload = &rest[8..8 + len];
        rest = &rest[8 + len..];
        if crc32fast::hash(payload) != crc {
            corrupt += 1;
            first = false;
            continue;
        }
        if std::mem::take(&mut first) {
            // The header: the seq is the file's name, checked for agreement.
            match Batch::decode(payload) {
                Ok(header) if header.seq == seq => continue,
                _ => {
                    corrupt += 1;
                    continue;
                }
            }
        }
        let Ok(changes) = KindChanges::decode(payload) else {
            corrupt += 1;
            continue;
        };
        match batch.kinds.last_mut() {
            Some(entry) if entry.kind == changes.kind && entry.complete_from_seq == 0 => {
                entry.upserts.extend(changes.upserts);
                entry.removes.extend(changes.removes);
                entry.complete_from_seq = changes.complete_from_seq;
            }
            _ => batch.kinds.push(changes),
        }
    }
    Spooled { batch, corrupt }
}

#[cfg(test)]
mod tests {
    use super::*;
    use census_proto::v1::Record;

    fn batch(seq: u64) -> Batch {
        let record = |key: &str| Record {
            key: key.into(),
            fingerprint: vec![7; 32],
            observed_at_ms: 1,
            body: None,
        };
        Batch {
            seq,
            kinds: vec![
                KindChanges {
                    kind: "process".into(),
                    upserts: vec![record("1"), record("2")],
                    removes: vec!["3".into()],
                    complete_from_seq: 0,
                },
                KindChanges {
                    kind: "package".into(),
                    upserts: vec![record("deb/a")],
                    removes: vec![],
                    complete_from_seq: seq,
                },
                KindChanges {
                    kind: "account".into(),
                    upserts: vec![],
                    removes: vec!["root".into()],
                    complete_from_seq: 0,
                },
            ],
        }
    }

    #[test]
    fn batches_round_trip_through_the_spool_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path().join("spool"), 1 << 20).unwrap();
        spool.append(&[batch(5), batch(6)]).unwrap().unwrap();
        std::fs::write(dir.path().join("spool/00000000000000000007.tmp"), b"torn").unwrap();
        let mut spool = Spool::open(dir.path().join("spool"), 1 << 20).unwrap();
        assert_eq!(spool.seqs_after(0).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(spool.seqs_after(5).collect::<Vec<_>>(), [6]);
        let read = spool.read(6).unwrap();
        assert_eq!(read.corrupt, 0);
        assert_eq!(read.batch, batch(6));
        assert!(!dir.path().join("spool/00000000000000000007.tmp").exists());
        spool.remove_through(5);
        assert_eq!(spool.last_seq(), Some(6));
        assert_eq!(spool.len(), 1);
        spool.clear();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn a_round_that_does_not_fit_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(&batch(1)).len() as u64;
        let mut spool = Spool::open(dir.path(), one * 2).unwrap();
        spool.append(&[batch(1)]).unwrap().unwrap();
        let full = spool.append(&[batch(2), batch(3)]).unwrap().unwrap_err();
        assert_eq!((full.needed, full.used, full.max), (one * 2, one, one * 2));
        assert_eq!(spool.len(), 1);
        spool.append(&[batch(2)]).unwrap().unwrap();
        assert_eq!(spool.bytes(), one * 2);
    }

    #[test]
    fn a_damaged_frame_is_skipped_and_counted() {
        let good = encode(&batch(9));
        // Flip one byte inside the frame of upsert "2" of process.
        let at = good.windows(3).position(|w| w == b"\x0a\x012").unwrap() + 2;
        let mut bad = good.clone();
        bad[at] ^= 0xff;
        let read = decode(9, &bad);
        assert_eq!(read.corrupt, 1);
        let process = &read.batch.kinds[0];
        assert_eq!(
            process
                .upserts
                .iter()
                .map(|r| r.key.as_str())
                .collect::<Vec<_>>(),
            ["1"]
        );
        assert_eq!(process.removes, ["3"]);
        assert_eq!(read.batch.kinds[1].complete_from_seq, 9);

        let truncated = decode(9, &good[..good.len() - 3]);
        assert_eq!(truncated.corrupt, 1);
        assert_eq!(decode(9, b"garbage").corrupt, 1);
        // A header naming another seq does not pass for this one.
        assert_eq!(decode(8, &good).corrupt, 1);
    }
}
