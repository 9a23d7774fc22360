//! Addresses: CIDR blocks and the client IP behind trusted proxies.

use crate::config::ConfigError;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP block such as `10.0.0.0/8` or `2001:db8::/32`; a bare IP is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 peer (::ffff:10.0.0.1) is matched as the IPv4 address it is.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, width: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(width - prefix);
    (a >> shift) == (b >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("invalid IP address `{addr}`"))?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("invalid prefix length `{p}` (0 to {width})"))?,
            None => width,
        };
        Ok(Self { network, prefix })
    }
}

/// Parses a list of CIDRs for config field `field`.
pub fn parse_cidrs(field: &str, items: &[String]) -> Result<Vec<Cidr>, ConfigError> {
    crate::config::validate_list(field, items, |s| {
        s.parse::<Cidr>().map_err(|e| ConfigError::at("", e))
    })
}

/// The client IP, trusting exactly `trusted_hops` proxies in front of this one.
///
/// Each trusted proxy appends the address it saw to `x-forwarded-for`, so the client
/// is the `trusted_hops`-th entry from the right; everything left of it was written by
/// the client and may be forged. With 0 hops, or when the header has fewer entries
/// than there are trusted hops (a trusted proxy did not append, so what is there came
/// from the client), the TCP peer is the client.
pub fn client_ip<'a>(
    xff_values: impl Iterator<Item = &'a str>,
    trusted_hops: u32,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = xff_values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let hops = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
    if entries.len() < hops {
        return peer;
    }
    entries[entries.len() - hops].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(!c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one: Cidr = "192.168.1.1".parse().unwrap();
        assert!(one.contains(ip("192.168.1.1")) && !one.contains(ip("192.168.1.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
    }

    #[test]
    fn cidr_errors_say_what_is_wrong() {
        assert!("10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("prefix"));
        assert!("nope/8".parse::<Cidr>().unwrap_err().contains("invalid IP"));
    }

    #[test]
    fn zero_hops_ignores_forwarded_for() {
        let got = client_ip(["6.6.6.6"].into_iter(), 0, Some(ip("10.0.0.1")));
        assert_eq!(got, Some(ip("10.0.0.1")));
    }

    #[test]
    fn trusted_hops_pick_from_the_right() {
        // client 1.1.1.1 -> LB (appends 1.1.1.1) -> this proxy; a forged entry on the left.
        let xff = ["6.6.6.6, 1.1.1.1"];
        assert_eq!(client_ip(xff.into_iter(), 1, None), Some(ip("1.1.1.1")));
        let xff = ["6.6.6.6", "1.1.1.1, 2.2.2.2"];
        assert_eq!(client_ip(xff.into_iter(), 2, None), Some(ip("1.1.1.1")));
    }

    #[test]
    fn too_few_entries_fall_back_to_the_peer() {
        let got = client_ip(["6.6.6.6"].into_iter(), 2, Some(ip("10.0.0.1")));
        assert_eq!(got, Some(ip("10.0.0.1")));
    }

    #[test]
    fn garbage_entry_is_no_ip() {
        assert_eq!(
            client_ip(["x, y"].into_iter(), 1, Some(ip("10.0.0.1"))),
            None
        );
    }
}
