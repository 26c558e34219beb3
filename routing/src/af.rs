//! Address families (RFC 5838): one OSPFv3 instance per family, told apart
//! by the Instance ID, all running over IPv6 link-local addresses.
//!
//! An IPv4 instance differs from the base IPv6 one in a few places only:
//! - its Instance IDs are 64-95 (RFC 5838 §2.1) and its Hellos, DD packets
//!   and LSAs carry the AF-bit, with the V6-bit clear (§2.2); a Hello
//!   without the AF-bit is discarded (§2.4);
//! - its prefixes have at most 32 bits, in the same encoding as IPv6 ones:
//!   the length and the address bits left-aligned in 32-bit words (§2.3).
//!   So the core keeps an IPv4 prefix as the [`Ipv6Net`] that encoding
//!   reads as (the IPv4 bits on top, length at most 32): the LSDB, flooding
//!   and SPF need no second prefix type, and embeddings convert at the edge
//!   with [`ipv4_to_wire`] and [`wire_to_ipv4`];
//! - the Link-LSA's address field holds the router's IPv4 address on the
//!   link in its first four bytes, the rest zero (§2.7), which is what
//!   other routers (BIRD) compute next hops from;
//! - a router is a transit router by its R-bit alone (§2.8).
//!
//! Next hops: this crate always gives the neighbour's IPv6 link-local
//! address (the source of its Hellos), for IPv4 routes too. Linux routes
//! IPv4 through an IPv6 gateway (`via inet6`, RTA_VIA), so no link needs an
//! IPv4 address. RFC 5838 §2.7 takes the next hop from the neighbour's
//! Link-LSA instead; a router that does (BIRD) needs ours to carry an IPv4
//! address: [`AddressFamily::Ipv4`]'s `interface_address`.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::packet::Options;

/// What an instance routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AddressFamily {
    /// IPv6 unicast, the base family (Instance IDs 0-31).
    #[default]
    Ipv6,
    /// IPv4 unicast (Instance IDs 64-95).
    Ipv4 {
        /// Our IPv4 address on every link, put into our Link-LSAs for
        /// routers that take next hops from there (typically the node's
        /// /32); `None` leaves the field zero.
        interface_address: Option<Ipv4Addr>,
    },
}

impl AddressFamily {
    /// The Instance IDs of this family (RFC 5838 §2.1).
    pub fn instance_ids(self) -> std::ops::RangeInclusive<u8> {
        match self {
            AddressFamily::Ipv6 => 0..=31,
            AddressFamily::Ipv4 { .. } => 64..=95,
        }
    }

    /// The family's default Instance ID: the first of its range (BIRD's
    /// default too).
    pub fn default_instance_id(self) -> u8 {
        *self.instance_ids().start()
    }

    /// The options of our Hellos, DD packets and LSAs.
    pub fn options(self) -> Options {
        match self {
            AddressFamily::Ipv6 => Options::DEFAULT,
            AddressFamily::Ipv4 { .. } => Options(Options::AF | Options::E | Options::R),
        }
    }

    /// The longest prefix of the family.
    pub fn max_prefix_len(self) -> u8 {
        match self {
            AddressFamily::Ipv6 => 128,
            AddressFamily::Ipv4 { .. } => 32,
        }
    }

    /// Return whether a Hello's options are acceptable to an instance of
    /// this family: an IPv4 instance requires the AF-bit (RFC 5838 §2.4).
    pub fn accepts_hello(self, options: Options) -> bool {
        match self {
            AddressFamily::Ipv6 => true,
            AddressFamily::Ipv4 { .. } => options.contains(Options::AF),
        }
    }

    /// Return whether a router with these Router-LSA options forwards
    /// transit traffic of this family (RFC 5340 §4.8.1; RFC 5838 §2.8).
    pub fn is_transit(self, options: Options) -> bool {
        match self {
            AddressFamily::Ipv6 => options.contains(Options::V6) && options.contains(Options::R),
            AddressFamily::Ipv4 { .. } => options.contains(Options::R),
        }
    }

    /// The Link-LSA's address field on a link where our IPv6 link-local
    /// address is `link_local`.
    pub fn link_lsa_address(self, link_local: Ipv6Addr) -> Ipv6Addr {
        match self {
            AddressFamily::Ipv6 => link_local,
            AddressFamily::Ipv4 { interface_address } => {
                ipv4_in_link_lsa(interface_address.unwrap_or(Ipv4Addr::UNSPECIFIED))
            }
        }
    }
}

/// Return an IPv4 prefix as its encoding reads in an LSA.
pub fn ipv4_to_wire(p: Ipv4Net) -> Ipv6Net {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&p.network().octets());
    // A length of at most 32 is always valid for an IPv6 prefix.
    Ipv6Net::new(Ipv6Addr::from(a), p.prefix_len()).unwrap_or_default()
}

/// Return the IPv4 prefix an LSA prefix of an IPv4 instance stands for, or
/// `None` if it is longer than 32 bits (not of the family).
pub fn wire_to_ipv4(p: Ipv6Net) -> Option<Ipv4Net> {
    if p.prefix_len() > 32 {
        return None;
    }
    let o = p.network().octets();
    Ipv4Net::new(Ipv4Addr::new(o[0], o[1], o[2], o[3]), p.prefix_len())
        .ok()
        .map(|n| n.trunc())
}

/// The Link-LSA address field for IPv4 address `a` (RFC 5838 §2.7).
pub fn ipv4_in_link_lsa(a: Ipv4Addr) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&a.octets());
    Ipv6Addr::from(b)
}

/// The IPv4 address in a Link-LSA address field of an IPv4 instance, if it
/// is one (the last 12 bytes zero) and not 0.0.0.0.
pub fn ipv4_of_link_lsa(field: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = field.octets();
    if o[4..].iter().any(|b| *b != 0) {
        return None;
    }
    let a = Ipv4Addr::new(o[0], o[1], o[2], o[3]);
    (!a.is_unspecified()).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_prefixes_round_trip_through_the_lsa_encoding() {
        for s in [
            "198.18.0.0/15",
            "198.18.3.0/24",
            "198.18.0.7/32",
            "0.0.0.0/0",
        ] {
            let p: Ipv4Net = s.parse().unwrap();
            let w = ipv4_to_wire(p);
            assert_eq!(w.prefix_len(), p.prefix_len());
            assert_eq!(wire_to_ipv4(w), Some(p), "{s}");
        }
        // 198.18.3.0/24 reads as c612:300::/24 in an IPv6 parse.
        assert_eq!(
            ipv4_to_wire("198.18.3.0/24".parse().unwrap()),
            "c612:300::/24".parse::<Ipv6Net>().unwrap()
        );
        assert_eq!(wire_to_ipv4("2001:db8::/33".parse().unwrap()), None);
    }

    #[test]
    fn the_link_lsa_field_holds_the_ipv4_address_first() {
        let a = Ipv4Addr::new(198, 18, 0, 9);
        let f = ipv4_in_link_lsa(a);
        assert_eq!(f.octets()[..4], a.octets());
        assert_eq!(ipv4_of_link_lsa(f), Some(a));
        assert_eq!(ipv4_of_link_lsa("fe80::1".parse().unwrap()), None);
        assert_eq!(ipv4_of_link_lsa(Ipv6Addr::UNSPECIFIED), None);
    }

    #[test]
    fn options_and_checks_by_family() {
        let v4 = AddressFamily::Ipv4 {
            interface_address: None,
        };
        // AF, R and E: what BIRD 2 sends too (`ospf_opts`).
        assert_eq!(v4.options().0, 0x000112);
        assert!(!v4.options().contains(Options::V6));
        assert!(!v4.accepts_hello(Options::DEFAULT));
        assert!(v4.accepts_hello(v4.options()));
        assert!(AddressFamily::Ipv6.accepts_hello(Options::DEFAULT));
        // BIRD's IPv4 instance clears V6: still a transit router for IPv4,
        // not for IPv6.
        assert!(v4.is_transit(v4.options()));
        assert!(!AddressFamily::Ipv6.is_transit(v4.options()));
        assert_eq!(v4.default_instance_id(), 64);
        assert_eq!(AddressFamily::Ipv6.default_instance_id(), 0);
    }
}
