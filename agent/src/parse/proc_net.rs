//! The kernel's socket tables: `/proc/net/{tcp,tcp6,udp,udp6}`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Parsed, numbered_lines};

/// TCP state number of a listening socket.
pub const TCP_LISTEN: u8 = 0x0A;
/// State number the kernel shows for a UDP socket with no peer.
pub const UDP_UNCONNECTED: u8 = 0x07;

/// One row of a socket table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub state: u8,
    pub uid: u32,
    pub inode: u64,
}

/// Parses a whole table; the header line is recognised and skipped.
pub fn parse(text: &str) -> Parsed<Socket> {
    let mut parsed = Parsed::default();
    for (number, line) in numbered_lines(text) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || (number == 1 && fields[0] == "sl") {
            continue;
        }
        match parse_row(&fields) {
            Ok(socket) => parsed.items.push(socket),
            Err(reason) => parsed.skip(number, reason),
        }
    }
    parsed
}

fn parse_row(fields: &[&str]) -> Result<Socket, String> {
    if fields.len() < 10 {
        return Err(format!(
            "expected at least 10 columns, found {}",
            fields.len()
        ));
    }
    let (local, local_port) = parse_endpoint(fields[1])?;
    let (remote, remote_port) = parse_endpoint(fields[2])?;
    let state =
        u8::from_str_radix(fields[3], 16).map_err(|_| format!("invalid state {:?}", fields[3]))?;
    let uid = fields[7]
        .parse()
        .map_err(|_| format!("invalid uid {:?}", fields[7]))?;
    let inode = fields[9]
        .parse()
        .map_err(|_| format!("invalid inode {:?}", fields[9]))?;
    Ok(Socket {
        local,
        local_port,
        remote,
        remote_port,
        state,
        uid,
        inode,
    })
}

/// `0100007F:0CEA` -> 127.0.0.1:3306. Addresses are printed as 32-bit words in the
/// kernel's byte order, ports as plain hex.
fn parse_endpoint(text: &str) -> Result<(IpAddr, u16), String> {
    let invalid = || format!("invalid address {text:?}");
    let (address, port) = text.split_once(':').ok_or_else(invalid)?;
    let port = u16::from_str_radix(port, 16).map_err(|_| invalid())?;
    let word = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .map(u32::to_ne_bytes)
            .map_err(|_| invalid())
    };
    let address = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(address)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_mut(4).enumerate() {
                let hex = address.get(i * 8..i * 8 + 8).ok_or_else(invalid)?;
                chunk.copy_from_slice(&word(hex)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return Err(invalid()),
    };
    Ok((address, port))
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21773 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 33107 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0CEA 0000000000000000FFFF00000100007F:A0C2 01 00000000:00000000 00:00000000 00000000   116        0 44410 1 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55555 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parses_tcp6_rows() {
        let parsed = parse(TCP6);
        assert_eq!(parsed.skipped, vec![]);
        let rows: Vec<_> = parsed
            .items
            .iter()
            .map(|s| (s.local.to_string(), s.local_port, s.state, s.uid, s.inode))
            .collect();
        assert_eq!(
            rows,
            [
                ("::".to_string(), 22, TCP_LISTEN, 0, 21773),
                ("::1".to_string(), 8080, TCP_LISTEN, 1000, 33107),
                ("::ffff:127.0.0.1".to_string(), 3306, 0x01, 116, 44410),
                ("2001:db8::1".to_string(), 443, TCP_LISTEN, 0, 55555),
            ]
        );
        assert_eq!(parsed.items[2].remote_port, 0xA0C2);
    }

    #[test]
    fn parses_tcp4_rows() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   116        0 25346 1 0000000000000000 100 0 0 10 0\n";
        let parsed = parse(text);
        assert_eq!(parsed.items[0].local, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(parsed.items[0].local_port, 3306);
        assert_eq!(parsed.items[0].remote, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn malformed_rows_are_skipped_with_their_line() {
        let text = format!(
            "{TCP6}   4: ZZZZ:0016 00000000:0000 0A 0:0 0:0 0 0 0 1\n   5: short row\n   6: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000 x 0 1\n"
        );
        let parsed = parse(&text);
        assert_eq!(parsed.items.len(), 4);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [6, 7, 8]);
        assert!(parsed.skipped[0].reason.contains("invalid address"));
        assert!(parsed.skipped[1].reason.contains("at least 10 columns"));
        assert!(parsed.skipped[2].reason.contains("invalid uid"));
    }
}
