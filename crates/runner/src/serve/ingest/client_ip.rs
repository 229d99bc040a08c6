//! The client's address, as Segment records it in `context.ip`: the connection's peer, or, when the connection
//! comes from a trusted proxy, the address that proxy says it forwarded for.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr =
            address.trim().parse().map_err(|_| format!("{text:?} is not an IP address or a CIDR network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { address, prefix })
    }
}

impl Network {
    /// Whether `ip` is in this network (an IPv4 address mapped into IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.address, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// The client's IP: the peer's, unless the peer is a trusted proxy, in which case the `X-Forwarded-For` chain is
/// read from the right (the entry the nearest proxy added) and the first address that is not itself a trusted
/// proxy is the client. Entries a client could have forged, to the left of that one, are never used, and the
/// header is ignored altogether on a connection that does not come from a trusted proxy.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[Network]) -> IpAddr {
    let peer = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
        v4 => v4,
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else { return client };
        for entry in value.rsplit(',') {
            match parse_entry(entry) {
                Some(ip) => {
                    client = ip;
                    if !is_trusted(ip) {
                        return ip;
                    }
                }
                None => return client,
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`[::1]:80`, `1.2.3.4:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net: Network = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Network = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("fe80::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("proxy".parse::<Network>().is_err());
    }

    #[test]
    fn forwarded_for() {
        let trusted: Vec<Network> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let check = |peer: &str, xff: &[&str], expected: &str| {
            let mut headers = HeaderMap::new();
            for value in xff {
                headers.append("x-forwarded-for", value.parse().unwrap());
            }
            let peer: SocketAddr = format!("{peer}:4000").parse().unwrap();
            assert_eq!(client_ip(peer, &headers, &trusted).to_string(), expected, "{peer} {xff:?}");
        };
        check("127.0.0.1", &["203.0.113.9"], "203.0.113.9");
        check("127.0.0.1", &["203.0.113.9, 10.0.0.7"], "203.0.113.9");
        // A forged entry to the left of the one the proxy added is not used.
        check("127.0.0.1", &["6.6.6.6, 203.0.113.9"], "203.0.113.9");
        check("127.0.0.1", &["6.6.6.6", "203.0.113.9"], "203.0.113.9");
        // An untrusted connection's header is ignored.
        check("198.51.100.4", &["203.0.113.9"], "198.51.100.4");
        // Only trusted hops: the left-most.
        check("127.0.0.1", &["10.0.0.9, 10.0.0.7"], "10.0.0.9");
        // Garbage stops the walk at the last good address.
        check("127.0.0.1", &["junk, 203.0.113.9"], "203.0.113.9");
        check("127.0.0.1", &["10.0.0.9, junk"], "127.0.0.1");
        check("127.0.0.1", &[], "127.0.0.1");
    }
}
