//! `web_site`: virtual hosts of nginx (`server` blocks) and Apache (`<VirtualHost>`)
//! configurations: the default configuration files and those running servers use.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use census_proto::v1::{WebSite, record::Body};

use super::services::{Role, detect};
use super::web_service::config_file;
use super::{CollectError, Collector, Context, Observation, SMALL_FILE_LIMIT};
use crate::parse::apache_conf::{self, ApacheDirective};
use crate::parse::nginx_conf::{self, Directive};
use crate::root::HostRoot;

/// Default configuration files, read even when the server is not running.
const DEFAULT_CONFIGS: &[(&str, &str)] = &[
    ("nginx", "/etc/nginx/nginx.conf"),
    ("apache", "/etc/apache2/apache2.conf"),
    ("apache", "/etc/httpd/conf/httpd.conf"),
];
/// Configuration files read per server, at most (includes are globs).
const MAX_FILES: usize = 512;
const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug)]
pub struct WebSiteCollector;

impl Collector for WebSiteCollector {
    fn kind(&self) -> &'static str {
        "web_site"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        Ok(sites(ctx)
            .into_iter()
            .map(|site| {
                let key = format!("{}:{}:{}", site.server, site.config_file, site.line);
                Observation::new(key, Body::WebSite(site))
            })
            .collect())
    }
}

/// Every site of every configuration found.
pub fn sites(ctx: &Context) -> Vec<WebSite> {
    // (server, filesystem to read through, config path): a containerized server's
    // configuration is read through its own root, /proc/PID/root.
    let mut configs: Vec<(&str, HostRoot, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    let services = detect(ctx, Role::WebServer).unwrap_or_default();
    for service in &services {
        let server = service.signature.name;
        if server != "nginx" && server != "apache" {
            continue;
        }
        let root = match &service.main.container {
            Some(_) => HostRoot::new(ctx.root.join(format!("/proc/{}/root", service.main.pid))),
            None => ctx.root.clone(),
        };
        let config = config_file(service);
        if seen.insert((root.dir().to_path_buf(), config.clone())) {
            configs.push((server, root, config));
        }
    }
    for (server, config) in DEFAULT_CONFIGS {
        if seen.insert((ctx.root.dir().to_path_buf(), config.to_string()))
            && ctx.root.resolve(config).is_ok_and(|p| p.is_file())
        {
            configs.push((server, ctx.root.clone(), config.to_string()));
        }
    }
    let mut sites = Vec::new();
    for (server, root, config) in configs {
        match server {
            "nginx" => nginx_sites(&root, Path::new(&config), &mut sites),
            _ => apache_sites(&root, Path::new(&config), &mut sites),
        }
    }
    sites
}

fn read_config(root: &HostRoot, path: &Path) -> Option<String> {
    match root.read_string(path, SMALL_FILE_LIMIT) {
        Ok(text) => Some(text),
        Err(error) => {
            if !error.is_not_found() {
                tracing::warn!(%error, "skipping unreadable web server configuration");
            }
            None
        }
    }
}

/// Paths an include pattern names, relative patterns against `base`.
fn include_targets(root: &HostRoot, base: &Path, pattern: &str) -> Vec<PathBuf> {
    let pattern = base.join(pattern);
    let mut targets = Vec::new();
    for path in root.glob(&pattern) {
        // Apache includes a directory as all the files in it.
        if root.resolve(&path).is_ok_and(|p| p.is_dir()) {
            targets.extend(root.glob(path.join("*")));
        } else {
            targets.push(path);
        }
    }
    targets
}

/// An nginx configuration file with what it includes, parsed.
struct NginxFile {
    path: PathBuf,
    directives: Vec<Directive>,
    /// Included from inside `http`: its top-level `server` blocks are web sites.
    in_http: bool,
}

fn nginx_sites(root: &HostRoot, config: &Path, sites: &mut Vec<WebSite>) {
    let base = config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut files: Vec<NginxFile> = Vec::new();
    let mut pending = vec![(config.to_path_buf(), false, 0)];
    let mut seen = BTreeSet::new();
    while let Some((path, in_http, depth)) = pending.pop() {
        if files.len() >= MAX_FILES || depth > MAX_INCLUDE_DEPTH || !seen.insert(path.clone()) {
            continue;
        }
        let Some(text) = read_config(root, &path) else {
            continue;
        };
        let directives = match nginx_conf::parse(&text) {
            Ok(directives) => directives,
            Err(skipped) => {
                let shown = root.join(&path);
                tracing::warn!(path = %shown.display(), line = skipped.line, reason = %skipped.reason, "skipping malformed nginx configuration");
                continue;
            }
        };
        // Includes at the top level of the file or inside http (sites-enabled/*).
        nginx_conf::walk(&directives, &mut |ancestors, directive| {
            if directive.name != "include" {
                return;
            }
            let names: Vec<&str> = ancestors.iter().map(|a| a.name.as_str()).collect();
            let included_in_http = match names.as_slice() {
                [] => Some(in_http),
                ["http"] => Some(true),
                _ => None,
            };
            if let (Some(context), Some(pattern)) = (included_in_http, directive.args.first()) {
                for target in include_targets(root, &base, pattern) {
                    pending.push((target, context, depth + 1));
                }
            }
        });
        files.push(NginxFile {
            path,
            directives,
            in_http,
        });
    }
    for file in &files {
        nginx_conf::walk(&file.directives, &mut |ancestors, directive| {
            if directive.name != "server" || directive.block.is_none() {
                return;
            }
            let names: Vec<&str> = ancestors.iter().map(|a| a.name.as_str()).collect();
            let is_http_server =
                matches!(names.as_slice(), ["http"]) || (file.in_http && names.is_empty());
            if is_http_server {
                sites.push(nginx_site(root, &base, &file.path, directive));
            }
        });
    }
}

/// A `server` block's names, listens, root and TLS, following includes inside it.
fn nginx_site(root: &HostRoot, base: &Path, file: &Path, server: &Directive) -> WebSite {
    let mut directives: Vec<Directive> = server.block.clone().unwrap_or_default();
    let included: Vec<Directive> = directives
        .iter()
        .filter(|d| d.name == "include")
        .flat_map(|d| {
            d.args
                .first()
                .map(|p| include_targets(root, base, p))
                .unwrap_or_default()
        })
        .filter_map(|path| nginx_conf::parse(&read_config(root, &path)?).ok())
        .flatten()
        .collect();
    directives.extend(included);
    let values = |name: &'static str| directives.iter().filter(move |d| d.name == name);
    let mut listen: Vec<String> = values("listen").map(|d| d.args.join(" ")).collect();
    if listen.is_empty() {
        listen.push("80".into());
    }
    let tls = listen
        .iter()
        .any(|l| l.split(' ').any(|word| word == "ssl" || word == "quic"))
        || values("ssl").any(|d| d.args.first().is_some_and(|on| on == "on"));
    WebSite {
        server: "nginx".into(),
        server_names: values("server_name").flat_map(|d| d.args.clone()).collect(),
        listen,
        root: values("root")
            .next()
            .and_then(|d| d.args.first().cloned())
            .unwrap_or_default(),
        config_file: file.display().to_string(),
        line: server.line as u32,
        tls,
    }
}

fn apache_sites(root: &HostRoot, config: &Path, sites: &mut Vec<WebSite>) {
    let mut pending = vec![(config.to_path_buf(), 0)];
    let mut seen = BTreeSet::new();
    let mut server_root = config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    while let Some((path, depth)) = pending.pop() {
        if seen.len() >= MAX_FILES || depth > MAX_INCLUDE_DEPTH || !seen.insert(path.clone()) {
            continue;
        }
        let Some(text) = read_config(root, &path) else {
            continue;
        };
        let directives = apache_conf::parse(&text).warn_skipped(&root.join(&path));
        let mut includes = Vec::new();
        visit_apache(&directives, &mut |directive| {
            let name = directive.name.to_ascii_lowercase();
            match name.as_str() {
                "serverroot" => {
                    if let Some(dir) = directive.args.first() {
                        server_root = PathBuf::from(dir);
                    }
                }
                "include" | "includeoptional" => includes.extend(directive.args.first().cloned()),
                "virtualhost" => sites.push(apache_site(&path, directive)),
                _ => {}
            }
        });
        for pattern in includes.iter().rev() {
            for target in include_targets(root, &server_root, pattern)
                .into_iter()
                .rev()
            {
                pending.push((target, depth + 1));
            }
        }
    }
}

fn visit_apache<'a>(directives: &'a [ApacheDirective], f: &mut impl FnMut(&'a ApacheDirective)) {
    for directive in directives {
        f(directive);
        if !directive.name.eq_ignore_ascii_case("VirtualHost") {
            visit_apache(&directive.children, f);
        }
    }
}

fn apache_site(file: &Path, host: &ApacheDirective) -> WebSite {
    let values = |name: &str| {
        host.children
            .iter()
            .filter(|d| d.name.eq_ignore_ascii_case(name))
            .flat_map(|d| d.args.clone())
            .collect::<Vec<_>>()
    };
    let mut server_names = values("ServerName");
    server_names.extend(values("ServerAlias"));
    WebSite {
        server: "apache".into(),
        server_names,
        listen: host.args.clone(),
        root: values("DocumentRoot")
            .into_iter()
            .next()
            .unwrap_or_default(),
        config_file: file.display().to_string(),
        line: host.line as u32,
        tls: values("SSLEngine")
            .iter()
            .any(|on| on.eq_ignore_ascii_case("on")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;

    use crate::collectors::write_fixture as write;

    #[test]
    fn nginx_server_blocks_through_includes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/nginx/nginx.conf",
            "user www-data;\nevents { worker_connections 768; }\nhttp {\n  include /etc/nginx/conf.d/*.conf;\n  include sites-enabled/*;\n  server { listen 8080; server_name status.local; }\n}\nstream { server { listen 5353 udp; } }\n",
        );
        write(root, "etc/nginx/conf.d/gzip.conf", "gzip on;\n");
        write(
            root,
            "etc/nginx/sites-enabled/shop",
            "server {\n  listen 443 ssl;\n  listen [::]:443 ssl;\n  server_name shop.example.com www.shop.example.com;\n  root /var/www/shop;\n  include snippets/tls.conf;\n  location / { root /elsewhere; }\n}\n",
        );
        write(
            root,
            "etc/nginx/snippets/tls.conf",
            "ssl_certificate /etc/ssl/shop.pem;\n",
        );
        write(
            root,
            "etc/nginx/sites-enabled/broken",
            "server { listen 80;\n",
        );

        let observations = WebSiteCollector
            .collect(&test_context(HostRoot::new(root)))
            .unwrap();
        let sites: Vec<WebSite> = observations
            .into_iter()
            .map(|o| match o.body {
                Body::WebSite(site) => site,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(sites.len(), 2, "{sites:?}");
        let status = sites
            .iter()
            .find(|s| s.server_names == ["status.local"])
            .unwrap();
        assert_eq!(
            (status.listen.clone(), status.line, status.tls),
            (vec!["8080".to_string()], 6, false)
        );
        assert_eq!(status.config_file, "/etc/nginx/nginx.conf");
        let shop = sites.iter().find(|s| s.root == "/var/www/shop").unwrap();
        assert_eq!(
            shop.server_names,
            ["shop.example.com", "www.shop.example.com"]
        );
        assert_eq!(shop.listen, ["443 ssl", "[::]:443 ssl"]);
        assert!(shop.tls);
        assert_eq!(shop.config_file, "/etc/nginx/sites-enabled/shop");
    }

    #[test]
    fn apache_virtual_hosts_through_includes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/apache2/apache2.conf",
            "ServerRoot \"/etc/apache2\"\nInclude ports.conf\nIncludeOptional sites-enabled/*.conf\nIncludeOptional conf-enabled/*.conf\n",
        );
        write(
            root,
            "etc/apache2/ports.conf",
            "Listen 80\n<IfModule ssl_module>\n  Listen 443\n</IfModule>\n",
        );
        write(
            root,
            "etc/apache2/sites-enabled/blog.conf",
            "<VirtualHost *:443>\n  ServerName blog.example.com\n  ServerAlias www.blog.example.com\n  DocumentRoot /var/www/blog\n  SSLEngine on\n</VirtualHost>\n<IfModule mod_x.c>\n<VirtualHost 10.0.0.1:80>\n  ServerName intranet\n</VirtualHost>\n</IfModule>\n",
        );
        let ctx = test_context(HostRoot::new(root));
        let sites = sites(&ctx);
        assert_eq!(sites.len(), 2, "{sites:?}");
        assert_eq!(
            sites[0].server_names,
            ["blog.example.com", "www.blog.example.com"]
        );
        assert_eq!(
            (
                sites[0].listen.clone(),
                sites[0].tls,
                sites[0].root.as_str()
            ),
            (vec!["*:443".to_string()], true, "/var/www/blog")
        );
        assert_eq!(
            (sites[1].server_names.clone(), sites[1].line),
            (vec!["intranet".to_string()], 8)
        );
    }
}
