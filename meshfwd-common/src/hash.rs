//! The project's one stable hash: FNV-1a 64, the same value on every build,
//! machine and release, unlike `std`'s hashers.
//!
//! Names and identities other components rely on are derived from it, so
//! its output is part of the contract and pinned by tests:
//! - the router id and the pod prefix candidates (`meshfwd` agent), through
//!   [`stable_hash`]: a changed value would renumber a running cluster;
//! - a pod's host veth name and MACs (`cni`), through [`fnv1a`]: DEL and GC
//!   find the veth by recomputing its name;
//! - the tag of the pinned TC programs (the data-plane crate), through
//!   [`fnv1a`].

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Return FNV-1a 64 of `parts` laid end to end.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = OFFSET_BASIS;
    for part in parts {
        h = feed(h, part);
    }
    h
}

/// Return a well-mixed 64-bit hash of `parts`: FNV-1a with a separator
/// after each part, so `("ab", "c")` and `("a", "bc")` differ, and a
/// murmur3 finaliser, so nearby inputs land far apart.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = OFFSET_BASIS;
    for part in parts {
        h = feed(feed(h, part), &[0xff]);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn feed(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // From the FNV reference (draft-eastlake-fnv): FNV-1a 64.
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foobar"]));
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Router ids and pod prefixes of running clusters depend on these.
        assert_eq!(stable_hash(&[b"abc"]), 0x3ee0_641e_1a67_4131);
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }
}
