//! Recognises database engines and web servers among the host's processes: the main
//! process of each instance, its workers, the ports they listen on, and a version read
//! without running anything (installed packages, install paths, Go build info).
use std::collections::{BTreeMap, BTreeSet};

use census_proto::v1::Package;

use super::process::ProcessInfo;
use super::{CollectError, Context};

/// What a signature describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Database,
    WebServer,
}

/// How to recognise one engine or server.
#[derive(Debug)]
pub struct Signature {
    pub name: &'static str,
    pub role: Role,
    /// Process names (comm, at most 15 bytes) or executable names that identify it.
    names: &'static [&'static str],
    /// For JVM and interpreter-hosted servers: a command-line fragment that identifies it.
    cmdline: &'static [&'static str],
    /// Packages whose version is the server's, in preference order (a trailing `*`
    /// matches any suffix, e.g. `postgresql-*`).
    packages: &'static [&'static str],
    /// Reported only when it listens (node runs many command-line tools).
    needs_listener: bool,
}

const fn sig(
    name: &'static str,
    role: Role,
    names: &'static [&'static str],
    cmdline: &'static [&'static str],
    packages: &'static [&'static str],
) -> Signature {
    Signature {
        name,
        role,
        names,
        cmdline,
        packages,
        needs_listener: false,
    }
}

/// Every engine and server census recognises.
pub const SIGNATURES: &[Signature] = &[
    sig(
        "postgresql",
        Role::Database,
        &["postgres", "postmaster"],
        &[],
        &["postgresql-*", "postgresql-server", "postgresql"],
    ),
    sig(
        "mariadb",
        Role::Database,
        &["mariadbd"],
        &[],
        &["mariadb-server-core*", "mariadb-server", "MariaDB-server"],
    ),
    sig(
        "mysql",
        Role::Database,
        &["mysqld"],
        &[],
        &[
            "mysql-server-core-*",
            "mysql-server",
            "mysql-community-server",
            "percona-server-server*",
            "mariadb-server-core*",
            "mariadb-server",
        ],
    ),
    sig(
        "redis",
        Role::Database,
        &["redis-server"],
        &[],
        &["redis-server", "redis", "redis-tools"],
    ),
    sig(
        "mongodb",
        Role::Database,
        &["mongod"],
        &[],
        &["mongodb-org-server", "mongodb-server", "mongodb"],
    ),
    sig(
        "elasticsearch",
        Role::Database,
        &[],
        &["org.elasticsearch.bootstrap.Elasticsearch"],
        &["elasticsearch"],
    ),
    sig(
        "opensearch",
        Role::Database,
        &[],
        &["org.opensearch.bootstrap.OpenSearch"],
        &["opensearch"],
    ),
    sig(
        "cassandra",
        Role::Database,
        &[],
        &["org.apache.cassandra.service.CassandraDaemon"],
        &["cassandra"],
    ),
    sig(
        "memcached",
        Role::Database,
        &["memcached"],
        &[],
        &["memcached"],
    ),
    sig(
        "clickhouse",
        Role::Database,
        &["clickhouse-serv", "clickhouse-server"],
        &[],
        &["clickhouse-server"],
    ),
    sig(
        "etcd",
        Role::Database,
        &["etcd"],
        &[],
        &["etcd-server", "etcd"],
    ),
    sig(
        "influxdb",
        Role::Database,
        &["influxd"],
        &[],
        &["influxdb2", "influxdb"],
    ),
    sig(
        "nginx",
        Role::WebServer,
        &["nginx"],
        &[],
        &[
            "nginx-core",
            "nginx-full",
            "nginx-light",
            "nginx-extras",
            "nginx",
            "openresty",
        ],
    ),
    sig(
        "apache",
        Role::WebServer,
        &["apache2", "httpd"],
        &[],
        &["apache2-bin", "apache2", "httpd"],
    ),
    sig(
        "tomcat",
        Role::WebServer,
        &[],
        &["org.apache.catalina.startup.Bootstrap"],
        &["tomcat*", "tomcat"],
    ),
    sig(
        "jetty",
        Role::WebServer,
        &[],
        &["org.eclipse.jetty.start.Main", "jetty-start", "start.jar"],
        &["jetty*"],
    ),
    sig(
        "gunicorn",
        Role::WebServer,
        &["gunicorn"],
        &["/gunicorn", "gunicorn "],
        &["gunicorn"],
    ),
    sig(
        "uwsgi",
        Role::WebServer,
        &["uwsgi"],
        &[],
        &["uwsgi", "uwsgi-core"],
    ),
    sig(
        "uvicorn",
        Role::WebServer,
        &["uvicorn"],
        &["/uvicorn"],
        &["uvicorn"],
    ),
    sig(
        "php-fpm",
        Role::WebServer,
        &["php-fpm*"],
        &[],
        &["php*-fpm", "php-fpm"],
    ),
    sig(
        "lighttpd",
        Role::WebServer,
        &["lighttpd"],
        &[],
        &["lighttpd"],
    ),
    sig("haproxy", Role::WebServer, &["haproxy"], &[], &["haproxy"]),
    sig("caddy", Role::WebServer, &["caddy"], &[], &["caddy"]),
    sig("traefik", Role::WebServer, &["traefik"], &[], &["traefik"]),
    sig("envoy", Role::WebServer, &["envoy"], &[], &["envoy"]),
    Signature {
        needs_listener: true,
        ..sig(
            "node",
            Role::WebServer,
            &["node", "nodejs"],
            &[],
            &["nodejs"],
        )
    },
];

/// One running instance of an engine or server.
#[derive(Debug, Clone)]
pub struct Service<'a> {
    pub signature: &'static Signature,
    pub main: &'a ProcessInfo,
    /// Endpoints (listening_port keys) held by the main process or any descendant.
    pub listen: Vec<String>,
    pub version: String,
}

impl Service<'_> {
    /// The record key: the engine and its lowest endpoint, or its pid when it listens nowhere.
    pub fn key(&self) -> String {
        match self.listen.first() {
            Some(endpoint) => format!("{}@{endpoint}", self.signature.name),
            None => format!("{}@pid:{}", self.signature.name, self.main.pid),
        }
    }

    /// The value following `flag` on the command line (`-D /data`, `-c file`), or
    /// of `flag=value` / `flagVALUE` forms (`-Dcatalina.base=/x`).
    pub fn option(&self, flag: &str) -> Option<String> {
        option(&words(self.main), flag)
    }
}

/// The command line as words. Servers that rewrite their title (nginx: "nginx: master
/// process /usr/sbin/nginx -c /etc/x.conf") leave it in one argument.
pub fn words(process: &ProcessInfo) -> Vec<String> {
    process
        .cmdline
        .iter()
        .flat_map(|arg| arg.split_whitespace())
        .map(str::to_string)
        .collect()
}

fn option(words: &[String], flag: &str) -> Option<String> {
    words.iter().enumerate().find_map(|(i, word)| {
        if word == flag {
            words.get(i + 1).cloned()
        } else {
            word.strip_prefix(flag)
                .map(|rest| rest.trim_start_matches('=').to_string())
                .filter(|v| !v.is_empty())
        }
    })
}

fn matches(signature: &Signature, process: &ProcessInfo) -> bool {
    let exe_name = process.exe.rsplit('/').next().unwrap_or_default();
    let name_matches = signature
        .names
        .iter()
        .any(|name| match name.strip_suffix('*') {
            Some(prefix) => process.comm.starts_with(prefix) || exe_name.starts_with(prefix),
            None => process.comm == *name || exe_name == *name,
        });
    name_matches
        || (!signature.cmdline.is_empty() && {
            let line = process.cmdline.join(" ");
            signature
                .cmdline
                .iter()
                .any(|fragment| line.contains(fragment))
        })
}

/// Every running instance of every signature of `role`.
pub fn detect(ctx: &Context, role: Role) -> Result<Vec<Service<'_>>, CollectError> {
    let processes = ctx.processes()?;
    let listeners = ctx.listeners().unwrap_or_default();
    // Cataloging packages is the expensive part: only when there is a version to find.
    let packages = std::cell::OnceCell::new();
    let by_pid: BTreeMap<u32, &ProcessInfo> = processes.iter().map(|p| (p.pid, p)).collect();
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for process in processes {
        children.entry(process.ppid).or_default().push(process.pid);
    }
    let mut claimed = BTreeSet::new();
    let mut services = Vec::new();
    for signature in SIGNATURES.iter().filter(|s| s.role == role) {
        for process in processes.iter().filter(|p| matches(signature, p)) {
            // Workers and forked children belong to the instance of their top ancestor.
            let parent_matches = by_pid
                .get(&process.ppid)
                .is_some_and(|parent| matches(signature, parent));
            if parent_matches || !claimed.insert(process.pid) {
                continue;
            }
            let family = descendants(process.pid, &children);
            let listen: Vec<String> = listeners
                .iter()
                .filter(|l| l.pids.iter().any(|pid| family.contains(pid)))
                .map(|l| l.key())
                .collect();
            if signature.needs_listener && listen.is_empty() {
                continue;
            }
            let version = version(
                signature,
                process,
                packages.get_or_init(|| ctx.packages().unwrap_or_default()),
            );
            let service = Service {
                signature,
                main: process,
                listen,
                version,
            };
            // Orphaned workers (their master gone) share the master's sockets: one
            // instance per endpoint, kept as its lowest pid.
            if services.iter().any(|s: &Service| s.key() == service.key()) {
                continue;
            }
            services.push(service);
        }
    }
    Ok(services)
}

fn descendants(pid: u32, children: &BTreeMap<u32, Vec<u32>>) -> BTreeSet<u32> {
    let mut family = BTreeSet::from([pid]);
    let mut pending = vec![pid];
    while let Some(next) = pending.pop() {
        for child in children.get(&next).into_iter().flatten() {
            if family.insert(*child) {
                pending.push(*child);
            }
        }
    }
    family
}

/// The version without running the binary: the Go build info of the executable, the
/// host package that ships it (not for containerized processes: the host's packages
/// are not theirs), or a version in the install path.
fn version(signature: &Signature, process: &ProcessInfo, packages: &[Package]) -> String {
    if process.container.is_none() {
        for wanted in signature.packages {
            let found = packages.iter().find(|p| {
                matches!(p.ecosystem.as_str(), "deb" | "rpm" | "apk" | "python")
                    && match wanted.strip_suffix('*') {
                        Some(prefix) => p.name.starts_with(prefix),
                        None => p.name == *wanted,
                    }
            });
            if let Some(package) = found {
                return package.version.clone();
            }
        }
    }
    version_in_path(&process.exe).unwrap_or_default()
}

/// A version in an install path: `/usr/lib/postgresql/15/bin/postgres` -> "15",
/// `~/.nvm/versions/node/v20.11.0/bin/node` -> "20.11.0".
pub fn version_in_path(exe: &str) -> Option<String> {
    exe.split('/')
        .rev()
        .skip(1)
        .map(|part| part.strip_prefix('v').unwrap_or(part))
        .find(|part| {
            part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, ppid: u32, comm: &str, exe: &str, cmdline: &[&str]) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid,
            comm: comm.into(),
            exe: exe.into(),
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            uid: 0,
            gid: 0,
            start_ticks: 0,
            state: 'S',
            threads: 1,
            rss_bytes: 0,
            cpu_time_ms: 0,
            container: None,
        }
    }

    #[test]
    fn signatures_match_names_prefixes_and_command_lines() {
        let find = |p: &ProcessInfo| {
            SIGNATURES
                .iter()
                .filter(|s| matches(s, p))
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            find(&process(
                1,
                0,
                "postgres",
                "/usr/lib/postgresql/15/bin/postgres",
                &[]
            )),
            ["postgresql"]
        );
        assert_eq!(
            find(&process(1, 0, "php-fpm8.2", "/usr/sbin/php-fpm8.2", &[])),
            ["php-fpm"]
        );
        let tomcat = process(
            1,
            0,
            "java",
            "/usr/lib/jvm/java-17/bin/java",
            &[
                "java",
                "-cp",
                "x",
                "org.apache.catalina.startup.Bootstrap",
                "start",
            ],
        );
        assert_eq!(find(&tomcat), ["tomcat"]);
        let gunicorn = process(
            1,
            0,
            "python3",
            "/usr/bin/python3.11",
            &["/usr/bin/python3", "/usr/bin/gunicorn", "app:app"],
        );
        assert_eq!(find(&gunicorn), ["gunicorn"]);
        assert!(find(&process(1, 0, "bash", "/usr/bin/bash", &["bash"])).is_empty());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn orphaned_workers_sharing_a_socket_are_one_instance() {
        use crate::collectors::test_context;
        use crate::root::HostRoot;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, text: &str| crate::collectors::write_fixture(root, path, text);
        write(
            "proc/net/tcp",
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n",
        );
        for pid in [31287, 31288] {
            // Parent 1: the master is gone.
            write(
                &format!("proc/{pid}/stat"),
                &format!(
                    "{pid} (nginx) S 1 {pid} {pid} 0 -1 4194624 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
                ),
            );
            write(&format!("proc/{pid}/cmdline"), "nginx: worker process\0");
            std::fs::create_dir_all(root.join(format!("proc/{pid}/fd"))).unwrap();
            std::os::unix::fs::symlink("socket:[4242]", root.join(format!("proc/{pid}/fd/6")))
                .unwrap();
        }
        let ctx = test_context(HostRoot::new(root));
        let services = detect(&ctx, Role::WebServer).unwrap();
        let found: Vec<_> = services.iter().map(|s| (s.key(), s.main.pid)).collect();
        assert_eq!(found, [("nginx@tcp/127.0.0.1:8080".to_string(), 31287)]);
    }

    #[test]
    fn versions_come_from_install_paths() {
        assert_eq!(
            version_in_path("/usr/lib/postgresql/15/bin/postgres").as_deref(),
            Some("15")
        );
        assert_eq!(
            version_in_path("/root/.nvm/versions/node/v20.11.0/bin/node").as_deref(),
            Some("20.11.0")
        );
        assert_eq!(version_in_path("/usr/sbin/nginx"), None);
    }

    #[test]
    fn options_are_read_in_every_form() {
        let nginx = process(
            1,
            0,
            "nginx",
            "/usr/sbin/nginx",
            &["nginx: master process /usr/sbin/nginx -c /tmp/t/nginx.conf -g daemon off;"],
        );
        assert_eq!(
            option(&words(&nginx), "-c").as_deref(),
            Some("/tmp/t/nginx.conf")
        );
        let java = process(
            1,
            0,
            "java",
            "/usr/bin/java",
            &["java", "-Dcatalina.base=/var/lib/tomcat9", "-Dx"],
        );
        assert_eq!(
            option(&words(&java), "-Dcatalina.base").as_deref(),
            Some("/var/lib/tomcat9")
        );
        assert_eq!(option(&words(&java), "-D/missing"), None);
    }
}
