//! The OpenAPI document at `/api/v1/openapi.json`: served without a credential, and in step
//! with the router in `app()` both ways.

mod support;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::Value;
use support::app::Api;

/// The router's source, read for its `.route(...)` calls.
const ROUTER_SOURCE: &str = include_str!("../src/api/mod.rs");

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(path, method)` of every route `app()` declares: each `.route("path", ...)` and the
/// method routers (`get(`, `.post(`, `axum::routing::delete(` ...) inside it.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for call in source.split(".route(").skip(1) {
        let path = call.split('"').nth(1).expect("a route's path literal");
        let mut depth = 1;
        let end = call
            .char_indices()
            .find_map(|(index, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(index)
            })
            .expect("the end of the route call");
        let handlers = &call[..end];
        for method in METHODS {
            let called = handlers
                .match_indices(&format!("{method}("))
                .any(|(at, _)| {
                    !handlers[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
            if called {
                routes.insert((path.to_string(), method.to_string()));
            }
        }
    }
    routes
}

fn operations_in(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item");
            METHODS
                .iter()
                .filter(|method| item.contains_key(**method))
                .map(move |method| (path.clone(), method.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn the_document_lists_every_route_and_nothing_else() {
    let api = Api::start().await;
    let (status, document) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK, "{document}");
    assert!(document["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));

    let routes = routes_in(ROUTER_SOURCE);
    assert!(routes.contains(&("/api/v1/users/{id}".into(), "patch".into())));
    let documented = operations_in(&document);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
}

#[tokio::test]
async fn every_operation_documents_its_errors_in_the_error_shape() {
    let api = Api::start().await;
    let (_, document) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");

    for (path, method) in operations_in(&document) {
        let operation = &document["paths"][&path][&method];
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            responses
                .keys()
                .any(|status| status.starts_with('2') || status == "302"),
            "{method} {path} has no success answer"
        );
        assert!(responses.contains_key("500"), "{method} {path}");
        for (status, response) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
            let content = &response["content"]["application/json"];
            // The health report keeps its own shape when the database is down.
            if content["schema"]["$ref"] == "#/components/schemas/HealthReport" {
                continue;
            }
            assert_eq!(
                content["schema"]["$ref"], "#/components/schemas/Error",
                "{method} {path} {status}"
            );
            assert!(
                content["example"]["error"]["code"].is_string(),
                "{method} {path} {status} has no example"
            );
        }
    }
    let users = &document["paths"]["/api/v1/users"]["post"]["responses"];
    assert_eq!(
        users["401"]["content"]["application/json"]["example"]["error"]["code"],
        "unauthenticated"
    );
    assert_eq!(
        users["409"]["content"]["application/json"]["example"]["error"]["code"],
        "already_exists"
    );
}
