//! A tiny deterministic random source (SplitMix64) keyed by hashes of the world's coordinates.
//!
//! Not cryptographic; what matters is that the same key always yields the same stream, on
//! every platform and every version of every dependency.

/// SplitMix64 finaliser: spreads any 64-bit value over the whole range.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over the bytes of a string (case-folded, as tenant ids compare case-insensitively).
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Combines several coordinates into one key.
pub(crate) fn key(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5151_u64, |acc, p| {
        mix(acc ^ p.wrapping_mul(0x2545_F491_4F6C_DD1D))
    })
}

/// A deterministic stream of pseudo-random numbers.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A stream starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability p.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A version-4 GUID in lower-case 8-4-4-4-12 form.
    pub(crate) fn guid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// Lower-case hexadecimal digits.
    pub(crate) fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(digits);
        s
    }

    /// An IPv4 address from the documentation ranges (RFC 5737), never a real host.
    pub(crate) fn public_ipv4(&mut self) -> String {
        let net = *self.pick(&["192.0.2", "198.51.100", "203.0.113"]);
        format!("{net}.{}", 1 + self.below(254))
    }

    /// An IPv6 address from the documentation prefix (RFC 3849).
    pub(crate) fn ipv6(&mut self) -> String {
        format!(
            "2001:db8:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}",
            self.below(0x10000),
            self.below(0x10000),
            self.below(0x10000),
            self.below(0x10000),
            self.below(0x10000),
            self.below(0x10000)
        )
    }
}
