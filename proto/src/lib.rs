//! census.v1 wire protocol: the generated messages and services, plus what both ends
//! need to agree on about records: kind names, volatile fields and fingerprints.

pub mod v1 {
    tonic::include_proto!("census.v1");
}

/// The read-only subset of the Kubernetes CRI (runtime.v1) census uses.
pub mod cri {
    tonic::include_proto!("runtime.v1");
}

use sha2::{Digest, Sha256};
use v1::record::Body;

/// Length in bytes of a record fingerprint (SHA-256).
pub const FINGERPRINT_LEN: usize = 32;

/// Metadata key on an UNAUTHENTICATED status that tells the agent its credential is
/// no good any more (revoked, unknown) and it should enroll again.
pub const REENROLL_METADATA: &str = "census-reenroll";

/// Default largest encoded census.v1 message either end accepts.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Declares, once, the kind name of every record body variant.
macro_rules! kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// Every record kind this version of the protocol carries a body for.
        pub const KINDS: &[&str] = &[$($name),*];

        impl Body {
            /// The kind name of this body, as used in `KindChanges.kind`, storage and the HTTP API.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Body::$variant(_) => $name,)*
                }
            }
        }

        impl serde::Serialize for Fields<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    $(Body::$variant(b) => b.serialize(serializer),)*
                }
            }
        }
    };
}

kinds! {
    Host => "host",
    Process => "process",
    ListeningPort => "listening_port",
    Package => "package",
    KernelModule => "kernel_module",
    ResourceUsage => "resource_usage",
    Account => "account",
    Group => "group",
    Database => "database",
    WebService => "web_service",
    WebFramework => "web_framework",
    WebSite => "web_site",
    WebApplication => "web_application",
    StartupService => "startup_service",
    ScheduledTask => "scheduled_task",
    EnvironmentVariable => "environment_variable",
    Image => "image",
    ImageHistory => "image_history",
    Container => "container",
}

/// Kinds whose every field is volatile: their fingerprint never changes, so agents send
/// them every interval and collectors refresh their fields.
pub const ALWAYS_SENT_KINDS: &[&str] = &["resource_usage"];

impl Body {
    /// The body with its volatile fields (those that change without the asset
    /// changing: memory use, CPU time, reference counts) reset to their defaults.
    pub fn canonical(&self) -> Body {
        let mut body = self.clone();
        match &mut body {
            Body::Process(p) => {
                p.state.clear();
                p.threads = 0;
                p.rss_bytes = 0;
                p.cpu_time_ms = 0;
            }
            Body::KernelModule(m) => m.refcount = 0,
            Body::ResourceUsage(usage) => *usage = Default::default(),
            // "Up 3 minutes" changes every second.
            Body::Container(container) => container.status.clear(),
            _ => {}
        }
        body
    }

    /// SHA-256 of the kind name and the protobuf encoding of [`Body::canonical`].
    ///
    /// The encoding is deterministic: prost writes fields in field-number order and
    /// maps are generated as `BTreeMap`s.
    pub fn fingerprint(&self) -> [u8; FINGERPRINT_LEN] {
        let mut hasher = Sha256::new();
        hasher.update(self.kind().as_bytes());
        hasher.update([0]);
        let mut encoded = Vec::new();
        self.canonical().encode(&mut encoded);
        hasher.update(&encoded);
        hasher.finalize().into()
    }

    /// The body's fields as a JSON object.
    pub fn fields_json(&self) -> serde_json::Value {
        // Serializing plain structs of strings, numbers and lists cannot fail.
        serde_json::to_value(Fields(self)).unwrap_or(serde_json::Value::Null)
    }
}

/// Order-independent digest of a set of (key, fingerprint) pairs, as `KindChecksum`
/// carries it: pairs may be added in any order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindDigest {
    pub count: u64,
    pub digest: u64,
}

impl KindDigest {
    /// Adds a pair (each key once).
    pub fn add(&mut self, key: &str, fingerprint: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(fingerprint);
        let hash: [u8; 32] = hasher.finalize().into();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        self.digest ^= u64::from_le_bytes(first);
        self.count += 1;
    }
}

/// Serializes a record body as its fields alone, in declaration order.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a Body);

#[cfg(test)]
mod tests {
    use super::v1::{KernelModule, Process};
    use super::*;

    #[test]
    fn kind_digests_ignore_order_and_see_every_pair() {
        let mut a = KindDigest::default();
        a.add("k1", &[1; 32]);
        a.add("k2", &[2; 32]);
        let mut b = KindDigest::default();
        b.add("k2", &[2; 32]);
        b.add("k1", &[1; 32]);
        assert_eq!(a, b);
        let mut c = KindDigest::default();
        c.add("k1", &[1; 32]);
        c.add("k2", &[3; 32]);
        assert_ne!(a.digest, c.digest);
        assert_eq!(a.count, 2);
    }

    #[test]
    fn volatile_fields_do_not_change_the_fingerprint() {
        let a = Body::Process(Process {
            pid: 7,
            name: "sshd".into(),
            rss_bytes: 1,
            cpu_time_ms: 2,
            state: "S".into(),
            threads: 1,
            ..Default::default()
        });
        let mut b = a.clone();
        if let Body::Process(p) = &mut b {
            p.rss_bytes = 99_999;
            p.cpu_time_ms = 12_345;
            p.state = "R".into();
            p.threads = 8;
        }
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn stable_fields_change_the_fingerprint() {
        let a = Body::KernelModule(KernelModule {
            name: "ext4".into(),
            size: 1,
            ..Default::default()
        });
        let b = Body::KernelModule(KernelModule {
            name: "ext4".into(),
            size: 2,
            ..Default::default()
        });
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        if let Body::KernelModule(m) = &mut c {
            m.refcount = 40;
        }
        assert_eq!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn same_fields_of_different_kinds_differ() {
        let empty_host = Body::Host(Default::default());
        let empty_package = Body::Package(Default::default());
        assert_ne!(empty_host.fingerprint(), empty_package.fingerprint());
    }

    #[test]
    fn resource_usage_never_changes_its_fingerprint() {
        let idle = Body::ResourceUsage(v1::ResourceUsage {
            load_1: 0.1,
            ..Default::default()
        });
        let busy = Body::ResourceUsage(v1::ResourceUsage {
            load_1: 7.5,
            cpu_usage_percent: Some(99.0),
            memory_used_bytes: 1 << 30,
            ..Default::default()
        });
        assert_eq!(idle.fingerprint(), busy.fingerprint());
        assert!(ALWAYS_SENT_KINDS.iter().all(|kind| KINDS.contains(kind)));
    }

    #[test]
    fn fields_render_as_a_json_object() {
        let body = Body::KernelModule(KernelModule {
            name: "nf_tables".into(),
            used_by: vec!["nft_chain_nat".into()],
            ..Default::default()
        });
        let json = body.fields_json();
        assert_eq!(json["name"], "nf_tables");
        assert_eq!(json["used_by"][0], "nft_chain_nat");
    }
}
