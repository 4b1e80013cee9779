//! What a person recognises a session by: the browser and system its `User-Agent` names.

use std::sync::LazyLock;

use woothee::parser::Parser;

static PARSER: LazyLock<Parser> = LazyLock::new(Parser::new);

/// What woothee answers for a part it cannot tell.
const UNKNOWN: &str = "UNKNOWN";
/// The longest `User-Agent` kept with a session; longer ones are cut.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// "Firefox 128.0 on Linux", "curl 8.5.0", or "unknown device".
pub fn describe(user_agent: Option<&str>) -> String {
    let Some(parsed) = user_agent.and_then(|agent| PARSER.parse(agent)) else {
        return "unknown device".to_string();
    };
    let known = |part: &str| (!part.is_empty() && part != UNKNOWN).then(|| part.to_string());
    let program = match (known(parsed.name), known(parsed.version)) {
        (Some(name), Some(version)) => Some(format!("{name} {version}")),
        (name, _) => name,
    };
    match (program, known(parsed.os)) {
        (Some(program), Some(os)) => format!("{program} on {os}"),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => "unknown device".to_string(),
    }
}

/// The `User-Agent` as kept: at most [`MAX_USER_AGENT_CHARS`] characters.
pub fn kept_user_agent(user_agent: &str) -> String {
    user_agent.chars().take(MAX_USER_AGENT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_and_systems_are_named() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(describe(Some(firefox)), "Firefox 128.0 on Linux");
        assert_eq!(describe(None), "unknown device");
        assert_eq!(describe(Some("")), "unknown device");
        assert_eq!(
            kept_user_agent(&"a".repeat(600)).len(),
            MAX_USER_AGENT_CHARS
        );
    }
}
