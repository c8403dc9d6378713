//! The outbound address policy: which addresses the node may open a connection to when a request
//! named the address (a user's homeserver, a DM invite's target server, a push distributor, a
//! server in someone's server list, the servers of `ProxiedUnread`).
//!
//! Three rules make it hold whatever the request says:
//! - A URL is read with the WHATWG URL parser (the `url` crate), so every spelling of an address
//!   (`127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`, `[::ffff:7f00:1]`) becomes the one
//!   address it means before anything is checked.
//! - A name is resolved when the connection is made, and every address it resolves to is checked;
//!   the connection goes only to an address that passed (no gap for DNS rebinding between a check
//!   and a later resolution).
//! - An address is refused when it falls in [`SPECIAL_PURPOSE`], a table of the IANA IPv4 and IPv6
//!   Special-Purpose Address Registries' blocks that are not globally reachable (plus multicast
//!   and the deprecated blocks), checked also for the IPv4 address carried inside IPv4-mapped,
//!   IPv4-compatible, NAT64 and 6to4 IPv6 addresses. `allow_private_addresses` lifts the rule for
//!   tests and LAN deployments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One block of the deny table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRange {
    /// The block.
    pub net: IpNet,
    /// What the registry calls it.
    pub name: &'static str,
    /// Where it is defined.
    pub rfc: &'static str,
}

const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    len: u8,
    name: &'static str,
    rfc: &'static str,
) -> SpecialRange {
    SpecialRange {
        net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)),
        name,
        rfc,
    }
}

const fn v6(segments: [u16; 8], len: u8, name: &'static str, rfc: &'static str) -> SpecialRange {
    let [a, b, c, d, e, f, g, h] = segments;
    SpecialRange {
        net: IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            len,
        )),
        name,
        rfc,
    }
}

/// Blocks the node never dials for a request unless `allow_private_addresses` is on: the entries
/// of the IANA Special-Purpose Address Registries (IPv4 and IPv6, as of 2024) whose "Globally
/// Reachable" column is False, the multicast blocks, and the deprecated site-local and
/// IPv4-compatible IPv6 blocks. A few anycast addresses the registry marks global inside a denied
/// block (192.0.0.9, 192.0.0.10, 2001:1::1–3, 2001:3::/32, 2001:4:112::/48, 2001:20::/28,
/// 2001:30::/28) are denied with their block: no chat server lives there.
///
/// 64:ff9b::/96 (NAT64), 2002::/16 (6to4) and the IPv4-mapped and IPv4-compatible forms are not
/// listed: the IPv4 address inside them is checked instead (see [`special_purpose`]).
pub const SPECIAL_PURPOSE: &[SpecialRange] = &[
    v4(0, 0, 0, 0, 8, "\"this network\"", "RFC 791"),
    v4(10, 0, 0, 0, 8, "private use", "RFC 1918"),
    v4(
        100,
        64,
        0,
        0,
        10,
        "shared address space (CGNAT)",
        "RFC 6598",
    ),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122"),
    v4(169, 254, 0, 0, 16, "link local", "RFC 3927"),
    v4(172, 16, 0, 0, 12, "private use", "RFC 1918"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890"),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737"),
    v4(
        192,
        88,
        99,
        0,
        24,
        "deprecated 6to4 relay anycast",
        "RFC 7526",
    ),
    v4(192, 168, 0, 0, 16, "private use", "RFC 1918"),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544"),
    v4(
        198,
        51,
        100,
        0,
        24,
        "documentation (TEST-NET-2)",
        "RFC 5737",
    ),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737"),
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771"),
    v4(
        240,
        0,
        0,
        0,
        4,
        "reserved (and limited broadcast)",
        "RFC 1112, RFC 919",
    ),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291"),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use IPv4/IPv6 translation",
        "RFC 8215",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666"),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (Teredo, ORCHID, …)",
        "RFC 2928",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation",
        "RFC 3849",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation",
        "RFC 9637",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing (SRv6) SIDs",
        "RFC 9602",
    ),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local", "RFC 4193"),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        "link-local unicast",
        "RFC 4291",
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "deprecated site-local",
        "RFC 3879",
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291"),
];

/// The IPv4 address an IPv6 address carries, for the forms that route to it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::a.b.c.d`)
/// and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // `::` and `::1` are in the table themselves.
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(tail) > 1 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The deny-table block `ip` falls in, directly or through the IPv4 address it carries.
pub fn special_purpose(ip: IpAddr) -> Option<&'static SpecialRange> {
    let direct = SPECIAL_PURPOSE.iter().find(|r| r.net.contains(&ip));
    direct.or_else(|| match ip {
        IpAddr::V6(v6) => embedded_v4(v6).and_then(|v4| special_purpose(IpAddr::V4(v4))),
        IpAddr::V4(_) => None,
    })
}

/// Whether a URL's scheme asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`: plaintext, for loopback starts and LANs.
    Http,
    /// `https://`: TLS, verified; never spoken to in plaintext.
    Https,
}

/// Where a URL points, as the WHATWG parser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A name to resolve when connecting (lowercase, IDNA-encoded).
    Domain(String),
    /// An address literal, in whatever spelling the URL used.
    Ip(IpAddr),
}

/// A URL the node was asked to reach, parsed once; the check and the connection both use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Plaintext or TLS.
    pub scheme: Scheme,
    /// The host.
    pub host: Host,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
}

impl Target {
    /// Reads `raw` with the WHATWG URL rules: `http`/`https` only, a host, no user name or
    /// password.
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        let url = url::Url::parse(raw).map_err(|e| Refusal::Unusable(format!("not a URL: {e}")))?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(Refusal::Unusable(format!(
                    "scheme {other:?}: only http:// and https:// are spoken"
                )));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Unusable(
                "must not carry a user name or password".into(),
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => Host::Domain(name.to_owned()),
            Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
            None => return Err(Refusal::Unusable("has no host".into())),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Refusal::Unusable("has no port".into()))?;
        Ok(Self { scheme, host, port })
    }

    /// The name TLS checks the certificate against.
    pub fn server_name(&self) -> String {
        match &self.host {
            Host::Domain(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

/// Why the node will not connect to an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The URL can't be used at all.
    #[error("unusable address: {0}")]
    Unusable(String),
    /// The address is in the deny table.
    #[error("{ip} is a {} address ({}), and this server does not connect to those", .range.name, .range.rfc)]
    NotPublic {
        /// The address.
        ip: IpAddr,
        /// Its block.
        range: &'static SpecialRange,
    },
    /// The name resolved only to addresses in the deny table (or to none).
    #[error("{name} resolves to no address this server connects to")]
    NoPublicAddress {
        /// The name.
        name: String,
    },
}

/// The policy itself; cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    allow_private: bool,
}

impl AddressPolicy {
    /// The policy with `allow_private_addresses` set as given.
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Whether non-public addresses are allowed (tests, LANs).
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Whether the node may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allow_private {
            return Ok(());
        }
        match special_purpose(ip) {
            Some(range) => Err(Refusal::NotPublic { ip, range }),
            None => Ok(()),
        }
    }

    /// Parses `raw` and checks an address literal at once, so a request naming a forbidden
    /// address is refused when it is made. Names are checked again at every connection.
    pub fn check_url(&self, raw: &str) -> Result<Target, Refusal> {
        let target = Target::parse(raw)?;
        if let Host::Ip(ip) = target.host {
            self.check_ip(ip)?;
        }
        Ok(target)
    }

    /// The socket addresses to try for `target`, each allowed by the policy: the literal, or
    /// every address the name resolves to that passes.
    pub async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, ResolveError> {
        match &target.host {
            Host::Ip(ip) => {
                self.check_ip(*ip)?;
                Ok(vec![SocketAddr::new(*ip, target.port)])
            }
            Host::Domain(name) => {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), target.port))
                    .await
                    .map_err(ResolveError::Lookup)?
                    .collect();
                let allowed: Vec<SocketAddr> = found
                    .iter()
                    .copied()
                    .filter(|a| self.check_ip(a.ip()).is_ok())
                    .collect();
                if allowed.is_empty() {
                    return Err(Refusal::NoPublicAddress { name: name.clone() }.into());
                }
                Ok(allowed)
            }
        }
    }
}

/// Why a target yielded no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The policy refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The name did not resolve.
    #[error("name lookup failed: {0}")]
    Lookup(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> bool {
        matches!(
            AddressPolicy::new(false).check_url(raw),
            Err(Refusal::NotPublic { .. })
        )
    }

    #[test]
    fn every_spelling_of_loopback_is_refused() {
        for raw in [
            "http://127.0.0.1:7400",
            "http://127.1:7400",
            "http://0x7f000001:7400",
            "http://2130706433:7400",
            "http://0177.0.0.1:7400",
            "http://0x7f.1/",
            "http://[::1]:7400",
            "http://[::ffff:127.0.0.1]:7400",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[::127.0.0.1]/",
            "https://0.0.0.0/",
            "http://0/",
        ] {
            assert!(refused(raw), "{raw} should be refused");
        }
    }

    #[test]
    fn the_table_covers_the_registries_blocks() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.88.99.1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "100::1",
            "64:ff9b:1::1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(special_purpose(ip).is_some(), "{ip} should be in the table");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "2606:4700::1111",
            "64:ff9b::101:101",
            "2002:101:101::1",
            "::ffff:1.1.1.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(special_purpose(ip).is_none(), "{ip} should be allowed");
        }
    }

    #[test]
    fn urls_are_read_by_whatwg_rules() {
        let t = Target::parse("HTTPS://Example.COM/x").expect("parses");
        assert_eq!(t.scheme, Scheme::Https);
        assert_eq!(t.host, Host::Domain("example.com".into()));
        assert_eq!(t.port, 443);
        assert!(Target::parse("ftp://example.com").is_err());
        assert!(Target::parse("http://user:pw@example.com").is_err());
        assert!(Target::parse("example.com:80").is_err());
        assert!(AddressPolicy::new(true).check_url("http://127.1:1").is_ok());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let policy = AddressPolicy::new(false);
        let target = Target::parse("http://localhost:7400").expect("parses");
        assert!(matches!(
            policy.resolve(&target).await,
            Err(ResolveError::Refused(Refusal::NoPublicAddress { .. }))
        ));
        let allowed = AddressPolicy::new(true)
            .resolve(&target)
            .await
            .expect("resolves");
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }
}
