//! The network guard: a crawler inside a cluster must not become a proxy into the cluster.
//!
//! Every destination is checked twice: an IP-literal URL before the request is sent, and
//! every address a host name resolves to inside the HTTP client's resolver (so a public name
//! that resolves to a private address — DNS rebinding — is refused too). Unless the worker
//! runs with `--allow-private-networks`, loopback, private (RFC 1918, RFC 4193), link-local,
//! carrier-grade NAT, unspecified, broadcast, multicast, documentation, IETF protocol
//! assignment (192.0.0.0/24) and IPv6 site-local addresses are refused; so are IPv6 forms
//! that carry an IPv4 address (IPv4-mapped, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) when the address they carry is refused, and the local-use NAT64 prefix
//! `64:ff9b:1::/48` always. `--resolve` overrides are checked the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether a destination address may be fetched when private networks are not allowed.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

/// The IPv4 address an IPv6 address stands for, where it stands for one: IPv4-mapped
/// (`::ffff:0:0/96`), IPv4-compatible (`::/96`, deprecated but still routed by some stacks),
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`, the address in bits 16–47).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4-compatible.
    if s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 192.0.0.0/24, IETF protocol assignments (DS-Lite, NAT64 discovery, ...).
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // 100.64.0.0/10, carrier-grade NAT: often a cluster's pod or node network.
        || (a == 100 && (64..128).contains(&b))
        // 198.18.0.0/15, benchmarking; 240.0.0.0/4, reserved.
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // fec0::/10, site-local (deprecated, still private where used).
        || (first & 0xffc0) == 0xfec0
        // 64:ff9b:1::/48, NAT64 for local use: translates into the operator's own networks.
        || (first == 0x64 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// A resolver that drops every non-public address a name resolves to, and fails when none
/// is left. Installed into the HTTP client when private networks are not allowed.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The resolver as the client builder takes it.
pub fn resolver() -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver)
}

/// A destination refused by the guard.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to private, loopback or link-local addresses")]
pub struct Refused {
    /// The host name.
    pub host: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_cluster_and_local_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            // Regression: these were allowed before.
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "::10.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "fec0::1",
            "192.0.0.1",
            "192.0.0.170",
        ] {
            assert!(
                !is_public(ip.parse().expect("valid ip")),
                "{ip} should be refused"
            );
        }
    }

    #[test]
    fn allows_public_addresses() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "192.0.1.1",
        ] {
            assert!(
                is_public(ip.parse().expect("valid ip")),
                "{ip} should be allowed"
            );
        }
    }
}
