//! The JSON body of every response the filter answers itself.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

/// `{"error":{"code":"<code>","message":"<message>"}}`, the error shape of the whole project.
pub fn error_body(code: &str, message: &str) -> String {
    json!({ "error": { "code": code, "message": message } }).to_string()
}

/// The 402 answer: the project's error shape plus the quota's name and, for a quota that
/// resets, when (RFC 3339, UTC).
pub fn quota_exceeded_body(quota: &str, resets_at_secs: i64) -> String {
    let resets_at = u64::try_from(resets_at_secs)
        .ok()
        .filter(|secs| *secs > 0)
        .map(|secs| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        });
    let message = match &resets_at {
        Some(at) => format!("the {quota} quota is used up until {at}"),
        None => format!("the {quota} quota is used up"),
    };
    json!({ "error": {
        "code": "quota_exceeded",
        "message": message,
        "quota": quota,
        "resets_at": resets_at,
    } })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_project_error_shape() {
        assert_eq!(
            error_body("invalid_api_key", "invalid API key"),
            r#"{"error":{"code":"invalid_api_key","message":"invalid API key"}}"#
        );
    }

    #[test]
    fn quota_answers_name_the_quota_and_its_reset() {
        let body: serde_json::Value =
            serde_json::from_str(&quota_exceeded_body("monthly_requests", 1_798_761_600))
                .expect("JSON");
        assert_eq!(body["error"]["code"], "quota_exceeded");
        assert_eq!(body["error"]["quota"], "monthly_requests");
        assert_eq!(body["error"]["resets_at"], "2027-01-01T00:00:00Z");
        let storage: serde_json::Value =
            serde_json::from_str(&quota_exceeded_body("storage", 0)).expect("JSON");
        assert!(storage["error"]["resets_at"].is_null());
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        let body = error_body("code", "say \"hi\" \\ then\nbreak");

        assert_eq!(
            body,
            r#"{"error":{"code":"code","message":"say \"hi\" \\ then\nbreak"}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(parsed["error"]["message"], "say \"hi\" \\ then\nbreak");
    }
}
