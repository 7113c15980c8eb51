//! `package`: installed software, one cataloger per ecosystem. Adding an ecosystem =
//! a new file here + one line in [`PackageCollector::default`].
use census_proto::v1::{Package, record::Body};

use super::{CollectError, Collector, Context, Observation};

pub mod dpkg;

/// One package ecosystem's database.
pub trait Cataloger: Send + Sync {
    /// Ecosystem name as in `Package.ecosystem`, e.g. `"deb"`.
    fn ecosystem(&self) -> &'static str;
    /// Every package of this ecosystem on the host; empty when the host has none.
    fn catalog(&self, ctx: &Context) -> Result<Vec<Package>, CollectError>;
}

pub struct PackageCollector {
    catalogers: Vec<Box<dyn Cataloger>>,
}

impl std::fmt::Debug for PackageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ecosystems: Vec<_> = self.catalogers.iter().map(|c| c.ecosystem()).collect();
        f.debug_struct("PackageCollector")
            .field("ecosystems", &ecosystems)
            .finish()
    }
}

impl Default for PackageCollector {
    fn default() -> Self {
        PackageCollector {
            catalogers: vec![Box::new(dpkg::DpkgCataloger)],
        }
    }
}

impl Collector for PackageCollector {
    fn kind(&self) -> &'static str {
        "package"
    }

    /// A cataloger that fails makes the whole kind fail: reporting the other
    /// ecosystems alone would read as "those packages were removed".
    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut observations = Vec::new();
        for cataloger in &self.catalogers {
            for package in cataloger.catalog(ctx)? {
                let key = package_key(&package);
                observations.push(Observation::new(key, Body::Package(package)));
            }
        }
        Ok(observations)
    }
}

/// `deb/libc6/amd64`.
pub fn package_key(package: &Package) -> String {
    format!("{}/{}/{}", package.ecosystem, package.name, package.arch)
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
    fn purl_components_are_encoded() {
        assert_eq!(purl_encode("1:2.3~rc1+b1"), "1%3A2.3~rc1+b1");
        assert_eq!(purl_encode("a b/c"), "a%20b%2Fc");
    }
}
