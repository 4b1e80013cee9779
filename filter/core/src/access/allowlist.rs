//! A user's IP allowlist: addresses and CIDR networks a client must come from.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::excerpt::excerpt;

const IPV4_BITS: u8 = 32;
const IPV6_BITS: u8 = 128;
/// Prefix length of `::ffff:0:0/96`, the IPv4-mapped IPv6 addresses.
const MAPPED_IPV4_PREFIX_LEN: u8 = 96;

/// The networks a user's requests may come from, parsed once; an empty list allows every
/// address.
///
/// Matching is a linear scan: lists hold a handful of entries (up to about a hundred), where a
/// scan of a contiguous `Vec` costs a few nanoseconds per entry and beats building a trie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowlist {
    ipv4: Vec<Ipv4Net>,
    ipv6: Vec<Ipv6Net>,
}

impl IpAllowlist {
    /// Parses entries such as `10.0.0.1`, `192.168.1.0/24`, `2001:db8::/32` or `::1`,
    /// refusing the first that is not a valid address or network (see
    /// [`validate_allowlist_entry`]).
    ///
    /// IPv6 entries inside `::ffff:0:0/96` are kept as the IPv4 networks they denote.
    pub fn parse(entries: &[String]) -> Result<Self, AllowlistError> {
        let mut allowlist = Self::default();
        for entry in entries {
            match parse_entry(entry)? {
                IpNet::V4(network) => allowlist.ipv4.push(network),
                IpNet::V6(network) => allowlist.ipv6.push(network),
            }
        }
        Ok(allowlist)
    }

    /// An empty list allows every address.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ipv4.is_empty() && self.ipv6.is_empty()
    }

    /// Whether a client at `ip` may call. An IPv4-mapped IPv6 client is matched as IPv4.
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.is_empty() {
            return true;
        }
        match ip.to_canonical() {
            IpAddr::V4(ip) => self.ipv4.iter().any(|network| network.contains(&ip)),
            IpAddr::V6(ip) => self.ipv6.iter().any(|network| network.contains(&ip)),
        }
    }
}

/// Checks one allowlist entry: an IPv4 or IPv6 address, or one with a `/prefix` whose host bits
/// are all zero.
///
/// Addresses are read by the standard library, which refuses IPv4 octets with leading zeros
/// (`010.0.0.1` is octal to some tools and decimal to others); `ipnet`'s own parser would accept
/// them. Host bits set (`10.0.0.1/8`) are refused rather than truncated, since the operator
/// meant either a host or a network and only they know which.
pub fn validate_allowlist_entry(entry: &str) -> Result<(), AllowlistError> {
    parse_entry(entry).map(|_| ())
}

fn parse_entry(entry: &str) -> Result<IpNet, AllowlistError> {
    let (address, prefix_len) = match entry.split_once('/') {
        Some((address, prefix_len)) => (address, Some(prefix_len)),
        None => (entry, None),
    };
    let address: IpAddr = address.parse().map_err(|_| AllowlistError::NotAnAddress {
        entry: excerpt(entry),
    })?;
    let max_prefix_len = if address.is_ipv4() {
        IPV4_BITS
    } else {
        IPV6_BITS
    };
    let prefix_len = match prefix_len {
        None => max_prefix_len,
        Some(text) => parse_prefix_len(text).ok_or_else(|| AllowlistError::BadPrefixLength {
            entry: excerpt(entry),
            max: max_prefix_len,
        })?,
    };
    let network = IpNet::new(address, prefix_len).map_err(|_| AllowlistError::BadPrefixLength {
        entry: excerpt(entry),
        max: max_prefix_len,
    })?;
    if network.trunc() != network {
        return Err(AllowlistError::HostBitsSet {
            entry: excerpt(entry),
            network: network.trunc().to_string(),
        });
    }
    Ok(unmapped(network))
}

/// Decimal digits only: `u8::from_str` would also take `+8`.
fn parse_prefix_len(text: &str) -> Option<u8> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `::ffff:10.0.0.0/104` as `10.0.0.0/8`, since clients are matched in their IPv4 form.
fn unmapped(network: IpNet) -> IpNet {
    let IpNet::V6(ipv6) = network else {
        return network;
    };
    match (
        ipv6.network().to_ipv4_mapped(),
        ipv6.prefix_len().checked_sub(MAPPED_IPV4_PREFIX_LEN),
    ) {
        (Some(ipv4), Some(prefix_len)) => Ipv4Net::new(ipv4, prefix_len).map_or(network, IpNet::V4),
        _ => network,
    }
}

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowlistError {
    /// The part before any `/` is not an IPv4 or IPv6 address.
    NotAnAddress {
        /// The start of the entry.
        entry: String,
    },
    /// The part after `/` is not a number from 0 to the address's bit count.
    BadPrefixLength {
        /// The start of the entry.
        entry: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set beyond the prefix, e.g. `10.0.0.1/8`.
    HostBitsSet {
        /// The start of the entry.
        entry: String,
        /// The network the prefix denotes, e.g. `10.0.0.0/8`.
        network: String,
    },
}

impl fmt::Display for AllowlistError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnAddress { entry } => write!(
                formatter,
                "allowlist entry {entry:?} is not an IP address or CIDR network"
            ),
            Self::BadPrefixLength { entry, max } => write!(
                formatter,
                "allowlist entry {entry:?} has an invalid prefix length (expected 0 to {max})"
            ),
            Self::HostBitsSet { entry, network } => write!(
                formatter,
                "allowlist entry {entry:?} has host bits set; write {network} for the network \
                 or drop the prefix for one address"
            ),
        }
    }
}

impl std::error::Error for AllowlistError {}

#[cfg(test)]
mod tests;
