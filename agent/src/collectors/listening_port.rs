//! `listening_port`: TCP sockets in LISTEN state and unconnected UDP sockets, IPv4
//! and IPv6, each with the processes that hold it (socket inode -> /proc/PID/fd).
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use census_proto::v1::{ListeningPort, record::Body};

use super::{CollectError, Collector, Context, Observation, SMALL_FILE_LIMIT};
use crate::parse::proc_net::{self, Socket, TCP_LISTEN, UDP_UNCONNECTED};

#[derive(Debug)]
pub struct ListeningPortCollector;

/// The socket tables read, with the protocol name each one reports.
const TABLES: [(&str, &str, &str); 4] = [
    ("/proc/net/tcp", "tcp", "ipv4"),
    ("/proc/net/tcp6", "tcp", "ipv6"),
    ("/proc/net/udp", "udp", "ipv4"),
    ("/proc/net/udp6", "udp", "ipv6"),
];

/// A listening endpoint and the processes holding its sockets (SO_REUSEPORT allows
/// several sockets per endpoint; forked workers share one).
#[derive(Debug, Clone)]
pub struct Listener {
    pub protocol: &'static str,
    pub family: &'static str,
    pub address: IpAddr,
    pub port: u16,
    pub uid: u32,
    /// Every pid holding one of the endpoint's sockets, ascending.
    pub pids: Vec<u32>,
}

impl Listener {
    /// The listening_port record's key.
    pub fn key(&self) -> String {
        port_key(self.protocol, self.family, self.address, self.port)
    }
}

/// Reads the socket tables and finds each listening socket's owners.
pub fn gather(ctx: &Context) -> Result<Vec<Listener>, CollectError> {
    // A root with no /proc at all (a mounted image, a backup) listens nowhere.
    if !ctx.root.join("/proc").exists() {
        return Ok(Vec::new());
    }
    let mut endpoints: BTreeMap<String, (Listener, Vec<u64>)> = BTreeMap::new();
    let mut tables_read = 0;
    for (host_path, protocol, family) in TABLES {
        let path = ctx.root.join(host_path);
        let text = match crate::root::read_limited(&path, SMALL_FILE_LIMIT) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // No IPv6 in this kernel, or no such protocol: nothing listens there.
            Err(error) if error.is_not_found() => continue,
            Err(error) => return Err(error.into()),
        };
        tables_read += 1;
        for socket in proc_net::parse(&text).warn_skipped(&path) {
            if !is_listening(protocol, &socket) {
                continue;
            }
            let key = port_key(protocol, family, socket.local, socket.local_port);
            let (_, inodes) = endpoints.entry(key).or_insert_with(|| {
                let listener = Listener {
                    protocol,
                    family,
                    address: socket.local,
                    port: socket.local_port,
                    uid: socket.uid,
                    pids: Vec::new(),
                };
                (listener, Vec::new())
            });
            inodes.push(socket.inode);
        }
    }
    if tables_read == 0 {
        return Err(CollectError::List {
            path: ctx.root.join("/proc/net"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no socket table found"),
        });
    }
    let wanted: BTreeSet<u64> = endpoints
        .values()
        .flat_map(|(_, inodes)| inodes.iter().copied())
        .collect();
    let owners = socket_owners(ctx, &wanted);
    Ok(endpoints
        .into_values()
        .map(|(mut listener, inodes)| {
            let pids: BTreeSet<u32> = inodes
                .iter()
                .filter_map(|i| owners.get(i))
                .flatten()
                .copied()
                .collect();
            listener.pids = pids.into_iter().collect();
            listener
        })
        .collect())
}

impl Collector for ListeningPortCollector {
    fn kind(&self) -> &'static str {
        "listening_port"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let observations = ctx
            .listeners()?
            .iter()
            .map(|listener| {
                let pid = listener.pids.first().copied().unwrap_or(0);
                let process = if pid == 0 {
                    String::new()
                } else {
                    comm(ctx, pid)
                };
                let body = ListeningPort {
                    protocol: listener.protocol.to_string(),
                    family: listener.family.to_string(),
                    address: listener.address.to_string(),
                    port: u32::from(listener.port),
                    pid,
                    pids: listener.pids.clone(),
                    process,
                    uid: listener.uid,
                };
                Observation::new(listener.key(), Body::ListeningPort(body))
            })
            .collect();
        Ok(observations)
    }
}

fn is_listening(protocol: &str, socket: &Socket) -> bool {
    match protocol {
        "tcp" => socket.state == TCP_LISTEN,
        _ => {
            socket.state == UDP_UNCONNECTED
                && socket.remote_port == 0
                && socket.remote.is_unspecified()
        }
    }
}

/// `tcp/127.0.0.1:8080`, `tcp6/[::]:22`, `udp/0.0.0.0:68`.
pub fn port_key(protocol: &str, family: &str, address: IpAddr, port: u16) -> String {
    let suffix = if family == "ipv6" { "6" } else { "" };
    match address {
        IpAddr::V6(v6) => format!("{protocol}{suffix}/[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{protocol}{suffix}/{v4}:{port}"),
    }
}

/// Maps each wanted socket inode to the pids holding it, by reading the fd links of
/// every process (all of them: forked workers share their parent's sockets).
fn socket_owners(ctx: &Context, wanted: &BTreeSet<u64>) -> HashMap<u64, Vec<u32>> {
    let mut owners: HashMap<u64, Vec<u32>> = HashMap::new();
    if wanted.is_empty() {
        return owners;
    }
    let proc_dir = ctx.root.join("/proc");
    let Ok(entries) = std::fs::read_dir(&proc_dir) else {
        tracing::warn!(path = %proc_dir.display(), "cannot list processes to find socket owners");
        return owners;
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let fd_dir = proc_dir.join(pid.to_string()).join("fd");
        // Exited, or not ours to read without privileges.
        let Ok(fds) = std::fs::read_dir(&fd_dir) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str().to_str().unwrap_or("")) else {
                continue;
            };
            if wanted.contains(&inode) {
                let holders = owners.entry(inode).or_default();
                if !holders.contains(&pid) {
                    holders.push(pid);
                }
            }
        }
    }
    owners
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn comm(ctx: &Context, pid: u32) -> String {
    ctx.read_kernel_value(&format!("/proc/{pid}/comm"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::test_context;
    use crate::root::HostRoot;
    use std::os::unix::fs::symlink;

    use crate::collectors::write_fixture as write;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    #[cfg(target_endian = "little")]
    #[test]
    fn listening_sockets_get_their_owning_processes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "proc/net/tcp",
            &format!(
                "{HEADER}   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n\
                    1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 112 1 0 100 0 0 10 0\n\
                    2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 113 1 0 100 0 0 10 0\n"
            ),
        );
        write(
            root,
            "proc/net/tcp6",
            &format!(
                "{HEADER}   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 114 1 0 100 0 0 10 0\n"
            ),
        );
        write(
            root,
            "proc/net/udp",
            &format!(
                "{HEADER}   0: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 115 2 0\n\
                    1: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 116 2 0\n"
            ),
        );
        // pid 300 (nginx master) and 301 (worker) share the listening socket 111.
        for (pid, comm, inodes) in [
            (300, "nginx", vec![111, 999]),
            (301, "nginx", vec![111]),
            (22, "sshd", vec![113, 114]),
        ] {
            write(root, &format!("proc/{pid}/comm"), &format!("{comm}\n"));
            std::fs::create_dir_all(root.join(format!("proc/{pid}/fd"))).unwrap();
            for (fd, inode) in inodes.iter().enumerate() {
                symlink(
                    format!("socket:[{inode}]"),
                    root.join(format!("proc/{pid}/fd/{fd}")),
                )
                .unwrap();
            }
            symlink("/dev/null", root.join(format!("proc/{pid}/fd/9"))).unwrap();
        }

        let ctx = test_context(HostRoot::new(root));
        let observations = ListeningPortCollector.collect(&ctx).unwrap();
        let summary: Vec<_> = observations
            .iter()
            .map(|o| {
                let Body::ListeningPort(p) = &o.body else {
                    panic!()
                };
                (
                    o.key.as_str(),
                    p.pid,
                    p.pids.clone(),
                    p.process.as_str(),
                    p.uid,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("tcp/0.0.0.0:22", 22, vec![22], "sshd", 0),
                ("tcp/127.0.0.1:8080", 300, vec![300, 301], "nginx", 1000),
                ("tcp6/[::]:22", 22, vec![22], "sshd", 0),
                ("udp/0.0.0.0:68", 0, vec![], "", 0),
            ]
        );
    }

    #[test]
    fn no_socket_table_at_all_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        let ctx = test_context(HostRoot::new(dir.path()));
        assert!(ListeningPortCollector.collect(&ctx).is_err());
        let offline = tempfile::tempdir().unwrap();
        let ctx = test_context(HostRoot::new(offline.path()));
        assert_eq!(
            ListeningPortCollector.collect(&ctx).unwrap(),
            vec![],
            "no /proc: nothing listens"
        );
    }
}
