//! Where the node itself may connect when a client asks it to fetch a copy source. A copy URL is
//! the client's choice; without a check, any client could make the node read what only the node
//! can reach (a loopback service, the cloud's metadata endpoint at 169.254.169.254, a private
//! network) and store the answer where the client reads it. So the host is resolved here, every
//! address it resolves to must be public or in the operator's allow list, and the connection goes
//! to the address that was checked (a second lookup could answer differently).
//!
//! Every failure to reach a source (a refused address, a closed port, a name that does not
//! resolve, a time-out) gets the same answer, so a copy cannot be used to map the network
//! behind the node; the detail goes to the node's log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// What copies may reach and how long they wait.
#[derive(Debug, Clone)]
pub struct Egress {
    /// Internal addresses copies may reach anyway (public ones always may).
    pub allow: Vec<IpNet>,
    /// For resolving, connecting, and the source's answer to start.
    pub timeout: Duration,
}

/// Why a source was not reached; for the log only.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error("{0} does not resolve: {1}")]
    Resolve(String, String),
    #[error("{host} resolves to {addr}, an internal address not in copy_source_allow")]
    Internal { host: String, addr: IpAddr },
    #[error("connecting to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("{0} timed out")]
    TimedOut(&'static str),
    #[error("the request to the source failed: {0}")]
    Exchange(String),
}

/// Whether `ip` is one a copy must not reach unless allowed: this host, private and shared
/// networks, link-local (the cloud metadata service), and the special ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                // Shared address space (carrier-grade NAT), 100.64.0.0/10.
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // Benchmarking (198.18.0.0/15) and reserved (240.0.0.0/4).
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local (fc00::/7) and link-local (fe80::/10).
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                // IPv4-compatible and NAT64 forms can reach IPv4 internals: refused whole.
                || (seg[0..6] == [0, 0, 0, 0, 0, 0])
                || (seg[0] == 0x64 && seg[1] == 0xff9b)
        }
    }
}

impl Egress {
    /// The allow list as configured, else loopback alone when the node itself listens on
    /// loopback only (then only local users reach it, and they reach loopback anyway: the
    /// development setup copies from a local Azurite or a second node), else nothing.
    pub fn new(allow: Option<&[String]>, listen_loopback: bool, timeout: Duration) -> Result<Egress, String> {
        let allow = match allow {
            Some(list) => list
                .iter()
                .map(|s| s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("copy_source_allow: {e}"))?,
            None if listen_loopback => vec![
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            None => Vec::new(),
        };
        Ok(Egress { allow, timeout })
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !is_internal(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Resolves `host:port` and connects to the first address, once every address it resolves
    /// to is allowed.
    pub async fn connect(&self, host: &str, port: u16) -> Result<tokio::net::TcpStream, Unreachable> {
        let bare = host.trim_matches(['[', ']']);
        let addrs: Vec<SocketAddr> = tokio::time::timeout(self.timeout, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| Unreachable::TimedOut("resolving the source"))?
            .map_err(|e| Unreachable::Resolve(host.to_owned(), e.to_string()))?
            .collect();
        if let Some(bad) = addrs.iter().find(|a| !self.allows(a.ip())) {
            return Err(Unreachable::Internal { host: host.to_owned(), addr: bad.ip() });
        }
        let first = *addrs.first().ok_or_else(|| Unreachable::Resolve(host.to_owned(), "no address".into()))?;
        tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(first))
            .await
            .map_err(|_| Unreachable::TimedOut("connecting to the source"))?
            .map_err(|e| Unreachable::Connect(first, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
        }
        for public in ["20.60.1.1", "52.239.0.1", "8.8.8.8", "2603:1030::1", "::ffff:20.60.1.1"] {
            assert!(!is_internal(ip(public)), "{public}");
        }
        let strict = Egress::new(Some(&[]), true, Duration::from_secs(1)).unwrap();
        assert!(!strict.allows(ip("127.0.0.1")) && strict.allows(ip("20.60.1.1")));
        let dev = Egress::new(None, true, Duration::from_secs(1)).unwrap();
        assert!(dev.allows(ip("127.0.0.1")) && dev.allows(ip("::1")) && dev.allows(ip("::ffff:127.0.0.2")));
        assert!(!dev.allows(ip("10.0.0.1")) && !dev.allows(ip("169.254.169.254")), "loopback only");
        let open = Egress::new(None, false, Duration::from_secs(1)).unwrap();
        assert!(!open.allows(ip("127.0.0.1")), "a node others reach refuses loopback by default");
        let lake =
            Egress::new(Some(&["10.20.0.0/16".into(), "192.168.7.7".into()]), false, Duration::from_secs(1)).unwrap();
        assert!(lake.allows(ip("10.20.3.4")) && lake.allows(ip("192.168.7.7")));
        assert!(!lake.allows(ip("10.21.0.1")) && !lake.allows(ip("192.168.7.8")));
        assert!(Egress::new(Some(&["not-a-net".into()]), false, Duration::from_secs(1)).is_err());
    }
}
