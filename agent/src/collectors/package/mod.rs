//! `package`: installed software, one cataloger per ecosystem. Adding an ecosystem =
//! a new file here + one line in [`PackageCollector::default`].
use census_proto::v1::{Package, record::Body};

use super::{CollectError, Collector, Context, Observation};

pub mod apk;
pub mod discover;
pub mod dpkg;
pub mod go;
pub mod image;
pub mod jar;
pub mod npm;
pub mod python;
pub mod rpm;

/// One package ecosystem's database.
pub trait Cataloger: Send + Sync {
    /// Ecosystem name as in `Package.ecosystem`, e.g. `"deb"`.
    fn ecosystem(&self) -> &'static str;
    /// Every package of this ecosystem on the host; empty when the host has none.
    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError>;
}

/// Every cataloger, in the order they run.
fn catalogers() -> Vec<Box<dyn Cataloger>> {
    vec![
        Box::new(dpkg::DpkgCataloger),
        Box::new(rpm::RpmCataloger),
        Box::new(apk::ApkCataloger),
        Box::new(python::PythonCataloger),
        Box::new(npm::NpmCataloger),
        Box::new(jar::JarCataloger),
        Box::new(go::GoCataloger),
    ]
}

/// Catalogs every ecosystem. A cataloger that fails makes the whole kind fail:
/// reporting the other ecosystems alone would read as "those packages were removed".
pub fn gather(ctx: &Context) -> Result<Vec<Package>, CollectError> {
    let mut packages = Vec::new();
    for cataloger in catalogers() {
        packages.extend(cataloger.catalog(ctx)?);
    }
    Ok(packages)
}

#[derive(Debug)]
pub struct PackageCollector;

impl Collector for PackageCollector {
    fn kind(&self) -> &'static str {
        "package"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let host = ctx.packages()?;
        let images = ctx.image_packages()?;
        Ok(host
            .iter()
            .chain(images)
            .map(|package| Observation::new(package_key(package), Body::Package(package.clone())))
            .collect())
    }
}

/// `deb/libc6/amd64` for packages of a system database; `python/requests@/usr/lib/...`
/// for packages found at a location, where the same name may be installed many times.
/// Packages inside an image are keyed under the image: `sha256:.../deb/libc6/amd64`.
pub fn package_key(package: &Package) -> String {
    let key = if package.location.is_empty() {
        format!("{}/{}/{}", package.ecosystem, package.name, package.arch)
    } else {
        format!(
            "{}/{}@{}",
            package.ecosystem, package.name, package.location
        )
    };
    if package.image_id.is_empty() {
        key
    } else {
        format!("{}/{key}", package.image_id)
    }
}

/// A package URL: `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`, each part encoded
/// (a namespace keeps its `/` separators).
pub fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, String)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        let segments: Vec<String> = namespace.split('/').map(purl_encode).collect();
        out.push_str(&segments.join("/"));
        out.push('/');
    }
    out.push_str(&purl_encode(name));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&purl_encode(version));
    }
    let qualifiers: Vec<String> = qualifiers
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", purl_encode(value)))
        .collect();
    if !qualifiers.is_empty() {
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
    out
}

/// Percent-encodes a purl component, keeping the characters purl leaves readable.
pub fn purl_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b".-_~+".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_are_assembled_from_encoded_parts() {
        assert_eq!(
            purl(
                "golang",
                Some("github.com/docker"),
                "docker",
                "v24.0.7+incompatible",
                &[]
            ),
            "pkg:golang/github.com/docker/docker@v24.0.7+incompatible"
        );
        assert_eq!(
            purl("npm", Some("@babel"), "core", "7.0.0", &[]),
            "pkg:npm/%40babel/core@7.0.0"
        );
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                "2.36-9",
                &[("arch", "amd64".into()), ("epoch", String::new())]
            ),
            "pkg:deb/debian/libc6@2.36-9?arch=amd64"
        );
    }

    #[test]
    fn purl_components_are_encoded() {
        assert_eq!(purl_encode("1:2.3~rc1+b1"), "1%3A2.3~rc1+b1");
        assert_eq!(purl_encode("a b/c"), "a%20b%2Fc");
    }
}
