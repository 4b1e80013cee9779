//! Which address a request comes from: the peer itself, or the `X-Forwarded-For` entry that a
//! configured number of trusted proxies vouch for.

use std::fmt;
use std::io::{Cursor, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::excerpt::excerpt;

/// The client's address for allowlists and per-IP limits.
///
/// `source_address` is Envoy's `source.address` (`127.0.0.1:51234`, `[::1]:8080`, or an address
/// without port). With `trusted_hops == 0`, `X-Forwarded-For` is ignored: any client can write
/// that header, so it only counts when the peer is a proxy the operator trusts.
///
/// With `trusted_hops == N > 0` the peer is trusted as `N` proxies, each of which appended the
/// address it saw to `X-Forwarded-For` (several header values joined by `", "`). The client is
/// the `N`-th entry from the right; entries further left were written by the client or by
/// untrusted hops and are never used. A list shorter than `N` yields its leftmost entry; an absent
/// or blank header yields the peer.
///
/// Entries may be IPv4 or IPv6, bracketed or not, with or without a port. IPv4-mapped IPv6
/// addresses (`::ffff:1.2.3.4`) come back as IPv4 so that one client has one address.
pub fn client_ip(
    source_address: &str,
    forwarded_for: Option<&[u8]>,
    trusted_hops: u8,
) -> Result<IpAddr, ClientIpError> {
    let peer =
        parse_address(source_address).ok_or_else(|| ClientIpError::InvalidSourceAddress {
            value: excerpt(source_address),
        })?;
    if trusted_hops == 0 {
        return Ok(peer);
    }
    let Some(list) = forwarded_for.filter(|list| !list.trim_ascii().is_empty()) else {
        return Ok(peer);
    };
    // `rsplit` yields at least one piece, so the fallback is never taken.
    let entry = list
        .rsplit(|&byte| byte == b',')
        .take(usize::from(trusted_hops))
        .last()
        .unwrap_or(list)
        .trim_ascii();
    std::str::from_utf8(entry)
        .ok()
        .and_then(parse_address)
        .ok_or_else(|| ClientIpError::InvalidForwardedFor {
            entry: excerpt(&String::from_utf8_lossy(entry)),
        })
}

/// The longest text of an address: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
const MAX_ADDRESS_TEXT: usize = 45;

/// Room to write a client address as text in place, so that no request allocates for it.
pub struct AddressText([u8; MAX_ADDRESS_TEXT]);

impl Default for AddressText {
    fn default() -> Self {
        Self([0; MAX_ADDRESS_TEXT])
    }
}

/// `address` as text (`203.0.113.5`, `2001:db8::7`), written into `text`. IPv4, the common
/// case, is written digit by digit, without the formatting machinery.
pub fn address_text(address: IpAddr, text: &mut AddressText) -> Option<&str> {
    let written = match address {
        IpAddr::V4(v4) => {
            let mut written = 0;
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    *text.0.get_mut(written)? = b'.';
                    written += 1;
                }
                let mut buffer = itoa::Buffer::new();
                let digits = buffer.format(octet).as_bytes();
                text.0
                    .get_mut(written..written + digits.len())?
                    .copy_from_slice(digits);
                written += digits.len();
            }
            written
        }
        IpAddr::V6(_) => {
            let mut cursor = Cursor::new(&mut text.0[..]);
            write!(cursor, "{address}").ok()?;
            usize::try_from(cursor.position()).ok()?
        }
    };
    std::str::from_utf8(text.0.get(..written)?).ok()
}

/// An address as Envoy or a proxy writes it: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
///
/// The shape picks the one parser that can succeed, so no time goes into failed attempts.
fn parse_address(text: &str) -> Option<IpAddr> {
    let address = if text.starts_with('[') {
        match text.parse::<SocketAddr>() {
            Ok(socket) => socket.ip(),
            Err(_) => IpAddr::V6(bracketed_ipv6(text)?),
        }
    } else if text.bytes().filter(|&byte| byte == b':').count() == 1 {
        text.parse::<SocketAddr>().ok()?.ip()
    } else {
        text.parse::<IpAddr>().ok()?
    };
    Some(address.to_canonical())
}

fn bracketed_ipv6(text: &str) -> Option<Ipv6Addr> {
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Why no client address could be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIpError {
    /// Envoy's `source.address` is not an IP address (e.g. a Unix socket listener); a
    /// deployment problem, not the client's.
    InvalidSourceAddress {
        /// The start of the value.
        value: String,
    },
    /// The `X-Forwarded-For` entry at the trusted position is not an IP address; the filter
    /// answers 400 `invalid_forwarded_for`.
    InvalidForwardedFor {
        /// The start of the entry, spaces trimmed.
        entry: String,
    },
}

impl fmt::Display for ClientIpError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSourceAddress { value } => {
                write!(formatter, "source address {value:?} is not an IP address")
            }
            Self::InvalidForwardedFor { entry } => write!(
                formatter,
                "X-Forwarded-For entry {entry:?} is not an IP address"
            ),
        }
    }
}

impl std::error::Error for ClientIpError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn from_peer(source_address: &str) -> Result<IpAddr, ClientIpError> {
        client_ip(source_address, None, 0)
    }

    fn behind(hops: u8, forwarded_for: &str) -> Result<IpAddr, ClientIpError> {
        client_ip("10.0.0.2:40000", Some(forwarded_for.as_bytes()), hops)
    }

    #[test]
    fn reads_the_peer_in_every_envoy_form() {
        for (source, expected) in [
            ("127.0.0.1:51234", "127.0.0.1"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
        ] {
            assert_eq!(from_peer(source), Ok(ip(expected)), "for {source:?}");
        }
    }

    #[test]
    fn ipv4_mapped_peers_become_ipv4() {
        assert_eq!(from_peer("[::ffff:1.2.3.4]:80"), Ok(ip("1.2.3.4")));
        assert_eq!(from_peer("::ffff:1.2.3.4"), Ok(ip("1.2.3.4")));
        assert_eq!(from_peer("[::ffff:102:304]"), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn ipv4_compatible_and_loopback_ipv6_stay_ipv6() {
        assert_eq!(from_peer("::1.2.3.4"), Ok(ip("::1.2.3.4")));
        assert_eq!(from_peer("[::1]:1"), Ok(ip("::1")));
    }

    #[test]
    fn refuses_a_source_address_that_is_not_an_ip() {
        for source in [
            "",
            "/var/run/envoy.sock",
            "localhost:80",
            "1.2.3.4:",
            "1.2.3.4:70000",
            "::1:80:",
            "[::1",
            "[1.2.3.4]",
            "01.2.3.4",
        ] {
            assert!(
                matches!(
                    from_peer(source),
                    Err(ClientIpError::InvalidSourceAddress { .. })
                ),
                "for {source:?}"
            );
        }
    }

    #[test]
    fn without_trusted_hops_a_spoofed_forwarded_for_changes_nothing() {
        for spoofed in ["6.6.6.6", "6.6.6.6, 7.7.7.7", "garbage", ""] {
            assert_eq!(
                client_ip("203.0.113.9:5000", Some(spoofed.as_bytes()), 0),
                Ok(ip("203.0.113.9")),
                "for {spoofed:?}"
            );
        }
    }

    #[test]
    fn one_trusted_hop_takes_the_rightmost_entry() {
        assert_eq!(
            behind(1, "6.6.6.6, 198.51.100.7, 203.0.113.5"),
            Ok(ip("203.0.113.5"))
        );
        assert_eq!(behind(1, "203.0.113.5"), Ok(ip("203.0.113.5")));
    }

    #[test]
    fn n_trusted_hops_take_the_nth_entry_from_the_right() {
        let list = "6.6.6.6, 198.51.100.7, 203.0.113.5, 10.1.1.1";

        assert_eq!(behind(2, list), Ok(ip("203.0.113.5")));
        assert_eq!(behind(3, list), Ok(ip("198.51.100.7")));
        assert_eq!(behind(4, list), Ok(ip("6.6.6.6")));
    }

    #[test]
    fn too_few_entries_take_the_leftmost() {
        assert_eq!(
            behind(3, "198.51.100.7, 203.0.113.5"),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(behind(255, "198.51.100.7"), Ok(ip("198.51.100.7")));
    }

    #[test]
    fn an_absent_or_blank_header_falls_back_to_the_peer() {
        assert_eq!(client_ip("10.0.0.2:40000", None, 2), Ok(ip("10.0.0.2")));
        assert_eq!(behind(1, ""), Ok(ip("10.0.0.2")));
        assert_eq!(behind(1, " \t "), Ok(ip("10.0.0.2")));
    }

    #[test]
    fn entries_are_trimmed_and_may_lack_the_space_after_commas() {
        assert_eq!(behind(2, "1.1.1.1,2.2.2.2 ,3.3.3.3"), Ok(ip("2.2.2.2")));
        assert_eq!(behind(1, "\t2001:db8::1\t"), Ok(ip("2001:db8::1")));
    }

    #[test]
    fn entries_may_be_ipv6_bracketed_or_carry_ports() {
        for (entry, expected) in [
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("192.0.2.60:4711", "192.0.2.60"),
            ("::ffff:192.0.2.60", "192.0.2.60"),
            ("[::ffff:192.0.2.60]:4711", "192.0.2.60"),
        ] {
            assert_eq!(
                behind(1, &format!("6.6.6.6, {entry}")),
                Ok(ip(expected)),
                "for {entry:?}"
            );
        }
    }

    #[test]
    fn garbage_in_the_used_position_is_refused() {
        for (hops, list) in [
            (1, "unknown"),
            (1, "1.2.3.4, garbage"),
            (1, "1.2.3.4,"),
            (2, "1.2.3.4, , 5.6.7.8"),
            (1, "1.2.3.4 5.6.7.8"),
            (1, "999.1.1.1"),
            (1, "fe80::1%eth0"),
            (1, "[2001:db8::1"),
            (2, "_hidden, 5.6.7.8"),
        ] {
            assert!(
                matches!(
                    behind(hops, list),
                    Err(ClientIpError::InvalidForwardedFor { .. })
                ),
                "for {hops} hops and {list:?}"
            );
        }
    }

    #[test]
    fn garbage_outside_the_used_position_is_ignored() {
        assert_eq!(behind(1, "garbage, 203.0.113.5"), Ok(ip("203.0.113.5")));
        assert_eq!(
            behind(2, "\u{0}\u{1}, 198.51.100.7, 203.0.113.5"),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn refuses_bytes_that_are_not_utf8() {
        let list: &[u8] = b"1.2.3.4, \xff\xfe";

        assert_eq!(
            client_ip("10.0.0.2:1", Some(list), 1),
            Err(ClientIpError::InvalidForwardedFor {
                entry: "\u{fffd}\u{fffd}".to_owned()
            })
        );
    }

    #[test]
    fn writes_the_longest_addresses_as_text() {
        let mut text = AddressText::default();
        for address in [
            "255.255.255.255",
            "0.0.0.0",
            "10.200.3.45",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "2001:db8::7",
        ] {
            assert_eq!(
                address_text(ip(address), &mut text),
                Some(address),
                "for {address}"
            );
        }
    }

    #[test]
    fn errors_name_the_offending_value_escaped() {
        let error = behind(1, "1.2.3.4, evil\"\nline").expect_err("garbage");

        assert_eq!(
            error.to_string(),
            r#"X-Forwarded-For entry "evil\"\nline" is not an IP address"#
        );
        assert_eq!(
            from_peer("pipe").expect_err("not an address").to_string(),
            r#"source address "pipe" is not an IP address"#
        );
    }

    #[test]
    fn errors_quote_only_the_start_of_a_long_entry() {
        let long = "x".repeat(10_000);

        let message = behind(1, &long).expect_err("garbage").to_string();

        assert!(message.len() < 200, "{message}");
    }
}
