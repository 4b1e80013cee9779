//! A small blocking HTTP client for tests: every answer as status, headers and JSON.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// The `error.code` of a JSON error body, or "".
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Asserts that this is a refusal with `status` and the JSON error `code`.
    pub fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.error_code(), code, "{}", self.text);
    }

    /// `Bearer <access_token>` of a login's answer.
    pub fn bearer(&self) -> String {
        let token = self.body["access_token"].as_str();
        format!("Bearer {}", token.expect("an access token"))
    }

    /// The value the answer sets the cookie `name` to (`Set-Cookie`), if any.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|cookie| {
                let pair = cookie.split(';').next()?;
                let (key, value) = pair.split_once('=')?;
                (key == name && !value.is_empty()).then(|| value.to_string())
            })
    }

    /// A response header's value, or "" when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

/// A client that never follows redirects and gives up after 10 s.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Sends the request and reads the whole answer.
pub fn send(request: RequestBuilder) -> Answer {
    let response = request.send().expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().expect("HTTP body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}
