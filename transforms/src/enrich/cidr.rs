//! Longest-prefix matching of IP addresses against CIDR networks.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Networks mapped to row indexes; a lookup returns the longest matching prefix.
///
/// One hash map per prefix length, probed from the longest length present down: at
/// most 33 (IPv4) or 129 (IPv6) probes, usually a handful, and no dependency on a trie crate.
#[derive(Debug, Default)]
pub struct CidrTable {
    v4: PrefixMaps,
    v6: PrefixMaps,
}

#[derive(Debug, Default)]
struct PrefixMaps {
    /// (prefix length, network bits → row), longest prefix first.
    by_len: Vec<(u8, HashMap<u128, usize>)>,
}

impl PrefixMaps {
    fn insert(&mut self, bits: u128, len: u8, width: u8, row: usize) {
        let key = mask(bits, len, width);
        let position = self.by_len.iter().position(|(l, _)| *l <= len);
        match position {
            Some(i) if self.by_len[i].0 == len => {
                self.by_len[i].1.insert(key, row);
            }
            Some(i) => self.by_len.insert(i, (len, HashMap::from([(key, row)]))),
            None => self.by_len.push((len, HashMap::from([(key, row)]))),
        }
    }

    fn get(&self, bits: u128, width: u8) -> Option<usize> {
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&mask(bits, *len, width)).copied())
    }
}

/// Keeps the first `len` of `width` bits.
fn mask(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let keep = u128::MAX << (128 - u32::from(len));
        (bits << (128 - u32::from(width))) & keep
    }
}

impl CidrTable {
    /// Adds a network; a later row for the same network replaces an earlier one.
    pub fn insert(&mut self, net: IpNet, row: usize) {
        match net {
            IpNet::V4(n) => {
                self.v4
                    .insert(u128::from(n.network().to_bits()), n.prefix_len(), 32, row)
            }
            IpNet::V6(n) => self
                .v6
                .insert(n.network().to_bits(), n.prefix_len(), 128, row),
        }
    }

    /// The row of the longest network containing `ip`.
    pub fn get(&self, ip: IpAddr) -> Option<usize> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.get(u128::from(v4.to_bits()), 32),
            IpAddr::V6(v6) => self.v6.get(v6.to_bits(), 128),
        }
    }
}

/// Parses a table cell: a network (`10.0.0.0/8`) or one address (a /32 or /128).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| super::ip::parse_ip(text).map(IpNet::from))
        .map(|net| {
            // `::ffff:10.0.0.0/104` style rows must match canonical IPv4 lookups.
            match net {
                IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
                    Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
                        .map(IpNet::V4)
                        .unwrap_or(net),
                    None => net,
                },
                other => other,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&str]) -> CidrTable {
        let mut table = CidrTable::default();
        for (i, row) in rows.iter().enumerate() {
            table.insert(parse_net(row).expect("valid network"), i);
        }
        table
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid IP")
    }

    #[test]
    fn longest_prefix_wins_whatever_the_row_order() {
        let t = table(&["10.0.0.0/8", "10.1.2.0/24", "10.1.0.0/16", "0.0.0.0/0"]);
        assert_eq!(t.get(ip("10.1.2.3")), Some(1));
        assert_eq!(t.get(ip("10.1.9.9")), Some(2));
        assert_eq!(t.get(ip("10.9.9.9")), Some(0));
        assert_eq!(t.get(ip("8.8.8.8")), Some(3));
    }

    #[test]
    fn ipv6_and_single_addresses() {
        let t = table(&[
            "2001:db8::/32",
            "2001:db8:1::/48",
            "192.0.2.7",
            "2001:db8::1",
        ]);
        assert_eq!(t.get(ip("2001:db8:1::5")), Some(1));
        assert_eq!(t.get(ip("2001:db8:2::5")), Some(0));
        assert_eq!(t.get(ip("2001:db8::1")), Some(3));
        assert_eq!(t.get(ip("192.0.2.7")), Some(2));
        assert_eq!(t.get(ip("192.0.2.8")), None);
        assert_eq!(t.get(ip("2001:db9::1")), None);
    }

    #[test]
    fn mapped_addresses_match_ipv4_rows() {
        let t = table(&["10.0.0.0/8", "::ffff:192.168.0.0/112"]);
        assert_eq!(t.get(ip("::ffff:10.1.2.3")), Some(0));
        assert_eq!(t.get(ip("192.168.4.4")), Some(1));
    }

    #[test]
    fn host_bits_in_a_row_are_ignored() {
        let t = table(&["10.1.2.3/16"]);
        assert_eq!(t.get(ip("10.1.200.1")), Some(0));
    }
}
