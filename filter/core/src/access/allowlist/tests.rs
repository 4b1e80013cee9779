use super::*;

fn allowlist(entries: &[&str]) -> IpAllowlist {
    let entries: Vec<String> = entries.iter().map(|entry| (*entry).to_owned()).collect();
    IpAllowlist::parse(&entries).expect("valid allowlist")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[test]
fn an_empty_list_allows_every_address() {
    let everyone = allowlist(&[]);

    for address in ["10.0.0.1", "203.0.113.9", "::1", "2001:db8::1"] {
        assert!(everyone.allows(ip(address)), "for {address}");
    }
}

#[test]
fn a_single_address_allows_only_itself() {
    let one = allowlist(&["10.0.0.1"]);

    assert!(one.allows(ip("10.0.0.1")));
    assert!(!one.allows(ip("10.0.0.2")));
    assert!(!one.allows(ip("10.0.0.0")));
}

#[test]
fn an_ipv4_network_allows_its_whole_range() {
    let lan = allowlist(&["192.168.1.0/24"]);

    assert!(lan.allows(ip("192.168.1.0")));
    assert!(lan.allows(ip("192.168.1.77")));
    assert!(lan.allows(ip("192.168.1.255")));
    assert!(!lan.allows(ip("192.168.0.255")));
    assert!(!lan.allows(ip("192.168.2.0")));
}

#[test]
fn an_ipv6_network_allows_its_whole_range() {
    let documentation = allowlist(&["2001:db8::/32"]);

    assert!(documentation.allows(ip("2001:db8::")));
    assert!(documentation.allows(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!documentation.allows(ip("2001:db9::")));
    assert!(!documentation.allows(ip("2001:db7:ffff::1")));
}

#[test]
fn the_ipv6_loopback_is_an_address_like_any_other() {
    let loopback = allowlist(&["::1"]);

    assert!(loopback.allows(ip("::1")));
    assert!(!loopback.allows(ip("::2")));
    assert!(!loopback.allows(ip("127.0.0.1")));
    assert!(!loopback.allows(ip("0.0.0.1")));
}

#[test]
fn families_do_not_cross() {
    let both = allowlist(&["10.0.0.0/8", "2001:db8::/32"]);

    assert!(both.allows(ip("10.1.2.3")));
    assert!(both.allows(ip("2001:db8::5")));
    assert!(!both.allows(ip("::a00:1")));
    assert!(!both.allows(ip("11.0.0.1")));

    let ipv6_only = allowlist(&["2001:db8::/32"]);
    assert!(!ipv6_only.allows(ip("10.0.0.1")));
}

#[test]
fn ipv4_entries_match_ipv4_mapped_clients() {
    let lan = allowlist(&["192.168.1.0/24", "10.0.0.1"]);

    assert!(lan.allows(ip("::ffff:192.168.1.9")));
    assert!(lan.allows(ip("::ffff:10.0.0.1")));
    assert!(!lan.allows(ip("::ffff:10.0.0.2")));
    assert!(!lan.allows(ip("::192.168.1.9")));
}

#[test]
fn mapped_entries_stand_for_their_ipv4_network() {
    let mapped = allowlist(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]);

    assert_eq!(mapped, allowlist(&["10.0.0.0/8", "192.0.2.1"]));
    assert!(mapped.allows(ip("10.9.9.9")));
    assert!(mapped.allows(ip("::ffff:10.9.9.9")));
    assert!(mapped.allows(ip("192.0.2.1")));
}

#[test]
fn zero_prefixes_allow_a_whole_family() {
    let all_ipv4 = allowlist(&["0.0.0.0/0"]);
    assert!(all_ipv4.allows(ip("203.0.113.9")));
    assert!(!all_ipv4.allows(ip("2001:db8::1")));

    let all_ipv6 = allowlist(&["::/0"]);
    assert!(all_ipv6.allows(ip("2001:db8::1")));
    assert!(!all_ipv6.allows(ip("203.0.113.9")));
}

#[test]
fn full_length_prefixes_are_single_addresses() {
    let hosts = allowlist(&["10.0.0.1/32", "2001:db8::1/128"]);

    assert_eq!(hosts, allowlist(&["10.0.0.1", "2001:db8::1"]));
}

#[test]
fn any_matching_entry_allows() {
    let many: Vec<String> = (0..100).map(|n| format!("10.{n}.0.0/16")).collect();
    let list = IpAllowlist::parse(&many).expect("valid allowlist");

    assert!(list.allows(ip("10.99.3.4")));
    assert!(list.allows(ip("10.0.0.1")));
    assert!(!list.allows(ip("10.100.0.1")));
}

#[test]
fn host_bits_set_are_refused_with_the_network_named() {
    assert_eq!(
        validate_allowlist_entry("10.0.0.1/8"),
        Err(AllowlistError::HostBitsSet {
            entry: "10.0.0.1/8".to_owned(),
            network: "10.0.0.0/8".to_owned(),
        })
    );
    assert_eq!(
        validate_allowlist_entry("2001:db8::1/32"),
        Err(AllowlistError::HostBitsSet {
            entry: "2001:db8::1/32".to_owned(),
            network: "2001:db8::/32".to_owned(),
        })
    );
    assert!(matches!(
        validate_allowlist_entry("::ffff:10.0.0.1/104"),
        Err(AllowlistError::HostBitsSet { .. })
    ));
}

#[test]
fn refuses_what_is_not_an_address() {
    for entry in [
        "",
        "/8",
        "localhost",
        "10.0.0",
        "10.0.0.256",
        "010.0.0.1",
        "10.0.0.1 ",
        " 10.0.0.1",
        "10.0.0.1:80",
        "[::1]",
        "fe80::1%eth0",
        "2001:db8:::/32",
        "10.0.0.0/8/8",
    ] {
        let error = validate_allowlist_entry(entry);
        assert!(
            matches!(
                error,
                Err(AllowlistError::NotAnAddress { .. } | AllowlistError::BadPrefixLength { .. })
            ),
            "for {entry:?}: {error:?}"
        );
    }
}

#[test]
fn refuses_bad_prefix_lengths() {
    for (entry, max) in [
        ("10.0.0.0/33", 32),
        ("10.0.0.0/", 32),
        ("10.0.0.0/+8", 32),
        ("10.0.0.0/-1", 32),
        ("10.0.0.0/ 8", 32),
        ("10.0.0.0/256", 32),
        ("10.0.0.0/0x8", 32),
        ("2001:db8::/129", 128),
        ("2001:db8::/1000", 128),
    ] {
        assert_eq!(
            validate_allowlist_entry(entry),
            Err(AllowlistError::BadPrefixLength {
                entry: entry.to_owned(),
                max,
            }),
            "for {entry:?}"
        );
    }
}

#[test]
fn accepts_the_documented_forms() {
    for entry in [
        "10.0.0.1",
        "192.168.1.0/24",
        "2001:db8::/32",
        "::1",
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/08",
    ] {
        assert_eq!(validate_allowlist_entry(entry), Ok(()), "for {entry:?}");
    }
}

#[test]
fn parse_names_the_first_bad_entry() {
    let entries = [
        "10.0.0.1".to_owned(),
        "10.0.0.1/8".to_owned(),
        "x".to_owned(),
    ];

    let error = IpAllowlist::parse(&entries).expect_err("a bad entry");

    assert_eq!(
        error.to_string(),
        "allowlist entry \"10.0.0.1/8\" has host bits set; write 10.0.0.0/8 for the network or \
         drop the prefix for one address"
    );
}

#[test]
fn error_messages_escape_the_entry() {
    let error = validate_allowlist_entry("1.2.3.4\n").expect_err("newline");

    assert_eq!(
        error.to_string(),
        r#"allowlist entry "1.2.3.4\n" is not an IP address or CIDR network"#
    );
    assert_eq!(
        validate_allowlist_entry("10.0.0.0/33")
            .expect_err("too long")
            .to_string(),
        r#"allowlist entry "10.0.0.0/33" has an invalid prefix length (expected 0 to 32)"#
    );
}
