//! Which addresses the gateway may dial. A registry record is written by a stranger: a name
//! pointing at `127.0.0.1:5432`, at the cloud metadata service (169.254.169.254) or at a
//! host inside the operator's network would turn the gateway into a proxy into places no
//! caller should reach (SSRF). Every address a record's endpoint resolves to is checked
//! here, and only the checked address is dialled.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused; shown to the caller (it names a range, not a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 0.0.0.0/8, `::`: "this host".
    Unspecified,
    /// 127/8, `::1`.
    Loopback,
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// 169.254/16 (cloud metadata lives here), fe80::/10.
    LinkLocal,
    /// 100.64/10, carrier-grade NAT (RFC 6598).
    SharedCgnat,
    /// fc00::/7 (RFC 4193), fec0::/10 (deprecated site-local).
    UniqueLocal,
    /// Multicast and broadcast: never a provider.
    Multicast,
    /// Documentation, benchmarking, IETF-reserved and future-use ranges.
    Reserved,
    /// Teredo (2001::/32): the embedded IPv4 is obfuscated, so it cannot be checked.
    Teredo,
    /// One of the gateway's own addresses: a request looping back into itself.
    Gateway,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private-network address",
            Self::LinkLocal => "a link-local address",
            Self::SharedCgnat => "a carrier-grade NAT address",
            Self::UniqueLocal => "a unique-local address",
            Self::Multicast => "a multicast or broadcast address",
            Self::Reserved => "a reserved address",
            Self::Teredo => "a Teredo address",
            Self::Gateway => "the gateway's own address",
        })
    }
}

/// The rule applied to every address before it is dialled.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// `--dev`: loopback providers are allowed (everything runs on one machine). Nothing
    /// else is relaxed: a dev gateway still refuses private and link-local ranges.
    pub allow_loopback: bool,
    /// The gateway's own addresses, refused even when loopback is allowed.
    pub own: Vec<std::net::SocketAddr>,
}

impl AddressPolicy {
    /// Checks `addr` (ip and port: the gateway's own listener is refused by both).
    pub fn check(&self, addr: std::net::SocketAddr) -> Result<(), Denied> {
        if self.own.iter().any(|own| {
            own.port() == addr.port() && (own.ip() == addr.ip() || own.ip().is_unspecified())
        }) {
            return Err(Denied::Gateway);
        }
        match classify(addr.ip()) {
            Ok(()) => Ok(()),
            Err(Denied::Loopback) if self.allow_loopback => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether `ip` is a globally routable unicast address; the range it falls in when not.
/// IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by
/// the embedded address.
pub fn classify(ip: IpAddr) -> Result<(), Denied> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Result<(), Denied> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => Err(Denied::Unspecified),
        (127, _, _) => Err(Denied::Loopback),
        (10, _, _) | (192, 168, _) => Err(Denied::Private),
        (172, 16..=31, _) => Err(Denied::Private),
        (169, 254, _) => Err(Denied::LinkLocal),
        (100, 64..=127, _) => Err(Denied::SharedCgnat),
        // IETF protocol assignments, TEST-NET-1/2/3, benchmarking (198.18/15), 6to4 relay
        // anycast (192.88.99/24), future use (240/4) and broadcast.
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (192, 88, 99) => {
            Err(Denied::Reserved)
        }
        (198, 18..=19, _) => Err(Denied::Reserved),
        (224..=239, _, _) => Err(Denied::Multicast),
        (255, 255, 255) if ip == Ipv4Addr::BROADCAST => Err(Denied::Multicast),
        (240..=255, _, _) => Err(Denied::Reserved),
        _ => Ok(()),
    }
}

fn classify_v6(ip: Ipv6Addr) -> Result<(), Denied> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Err(Denied::Unspecified);
    }
    if ip.is_loopback() {
        return Err(Denied::Loopback);
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if s[..6] == [0; 6] {
        return classify_v4(embedded_tail(s));
    }
    // 64:ff9b::/96, the NAT64 well-known prefix, carries the IPv4 it translates to.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_tail(s));
    }
    // 64:ff9b:1::/48 is for local NAT64 deployments: whatever it reaches is local.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Err(Denied::Private);
    }
    // 2002:AABB:CCDD::/48, 6to4, embeds the IPv4 a.b.c.d in bits 16..48.
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Err(Denied::Teredo);
    }
    match s[0] {
        0xfe80..=0xfebf => Err(Denied::LinkLocal),
        0xfec0..=0xfeff => Err(Denied::UniqueLocal),
        0xfc00..=0xfdff => Err(Denied::UniqueLocal),
        0xff00..=0xffff => Err(Denied::Multicast),
        // 2001:db8::/32 documentation, 100::/64 discard, 2001:2::/48 benchmarking,
        // 3fff::/20 documentation (RFC 9637).
        0x2001 if s[1] == 0xdb8 || s[1] == 2 => Err(Denied::Reserved),
        0x0100 if s[1..4] == [0, 0, 0] => Err(Denied::Reserved),
        0x3fff if s[1] <= 0x0fff => Err(Denied::Reserved),
        // Everything outside 2000::/3 is unassigned or special.
        0x2000..=0x3fff => Ok(()),
        _ => Err(Denied::Reserved),
    }
}

fn embedded_tail(s: [u16; 8]) -> Ipv4Addr {
    let [a, b] = s[6].to_be_bytes();
    let [c, d] = s[7].to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(s: &str) -> Option<Denied> {
        classify(s.parse().expect("address")).err()
    }

    #[test]
    fn every_denied_range() {
        let cases = [
            ("0.0.0.0", Denied::Unspecified),
            ("0.1.2.3", Denied::Unspecified),
            ("127.0.0.1", Denied::Loopback),
            ("127.255.0.9", Denied::Loopback),
            ("10.0.0.1", Denied::Private),
            ("10.255.255.255", Denied::Private),
            ("172.16.0.1", Denied::Private),
            ("172.31.255.1", Denied::Private),
            ("192.168.1.1", Denied::Private),
            ("169.254.169.254", Denied::LinkLocal),
            ("100.64.0.1", Denied::SharedCgnat),
            ("100.127.255.254", Denied::SharedCgnat),
            ("192.0.0.8", Denied::Reserved),
            ("192.0.2.1", Denied::Reserved),
            ("198.51.100.7", Denied::Reserved),
            ("203.0.113.9", Denied::Reserved),
            ("198.18.0.1", Denied::Reserved),
            ("192.88.99.1", Denied::Reserved),
            ("240.0.0.1", Denied::Reserved),
            ("224.0.0.1", Denied::Multicast),
            ("255.255.255.255", Denied::Multicast),
            ("::", Denied::Unspecified),
            ("::1", Denied::Loopback),
            ("::ffff:127.0.0.1", Denied::Loopback),
            ("::ffff:10.1.2.3", Denied::Private),
            ("::ffff:169.254.169.254", Denied::LinkLocal),
            ("::127.0.0.1", Denied::Loopback),
            ("64:ff9b::10.0.0.1", Denied::Private),
            ("64:ff9b::169.254.169.254", Denied::LinkLocal),
            ("64:ff9b::7f00:1", Denied::Loopback),
            ("64:ff9b:1::1", Denied::Private),
            ("2002:7f00:1::1", Denied::Loopback),
            ("2002:a9fe:a9fe::1", Denied::LinkLocal),
            ("2002:c0a8:101::", Denied::Private),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Denied::Teredo),
            ("fe80::1", Denied::LinkLocal),
            ("fc00::1", Denied::UniqueLocal),
            ("fd12:3456::1", Denied::UniqueLocal),
            ("fec0::1", Denied::UniqueLocal),
            ("ff02::1", Denied::Multicast),
            ("2001:db8::1", Denied::Reserved),
            ("100::1", Denied::Reserved),
            ("3fff::1", Denied::Reserved),
            ("4000::1", Denied::Reserved),
        ];
        for (addr, why) in cases {
            assert_eq!(denied(addr), Some(why), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert_eq!(denied(addr), None, "{addr}");
        }
    }

    #[test]
    fn dev_allows_loopback_but_never_the_gateway_itself() {
        let own = "127.0.0.1:8088".parse().expect("addr");
        let policy = AddressPolicy {
            allow_loopback: true,
            own: vec![own],
        };
        assert_eq!(policy.check("127.0.0.1:8080".parse().expect("a")), Ok(()));
        assert_eq!(
            policy.check("[::ffff:127.0.0.1]:80".parse().expect("a")),
            Ok(())
        );
        assert_eq!(policy.check(own), Err(Denied::Gateway));
        assert_eq!(
            policy.check("10.0.0.1:80".parse().expect("a")),
            Err(Denied::Private)
        );
        let strict = AddressPolicy::default();
        assert_eq!(
            strict.check("[::ffff:127.0.0.1]:80".parse().expect("a")),
            Err(Denied::Loopback)
        );
        let wildcard = AddressPolicy {
            allow_loopback: true,
            own: vec!["0.0.0.0:8088".parse().expect("a")],
        };
        assert_eq!(
            wildcard.check("127.0.0.1:8088".parse().expect("a")),
            Err(Denied::Gateway)
        );
    }
}
