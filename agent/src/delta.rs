//! What a sync round sends: the whole state (snapshot) or only what changed since the
//! collector last acked, cut into batches under a size bound.
use std::collections::BTreeMap;

use census_proto::v1::{Batch, KindChanges, KindChecksum, Record};
use census_proto::{FINGERPRINT_LEN, KindDigest};
use prost::Message;

use crate::scan::Scan;

/// Per kind, key -> fingerprint of the state the collector holds once every spooled
/// batch is applied. Rounds are planned against it; a kind missing here is sent whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planned {
    pub kinds: BTreeMap<String, BTreeMap<String, [u8; FINGERPRINT_LEN]>>,
}

impl Planned {
    /// Forgets `kinds` (all of them when empty): the next round sends them whole.
    pub fn forget(&mut self, kinds: &[String]) {
        if kinds.is_empty() {
            self.kinds.clear();
        } else {
            self.kinds.retain(|kind, _| !kinds.contains(kind));
        }
    }

    /// The per-kind checksums of this state.
    pub fn checksums(&self) -> Vec<KindChecksum> {
        self.kinds
            .iter()
            .map(|(kind, records)| {
                let mut digest = KindDigest::default();
                for (key, fingerprint) in records {
                    digest.add(key, fingerprint);
                }
                KindChecksum {
                    kind: kind.clone(),
                    count: digest.count,
                    digest: digest.digest,
                }
            })
            .collect()
    }

    /// The state as bytes for the state dir: one CRC-checked frame per kind.
    pub fn encode(&self) -> Vec<u8> {
        let batch = Batch {
            seq: 0,
            kinds: self
                .kinds
                .iter()
                .map(|(kind, records)| KindChanges {
                    kind: kind.clone(),
                    upserts: records
                        .iter()
                        .map(|(key, fingerprint)| Record {
                            key: key.clone(),
                            fingerprint: fingerprint.to_vec(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        };
        crate::spool::encode(&batch)
    }

    /// The state back from [`Planned::encode`]'s bytes; `None` if any of it is damaged.
    pub fn decode(bytes: &[u8]) -> Option<Planned> {
        let read = crate::spool::decode(0, bytes);
        if read.corrupt > 0 {
            return None;
        }
        let mut planned = Planned::default();
        for changes in read.batch.kinds {
            let records = planned.kinds.entry(changes.kind).or_default();
            for record in changes.upserts {
                records.insert(record.key, record.fingerprint.try_into().ok()?);
            }
        }
        Some(planned)
    }
}

/// Bounds on one batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_changes: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_changes: 2_000,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The batches of one round and the acked state once all of them are acked.
#[derive(Debug)]
pub struct Round {
    pub batches: Vec<Batch>,
    pub next: Planned,
}

/// Changes of one kind before they are cut into batches.
struct Pending {
    kind: String,
    upserts: Vec<Record>,
    removes: Vec<String>,
    /// The changes are the kind's whole state: the collector drops everything else.
    complete: bool,
}

/// Plans a round. Without `acked` (a new stream) every kind is sent whole; otherwise
/// each kind sends its upserts and removes against `acked`, and a kind not acked yet
/// is sent whole. A kind whose collector failed sends nothing and keeps its acked state.
pub fn plan_round(acked: Option<&Planned>, scan: &Scan, first_seq: u64, limits: Limits) -> Round {
    let mut next = acked.cloned().unwrap_or_default();
    let mut pending = Vec::new();
    for kind_scan in &scan.kinds {
        let Ok(observations) = &kind_scan.result else {
            continue;
        };
        let kind = kind_scan.kind.to_string();
        let current: BTreeMap<String, [u8; FINGERPRINT_LEN]> = observations
            .iter()
            .map(|o| (o.key.clone(), o.fingerprint))
            .collect();
        let previous = acked.and_then(|a| a.kinds.get(&kind));
        // Volatile-only kinds (resource use) keep one fingerprint: send their values each round.
        let always_sent = census_proto::ALWAYS_SENT_KINDS.contains(&kind.as_str());
        let to_record = |o: &crate::collectors::Observation| Record {
            key: o.key.clone(),
            fingerprint: o.fingerprint.to_vec(),
            observed_at_ms: scan.observed_at_ms,
            body: Some(o.body.clone()),
        };
        let changes = match previous {
            None => Pending {
                kind: kind.clone(),
                upserts: observations.iter().map(to_record).collect(),
                removes: Vec::new(),
                complete: true,
            },
            Some(previous) => Pending {
                kind: kind.clone(),
                upserts: observations
                    .iter()
                    .filter(|o| always_sent || previous.get(&o.key) != Some(&o.fingerprint))
                    .map(to_record)
                    .collect(),
                removes: previous
                    .keys()
                    .filter(|k| !current.contains_key(*k))
                    .cloned()
                    .collect(),
                complete: false,
            },
        };
        if changes.complete || !changes.upserts.is_empty() || !changes.removes.is_empty() {
            pending.push(changes);
        }
        next.kinds.insert(kind, current);
    }
    Round {
        batches: cut(pending, first_seq, limits),
        next,
    }
}

/// Cuts the changes into batches of at most `limits` each (a single record larger than
/// `max_bytes` travels alone). Every complete kind carries `complete_from_seq =
/// first_seq` on its entry in the batch holding its last change: all of the round's
/// batches lie in `first_seq..`, and every earlier record of the kind in `..first_seq`.
fn cut(pending: Vec<Pending>, first_seq: u64, limits: Limits) -> Vec<Batch> {
    let mut batches: Vec<Batch> = Vec::new();
    let mut open = Batch {
        seq: first_seq,
        kinds: Vec::new(),
    };
    let (mut open_changes, mut open_bytes) = (0, 0);
    for changes in pending {
        let empty_entry = || KindChanges {
            kind: changes.kind.clone(),
            ..Default::default()
        };
        let mut entry = empty_entry();
        let upserts = changes.upserts.into_iter().map(Change::Upsert);
        let removes = changes.removes.into_iter().map(Change::Remove);
        for change in upserts.chain(removes) {
            let size = change.encoded_len();
            if open_changes > 0
                && (open_changes >= limits.max_changes || open_bytes + size > limits.max_bytes)
            {
                if !entry.upserts.is_empty() || !entry.removes.is_empty() {
                    open.kinds
                        .push(std::mem::replace(&mut entry, empty_entry()));
                }
                let next = Batch {
                    seq: open.seq + 1,
                    kinds: Vec::new(),
                };
                batches.push(std::mem::replace(&mut open, next));
                (open_changes, open_bytes) = (0, 0);
            }
            match change {
                Change::Upsert(record) => entry.upserts.push(record),
                Change::Remove(key) => entry.removes.push(key),
            }
            open_changes += 1;
            open_bytes += size;
        }
        if changes.complete {
            entry.complete_from_seq = first_seq;
        }
        open.kinds.push(entry);
    }
    if !open.kinds.is_empty() {
        batches.push(open);
    }
    batches
}

// Each change is moved once, from its kind's list into a batch: boxing would only add
// an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Change {
    Upsert(Record),
    Remove(String),
}

impl Change {
    /// Bytes the change adds to a batch, framing included.
    fn encoded_len(&self) -> usize {
        match self {
            Change::Upsert(record) => record.encoded_len() + 4,
            Change::Remove(key) => key.len() + 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::{CollectError, Observation};
    use crate::scan::KindScan;
    use census_proto::v1::KernelModule;
    use census_proto::v1::record::Body;
    use proptest::prelude::*;
    use std::time::Duration;

    fn module(name: &str, size: u64) -> Observation {
        Observation::new(
            name,
            Body::KernelModule(KernelModule {
                name: name.into(),
                size,
                ..Default::default()
            }),
        )
    }

    fn kind(kind: &'static str, observations: Vec<Observation>) -> KindScan {
        KindScan {
            kind,
            result: Ok(observations),
            elapsed: Duration::ZERO,
        }
    }

    fn failed(kind: &'static str) -> KindScan {
        KindScan {
            kind,
            result: Err(CollectError::List {
                path: "/proc".into(),
                source: std::io::Error::other("unreadable"),
            }),
            elapsed: Duration::ZERO,
        }
    }

    fn scan(kinds: Vec<KindScan>) -> Scan {
        Scan {
            observed_at_ms: 1_700_000_000_000,
            kinds,
        }
    }

    fn keys(batch: &Batch, kind: &str) -> (Vec<String>, Vec<String>, u64) {
        let entries: Vec<_> = batch.kinds.iter().filter(|k| k.kind == kind).collect();
        (
            entries
                .iter()
                .flat_map(|k| k.upserts.iter().map(|r| r.key.clone()))
                .collect(),
            entries.iter().flat_map(|k| k.removes.clone()).collect(),
            entries
                .iter()
                .map(|k| k.complete_from_seq)
                .max()
                .unwrap_or(0),
        )
    }

    #[test]
    fn a_new_stream_sends_every_kind_whole_even_an_empty_one() {
        let round = plan_round(
            None,
            &scan(vec![
                kind("kernel_module", vec![module("a", 1), module("b", 2)]),
                kind("process", vec![]),
            ]),
            7,
            Limits::default(),
        );
        assert_eq!(round.batches.len(), 1);
        assert_eq!(round.batches[0].seq, 7);
        assert_eq!(
            keys(&round.batches[0], "kernel_module"),
            (vec!["a".into(), "b".into()], vec![], 7)
        );
        assert_eq!(keys(&round.batches[0], "process"), (vec![], vec![], 7));
        assert_eq!(round.next.kinds["kernel_module"].len(), 2);
    }

    #[test]
    fn later_rounds_send_only_changes() {
        let first = plan_round(
            None,
            &scan(vec![kind(
                "kernel_module",
                vec![module("a", 1), module("b", 2)],
            )]),
            1,
            Limits::default(),
        );
        let changed = scan(vec![kind(
            "kernel_module",
            vec![module("a", 1), module("b", 3), module("c", 4)],
        )]);
        let round = plan_round(Some(&first.next), &changed, 2, Limits::default());
        assert_eq!(
            keys(&round.batches[0], "kernel_module"),
            (vec!["b".into(), "c".into()], vec![], 0)
        );

        let removed = scan(vec![kind("kernel_module", vec![module("c", 4)])]);
        let round = plan_round(Some(&round.next), &removed, 3, Limits::default());
        assert_eq!(
            keys(&round.batches[0], "kernel_module"),
            (vec![], vec!["a".into(), "b".into()], 0)
        );

        let unchanged = plan_round(Some(&round.next), &removed, 4, Limits::default());
        assert!(
            unchanged.batches.is_empty(),
            "an unchanged node sends nothing"
        );
    }

    #[test]
    fn volatile_kinds_are_sent_every_round() {
        use census_proto::v1::ResourceUsage;
        let usage = |load: f64| {
            let body = Body::ResourceUsage(ResourceUsage {
                load_1: load,
                ..Default::default()
            });
            kind(
                "resource_usage",
                vec![Observation::new("resource_usage", body)],
            )
        };
        let first = plan_round(None, &scan(vec![usage(0.5)]), 1, Limits::default());
        let second = plan_round(
            Some(&first.next),
            &scan(vec![usage(3.5)]),
            2,
            Limits::default(),
        );
        assert_eq!(
            keys(&second.batches[0], "resource_usage").0,
            ["resource_usage"]
        );
    }

    #[test]
    fn a_failed_collector_removes_nothing_and_keeps_its_state() {
        let first = plan_round(
            None,
            &scan(vec![kind("kernel_module", vec![module("a", 1)])]),
            1,
            Limits::default(),
        );
        let round = plan_round(
            Some(&first.next),
            &scan(vec![failed("kernel_module")]),
            2,
            Limits::default(),
        );
        assert!(round.batches.is_empty());
        assert_eq!(round.next, first.next);
        // Never acked because it failed during the snapshot: sent whole once it works.
        let fresh = plan_round(None, &scan(vec![failed("process")]), 1, Limits::default());
        let round = plan_round(
            Some(&fresh.next),
            &scan(vec![kind("kernel_module", vec![module("a", 1)])]),
            2,
            Limits::default(),
        );
        assert_eq!(
            keys(&round.batches[0], "kernel_module"),
            (vec!["a".into()], vec![], 2)
        );
    }

    #[test]
    fn a_kind_not_scanned_removes_nothing_and_keeps_its_state() {
        // A collector disabled by the console is left out of the scan: its records
        // stay at the collector as last sent, and come back as changes once enabled.
        let first = plan_round(
            None,
            &scan(vec![
                kind("kernel_module", vec![module("a", 1)]),
                kind("process", vec![]),
            ]),
            1,
            Limits::default(),
        );
        let narrowed = plan_round(
            Some(&first.next),
            &scan(vec![kind("process", vec![])]),
            2,
            Limits::default(),
        );
        assert!(narrowed.batches.is_empty());
        assert_eq!(narrowed.next, first.next);
        let enabled = plan_round(
            Some(&narrowed.next),
            &scan(vec![kind("kernel_module", vec![module("b", 1)])]),
            2,
            Limits::default(),
        );
        assert_eq!(
            keys(&enabled.batches[0], "kernel_module"),
            (vec!["b".into()], vec!["a".into()], 0)
        );
    }

    proptest! {
        /// However the limits cut a round, every change travels exactly once, in
        /// consecutive seqs, within the bounds, and each complete kind is marked once
        /// in the batch holding its last change.
        #[test]
        fn batches_respect_limits_and_carry_everything(
            sizes in proptest::collection::vec(0usize..40, 1..4),
            max_changes in 1usize..50,
            max_bytes in 1usize..4000,
        ) {
            let kinds = ["kernel_module", "process", "package"];
            let scans = sizes.iter().zip(kinds).map(|(n, k)| {
                kind(k, (0..*n).map(|i| module(&format!("{k}-{i}"), i as u64)).collect())
            }).collect();
            let round = plan_round(None, &scan(scans), 10, Limits { max_changes, max_bytes });
            for (i, batch) in round.batches.iter().enumerate() {
                prop_assert_eq!(batch.seq, 10 + i as u64);
                let changes: usize = batch.kinds.iter().map(|k| k.upserts.len() + k.removes.len()).sum();
                prop_assert!(changes <= max_changes);
                prop_assert!(changes == 1 || batch.encoded_len() <= max_bytes + 64 * batch.kinds.len());
            }
            for (n, k) in sizes.iter().zip(kinds) {
                let sent: Vec<String> = round.batches.iter().flat_map(|b| keys(b, k).0).collect();
                let expected: Vec<String> = (0..*n).map(|i| format!("{k}-{i}")).collect();
                prop_assert_eq!(sent, expected);
                let marks: Vec<(u64, u64)> = round.batches.iter()
                    .flat_map(|b| b.kinds.iter().filter(|e| e.kind == k && e.complete_from_seq != 0).map(|e| (b.seq, e.complete_from_seq)))
                    .collect();
                prop_assert_eq!(marks.len(), 1);
                let last_with_kind = round.batches.iter().filter(|b| b.kinds.iter().any(|e| e.kind == k)).map(|b| b.seq).max();
                prop_assert_eq!(Some(marks[0].0), last_with_kind);
                prop_assert_eq!(marks[0].1, 10);
            }
        }
    }
}
