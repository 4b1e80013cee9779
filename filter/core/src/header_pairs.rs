//! Envoy's serialized header map, read in place: the count, then each pair's name and value
//! lengths, then the names and values, each followed by a NUL (the proxy-wasm ABI's layout).
//! Borrowing from the one buffer the host hands over costs no allocation per header.

const LENGTH_BYTES: usize = 4;

/// The (name, value) pairs of a serialized header map. A pair whose name is not UTF-8 is
/// skipped; a truncated buffer yields the pairs before the cut.
pub fn parse_pairs(bytes: &[u8]) -> Vec<(&str, &[u8])> {
    let Some(count) = read_length(bytes, 0) else {
        return Vec::new();
    };
    let Some(mut data) = count
        .checked_mul(2 * LENGTH_BYTES)
        .and_then(|lengths| lengths.checked_add(LENGTH_BYTES))
    else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / (2 * LENGTH_BYTES)));
    for index in 0..count {
        let lengths_at = LENGTH_BYTES + index * 2 * LENGTH_BYTES;
        let (Some(name_length), Some(value_length)) = (
            read_length(bytes, lengths_at),
            read_length(bytes, lengths_at + LENGTH_BYTES),
        ) else {
            break;
        };
        let Some(name) = slice(bytes, data, name_length) else {
            break;
        };
        data += name_length + 1;
        let Some(value) = slice(bytes, data, value_length) else {
            break;
        };
        data += value_length + 1;
        if let Ok(name) = std::str::from_utf8(name) {
            pairs.push((name, value));
        }
    }
    pairs
}

fn read_length(bytes: &[u8], at: usize) -> Option<usize> {
    let raw = bytes.get(at..at.checked_add(LENGTH_BYTES)?)?;
    let raw: [u8; LENGTH_BYTES] = raw.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

fn slice(bytes: &[u8], at: usize, length: usize) -> Option<&[u8]> {
    bytes.get(at..at.checked_add(length)?)
}

/// The serialized map of `pairs`, as Envoy hands it over.
#[cfg(test)]
pub fn serialize<N: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let length = |of: usize| u32::try_from(of).expect("length").to_le_bytes();
    let mut bytes = length(pairs.len()).to_vec();
    for (name, value) in pairs {
        bytes.extend(length(name.as_ref().len()));
        bytes.extend(length(value.as_ref().len()));
    }
    for (name, value) in pairs {
        bytes.extend(name.as_ref().as_bytes());
        bytes.push(0);
        bytes.extend(value.as_ref());
        bytes.push(0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_pair_in_order() {
        let pairs: Vec<(&str, &[u8])> = vec![
            (":method", b"GET"),
            (":path", b"/v1/x"),
            ("x-api-key", b"\xffnot utf-8"),
            ("empty", b""),
        ];
        assert_eq!(parse_pairs(&serialize(&pairs)), pairs);
        assert!(parse_pairs(&[]).is_empty());
    }

    #[test]
    fn a_truncated_map_gives_the_pairs_before_the_cut() {
        let bytes = serialize(&[(":method", "GET"), (":path", "/v1/x")]);
        let cut = &bytes[..bytes.len() - 3];
        assert_eq!(parse_pairs(cut), vec![(":method", &b"GET"[..])]);
        assert!(parse_pairs(&u32::MAX.to_le_bytes()).is_empty());
        assert!(parse_pairs(&[1, 0]).is_empty());
    }

    #[test]
    fn names_that_are_not_utf8_are_skipped() {
        let bytes = serialize(&[("ok", "1")]);
        let mut broken = bytes.clone();
        let name_at = 4 + 8;
        broken[name_at] = 0xff;
        assert!(parse_pairs(&broken).is_empty());
        assert_eq!(parse_pairs(&bytes), vec![("ok", &b"1"[..])]);
    }
}
