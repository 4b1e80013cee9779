//! The addresses a user may call from.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::validation::deserialize_checked;

const MAX_ENTRIES: usize = 100;

/// Addresses (`10.0.0.1`, `::1`) and networks with no host bits set (`192.168.1.0/24`,
/// `2001:db8::/32`), at most 100, each in its normal form; empty allows every address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct IpAllowlist(Vec<String>);

/// Why an allowlist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`ip_allowlist`: {0}")]
pub struct InvalidAllowlist(String);

impl IpAllowlist {
    /// The entries in their normal form, as the filter receives them.
    pub fn entries(&self) -> &[String] {
        &self.0
    }

    /// The entries, consumed.
    pub fn into_entries(self) -> Vec<String> {
        self.0
    }
}

impl TryFrom<Vec<String>> for IpAllowlist {
    type Error = InvalidAllowlist;

    fn try_from(entries: Vec<String>) -> Result<Self, Self::Error> {
        if entries.len() > MAX_ENTRIES {
            return Err(InvalidAllowlist("at most 100 entries".to_string()));
        }
        entries
            .iter()
            .map(|entry| normalise(entry.trim()))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl<'de> Deserialize<'de> for IpAllowlist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked::<D, Vec<String>, Self>(deserializer)
    }
}

fn normalise(entry: &str) -> Result<String, InvalidAllowlist> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Ok(address.to_string());
    }
    // The address part must also satisfy the strict standard parser (no octal-looking
    // leading zeros), as the filter reads it that way.
    let strict_address = entry
        .split_once('/')
        .is_some_and(|(address, _)| address.parse::<IpAddr>().is_ok());
    match entry.parse::<IpNet>() {
        Ok(network) if strict_address && network.trunc() == network => Ok(network.to_string()),
        Ok(network) if strict_address => Err(InvalidAllowlist(format!(
            "{entry:?} has host bits set; did you mean {}?",
            network.trunc()
        ))),
        _ => Err(InvalidAllowlist(format!(
            "{entry:?} is not an IP address or CIDR network"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowlist(entries: &[&str]) -> Result<IpAllowlist, InvalidAllowlist> {
        IpAllowlist::try_from(entries.iter().map(ToString::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn allowlists_are_validated_and_normalised() {
        let ok = allowlist(&["10.0.0.1", " 192.168.1.0/24", "2001:DB8::/32"]).expect("valid");
        assert_eq!(
            ok.entries(),
            ["10.0.0.1", "192.168.1.0/24", "2001:db8::/32"]
        );
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "example.com",
            "",
            "010.0.0.0/8",
            "010.0.0.1",
        ] {
            assert!(allowlist(&[bad]).is_err(), "{bad}");
        }
        assert!(allowlist(&["10.0.0.1"; 101]).is_err());
    }

    #[test]
    fn json_is_refused_with_the_rule_s_message() {
        let error = serde_json::from_str::<IpAllowlist>(r#"["10.0.0.1/8"]"#)
            .expect_err("host bits")
            .to_string();
        assert!(error.contains("did you mean 10.0.0.0/8?"), "{error}");
    }
}
