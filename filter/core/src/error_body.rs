//! The JSON body of every response the filter answers itself.

use serde_json::json;

/// `{"error":{"code":"<code>","message":"<message>"}}`, the error shape of the whole project.
pub fn error_body(code: &str, message: &str) -> String {
    json!({ "error": { "code": code, "message": message } }).to_string()
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
