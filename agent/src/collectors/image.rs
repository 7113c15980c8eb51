//! `image`: the container images of the node's runtime, with where they come from
//! (registry address and its type).
use std::collections::BTreeMap;

use census_proto::v1::{Image, record::Body};

use super::{CollectError, Collector, Context, Observation};
use crate::runtime::docker::DockerImage;

#[derive(Debug)]
pub struct ImageCollector;

impl Collector for ImageCollector {
    fn kind(&self) -> &'static str {
        "image"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut images: Vec<Image> = Vec::new();
        if let Some(inventory) = ctx.docker()? {
            images.extend(inventory.images.iter().filter_map(docker_image));
        }
        if let Some(inventory) = ctx.cri()? {
            // The same image in both stores is one image: reported once, as Docker's.
            let seen: std::collections::HashSet<String> =
                images.iter().map(|i| i.id.clone()).collect();
            images.extend(
                inventory
                    .images
                    .iter()
                    .filter(|image| !seen.contains(&image.image.id))
                    .map(|image| cri_image(&inventory.runtime, image)),
            );
        }
        Ok(images
            .into_iter()
            .map(|mut image| {
                image.labels = ctx.redactor.labels(std::mem::take(&mut image.labels));
                Observation::new(image.id.clone(), Body::Image(image))
            })
            .collect())
    }
}

fn docker_image(image: &DockerImage) -> Option<Image> {
    let inspect = &image.inspect;
    let id = inspect.id.clone()?;
    let labels: BTreeMap<String, String> = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .map(|labels| labels.into_iter().collect())
        .unwrap_or_default();
    Some(references_to_image(
        id,
        "docker",
        inspect.repo_tags.as_deref().unwrap_or_default(),
        inspect.repo_digests.as_deref().unwrap_or_default(),
        Image {
            size_bytes: inspect.size.unwrap_or_default().max(0) as u64,
            os: inspect.os.clone().unwrap_or_default(),
            arch: inspect.architecture.clone().unwrap_or_default(),
            variant: inspect.variant.clone().unwrap_or_default(),
            created: inspect.created.clone().unwrap_or_default(),
            author: inspect.author.clone().unwrap_or_default(),
            labels,
            layers: inspect
                .root_fs
                .as_ref()
                .and_then(|r| r.layers.as_ref())
                .map(|l| l.len() as u32)
                .unwrap_or(0),
            ..Image::default()
        },
    ))
}

fn cri_image(runtime: &str, image: &crate::runtime::cri::CriImage) -> Image {
    let cri = &image.image;
    let config = image.config.as_ref();
    let text = |pointer: &str| {
        config
            .and_then(|c| c.pointer(pointer))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let labels: BTreeMap<String, String> = config
        .and_then(|c| c.pointer("/config/Labels"))
        .and_then(|l| l.as_object())
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let layers = config
        .and_then(|c| c.pointer("/rootfs/diff_ids"))
        .and_then(|d| d.as_array())
        .map(|d| d.len() as u32)
        .unwrap_or(0);
    references_to_image(
        cri.id.clone(),
        runtime,
        &cri.repo_tags,
        &cri.repo_digests,
        Image {
            size_bytes: cri.size,
            os: text("/os"),
            arch: text("/architecture"),
            variant: text("/variant"),
            created: text("/created"),
            author: text("/author"),
            labels,
            layers,
            ..Image::default()
        },
    )
}

/// Fills the repository fields of `image` from its tags and digests.
fn references_to_image(
    id: String,
    runtime: &str,
    repo_tags: &[String],
    repo_digests: &[String],
    image: Image,
) -> Image {
    let tags: Vec<Reference> = repo_tags
        .iter()
        .filter_map(|r| Reference::parse(r))
        .collect();
    let digests: Vec<Reference> = repo_digests
        .iter()
        .filter_map(|r| Reference::parse(r))
        .collect();
    let primary = tags.first().or(digests.first());
    let (repository_type, provider) = match primary {
        Some(reference) => classify(&reference.registry),
        None => ("local", ""),
    };
    Image {
        id,
        runtime: runtime.to_string(),
        repository: primary.map(|r| r.registry.clone()).unwrap_or_default(),
        repository_type: repository_type.into(),
        provider: provider.into(),
        name: primary.map(|r| r.path.clone()).unwrap_or_default(),
        tags: tags
            .iter()
            .filter(|r| primary.is_some_and(|p| p.same_repository(r)))
            .filter_map(|r| r.tag.clone())
            .collect(),
        references: tags.iter().map(Reference::to_string).collect(),
        digests: digests.iter().map(Reference::to_string).collect(),
        ..image
    }
}

/// An image reference: `REGISTRY/PATH[:TAG][@DIGEST]`, normalized as Docker does
/// (`nginx` is `docker.io/library/nginx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(reference: &str) -> Option<Reference> {
        if reference.is_empty() || reference.starts_with("<none>") {
            return None;
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_string())),
            None => (reference, None),
        };
        // A tag is after the last ':' that follows the last '/' (a registry port is not).
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(colon) => (
                &rest[..last_slash + colon],
                Some(rest[last_slash + colon + 1..].to_string()),
            ),
            None => (rest, None),
        };
        let (first, remainder) = name.split_once('/').unwrap_or(("", name));
        let explicit_registry = first.contains(['.', ':']) || first == "localhost";
        let (registry, path) = if explicit_registry {
            (first.to_string(), remainder.to_string())
        } else {
            ("docker.io".to_string(), name.to_string())
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            _ => registry,
        };
        let path = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.is_empty() {
            return None;
        }
        Some(Reference {
            registry,
            path,
            tag,
            digest,
        })
    }

    fn same_repository(&self, other: &Reference) -> bool {
        self.registry == other.registry && self.path == other.path
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Cloud registries by host pattern: (suffix or exact host, provider).
const CLOUD_REGISTRIES: &[(&str, &str)] = &[
    (".amazonaws.com", "aws"),
    ("public.ecr.aws", "aws"),
    ("gcr.io", "google"),
    (".gcr.io", "google"),
    (".pkg.dev", "google"),
    (".azurecr.io", "azure"),
    ("mcr.microsoft.com", "azure"),
    ("ccr.ccs.tencentyun.com", "tencent"),
    (".tencentcloudcr.com", "tencent"),
    (".tencentyun.com", "tencent"),
    (".aliyuncs.com", "alibaba"),
    (".ocir.io", "oracle"),
    ("icr.io", "ibm"),
    (".icr.io", "ibm"),
    ("ghcr.io", "github"),
    ("quay.io", "red_hat"),
    ("registry.gitlab.com", "gitlab"),
];

/// Domains of private networks.
const PRIVATE_SUFFIXES: &[&str] = &[
    ".local",
    ".internal",
    ".lan",
    ".corp",
    ".intranet",
    ".svc",
    ".home.arpa",
];

/// The repository type of a registry address: `docker_hub`, `cloud` (with its
/// provider), `private` (an IP address, localhost, an explicit port or a private
/// domain) or `other`.
pub fn classify(registry: &str) -> (&'static str, &'static str) {
    if registry == "docker.io" {
        return ("docker_hub", "");
    }
    let host = registry
        .rsplit_once(':')
        .map(|(host, _)| host)
        .unwrap_or(registry);
    for (pattern, provider) in CLOUD_REGISTRIES {
        let matches = if pattern.starts_with('.') {
            host.ends_with(pattern)
        } else {
            host == *pattern
        };
        if matches {
            return ("cloud", provider);
        }
    }
    let is_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok();
    if is_ip
        || host == "localhost"
        || registry.contains(':')
        || PRIVATE_SUFFIXES.iter().any(|s| host.ends_with(s))
        || !host.contains('.')
    {
        return ("private", "");
    }
    ("other", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_docker() {
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("docker.io", "library/nginx", None)
        );
        assert_eq!(
            Reference::parse("nginx:1.25").unwrap().to_string(),
            "docker.io/library/nginx:1.25"
        );
        let r = Reference::parse("localhost:5000/team/app:v2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("localhost:5000", "team/app", Some("v2"))
        );
        let r = Reference::parse("ghcr.io/owner/tool@sha256:abcd").unwrap();
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_deref()),
            (None, Some("sha256:abcd"))
        );
        assert_eq!(
            Reference::parse("bitnami/redis:7").unwrap().path,
            "bitnami/redis"
        );
        assert_eq!(Reference::parse("<none>:<none>"), None);
    }

    #[test]
    fn registries_are_classified_by_address() {
        assert_eq!(classify("docker.io"), ("docker_hub", ""));
        assert_eq!(
            classify("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            ("cloud", "aws")
        );
        assert_eq!(classify("europe-west1-docker.pkg.dev"), ("cloud", "google"));
        assert_eq!(classify("myteam.azurecr.io"), ("cloud", "azure"));
        assert_eq!(classify("ccr.ccs.tencentyun.com"), ("cloud", "tencent"));
        assert_eq!(
            classify("registry.cn-hangzhou.aliyuncs.com"),
            ("cloud", "alibaba")
        );
        assert_eq!(classify("ghcr.io"), ("cloud", "github"));
        assert_eq!(classify("localhost:5000"), ("private", ""));
        assert_eq!(classify("10.0.0.5:443"), ("private", ""));
        assert_eq!(classify("harbor.corp"), ("private", ""));
        assert_eq!(classify("registry.example.com"), ("other", ""));
    }
}
