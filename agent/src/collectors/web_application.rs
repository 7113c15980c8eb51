//! `web_application`: applications deployed under servers' application roots: Tomcat
//! and Jetty webapps, and the document roots of web sites, with well-known applications
//! (WordPress, Drupal) recognised and versioned.
use std::collections::BTreeSet;
use std::path::Path;

use census_proto::v1::{WebApplication, record::Body};

use super::services::{Role, detect};
use super::{CollectError, Collector, Context, Observation};

/// Application roots of servers that are not running (or not started with their base).
const DEFAULT_WEBAPP_DIRS: &[(&str, &str)] = &[
    ("tomcat", "/var/lib/tomcat*/webapps"),
    ("jetty", "/var/lib/jetty*/webapps"),
];

#[derive(Debug)]
pub struct WebApplicationCollector;

impl Collector for WebApplicationCollector {
    fn kind(&self) -> &'static str {
        "web_application"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut dirs: BTreeSet<(&str, String)> = BTreeSet::new();
        // Without processes (an offline root) the default application roots still count.
        for service in detect(ctx, Role::WebServer).unwrap_or_default() {
            let base = match service.signature.name {
                "tomcat" => service
                    .option("-Dcatalina.base")
                    .or_else(|| service.option("-Dcatalina.home")),
                "jetty" => service.option("-Djetty.base"),
                _ => None,
            };
            if let Some(base) = base {
                dirs.insert((
                    service.signature.name,
                    format!("{}/webapps", base.trim_end_matches('/')),
                ));
            }
        }
        for (server, pattern) in DEFAULT_WEBAPP_DIRS {
            for dir in ctx.root.glob(pattern) {
                dirs.insert((server, dir.display().to_string()));
            }
        }
        let mut apps = Vec::new();
        for (server, dir) in dirs {
            apps.extend(webapps(ctx, server, &dir));
        }
        let mut roots = BTreeSet::new();
        for site in super::web_site::sites(ctx) {
            if !site.root.is_empty() && roots.insert((site.server.clone(), site.root.clone())) {
                let path = Path::new(&site.root);
                if ctx.root.resolve(path).is_ok_and(|p| p.is_dir()) {
                    let (framework, version) = recognise(ctx, path);
                    apps.push(WebApplication {
                        name: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        server: site.server,
                        path: site.root,
                        packaging: "directory".into(),
                        framework,
                        version,
                    });
                }
            }
        }
        Ok(apps
            .into_iter()
            .map(|app| {
                Observation::new(
                    format!("{}:{}", app.server, app.path),
                    Body::WebApplication(app),
                )
            })
            .collect())
    }
}

/// The applications of one webapps directory: exploded directories and `.war` files
/// (a war and the directory the server exploded it into are one application).
fn webapps(ctx: &Context, server: &str, dir: &str) -> Vec<WebApplication> {
    let Ok(entries) = ctx.root.resolve(dir).and_then(std::fs::read_dir) else {
        return Vec::new();
    };
    let mut names: Vec<(String, bool)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path().is_dir())))
        .collect();
    names.sort();
    let wars: BTreeSet<String> = names
        .iter()
        .filter_map(|(name, is_dir)| {
            (!is_dir)
                .then(|| name.strip_suffix(".war").map(str::to_string))
                .flatten()
        })
        .collect();
    names
        .into_iter()
        .filter_map(|(name, is_dir)| {
            let (app, packaging) = match name.strip_suffix(".war") {
                Some(app) if !is_dir => (app.to_string(), "war"),
                _ if is_dir && !wars.contains(&name) => (name.clone(), "directory"),
                _ => return None,
            };
            let path = format!("{dir}/{name}");
            let (framework, version) = if is_dir {
                recognise(ctx, Path::new(&path))
            } else {
                Default::default()
            };
            Some(WebApplication {
                server: server.to_string(),
                name: app,
                path,
                packaging: packaging.into(),
                framework,
                version,
            })
        })
        .collect()
}

/// Well-known applications by a file they always ship, versioned from it.
fn recognise(ctx: &Context, dir: &Path) -> (String, String) {
    let probes: &[(&str, &str, &str)] = &[
        ("wordpress", "wp-includes/version.php", "$wp_version = '"),
        ("drupal", "core/lib/Drupal.php", "const VERSION = '"),
        ("joomla", "libraries/src/Version.php", "MAJOR_VERSION = "),
        ("mediawiki", "includes/Defines.php", "MW_VERSION', '"),
    ];
    for (name, file, marker) in probes {
        let Some(text) = ctx.read_optional(dir.join(file)) else {
            continue;
        };
        let version = text
            .split(marker)
            .nth(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                    .collect()
            })
            .unwrap_or_default();
        return (name.to_string(), version);
    }
    (String::new(), String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;

    #[test]
    fn tomcat_webapps_and_recognised_document_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, text: &str| crate::collectors::write_fixture(root, path, text);
        write("var/lib/tomcat9/webapps/ROOT/index.html", "");
        write("var/lib/tomcat9/webapps/shop.war", "PK");
        write("var/lib/tomcat9/webapps/shop/WEB-INF/web.xml", "");
        write("var/lib/tomcat9/webapps/api.war", "PK");
        write(
            "etc/nginx/nginx.conf",
            "http { server { listen 80; root /var/www/blog; } }\n",
        );
        write(
            "var/www/blog/wp-includes/version.php",
            "<?php\n$wp_version = '6.4.2';\n",
        );

        let observations = WebApplicationCollector
            .collect(&test_context(HostRoot::new(root)))
            .unwrap();
        let apps: Vec<_> = observations
            .iter()
            .map(|o| match &o.body {
                Body::WebApplication(a) => (
                    o.key.as_str(),
                    a.name.as_str(),
                    a.packaging.as_str(),
                    a.framework.as_str(),
                    a.version.as_str(),
                ),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            apps,
            [
                (
                    "tomcat:/var/lib/tomcat9/webapps/ROOT",
                    "ROOT",
                    "directory",
                    "",
                    ""
                ),
                (
                    "tomcat:/var/lib/tomcat9/webapps/api.war",
                    "api",
                    "war",
                    "",
                    ""
                ),
                (
                    "tomcat:/var/lib/tomcat9/webapps/shop.war",
                    "shop",
                    "war",
                    "",
                    ""
                ),
                (
                    "nginx:/var/www/blog",
                    "blog",
                    "directory",
                    "wordpress",
                    "6.4.2"
                ),
            ]
        );
    }
}
