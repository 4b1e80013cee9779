use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::rpc::Status;

use super::*;
use crate::routing::xds::model::{Pool, RoutingTable};
use crate::routing::xds::snapshot::tests::{healthy_pool, routing};

fn subscribe(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: names.iter().map(|n| (*n).into()).collect(),
        ..DeltaDiscoveryRequest::default()
    }
}

fn ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..DeltaDiscoveryRequest::default()
    }
}

fn nack(response: &DeltaDiscoveryResponse, message: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: message.into(),
            details: Vec::new(),
        }),
        ..ack(response)
    }
}

fn snapshot(pools: &[(&str, &str)], table: &RoutingTable) -> Snapshot {
    let pools: Vec<Pool> = pools
        .iter()
        .map(|(name, host)| healthy_pool(name, host))
        .collect();
    Snapshot::build(&pools, table)
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

fn types(responses: &[DeltaDiscoveryResponse]) -> Vec<&str> {
    responses.iter().map(|r| r.type_url.as_str()).collect()
}

const A: &str = "tollgate_pool_a";
const B: &str = "tollgate_pool_b";

/// A stream subscribed to every cluster, the load assignments of `a` and `b`, and the routes,
/// with everything acknowledged.
fn subscribed(snapshot: &Snapshot) -> DeltaStreamState {
    let mut stream = DeltaStreamState::new();
    for (type_url, names) in [
        (CLUSTER_TYPE, &[][..]),
        (ENDPOINT_TYPE, &[A, B][..]),
        (ROUTE_TYPE, &["tollgate_routes"][..]),
    ] {
        let sent = stream.on_request(subscribe(type_url, names), snapshot);
        assert_eq!(sent.len(), 1);
        assert!(stream.on_request(ack(&sent[0]), snapshot).is_empty());
    }
    stream
}

#[test]
fn the_first_request_gets_what_envoy_lacks_with_versions() {
    let snap = snapshot(&[("a", "10.0.0.1"), ("b", "10.0.0.2")], &routing(None, &[]));
    let mut stream = DeltaStreamState::new();
    let sent = stream.on_request(subscribe(CLUSTER_TYPE, &[]), &snap);
    assert_eq!(sent.len(), 1);
    assert_eq!(names(&sent[0]), [A, B]);
    assert_eq!(sent[0].system_version_info, snap.clusters().version());
    for resource in &sent[0].resources {
        let served = snap.clusters().get(&resource.name).expect("served");
        assert_eq!(resource.version, served.version);
    }

    // A reconnecting Envoy that has `a` already gets only `b`.
    let mut again = DeltaStreamState::new();
    let mut request = subscribe(CLUSTER_TYPE, &[]);
    let a_version = snap.clusters().get(A).expect("a").version.clone();
    request.initial_resource_versions = [(A.to_string(), a_version)].into();
    let sent = again.on_request(request, &snap);
    assert_eq!(names(&sent[0]), [B]);
}

#[test]
fn a_change_to_one_pool_sends_that_pool_only() {
    let table = routing(Some("a"), &[]);
    let before = snapshot(&[("a", "10.0.0.1"), ("b", "10.0.0.2")], &table);
    let mut stream = subscribed(&before);
    let mut heavier = healthy_pool("b", "10.0.0.2");
    heavier.endpoints[0].weight = 50;
    let after = before.update(&[heavier], &[], &table);
    let sent = stream.on_snapshot(&after);
    assert_eq!(types(&sent), [ENDPOINT_TYPE]);
    assert_eq!(names(&sent[0]), [B]);
    assert!(sent[0].removed_resources.is_empty());
    assert!(stream.on_request(ack(&sent[0]), &after).is_empty());
    assert_eq!(
        stream.acked_version(ENDPOINT_TYPE),
        Some(after.endpoints().version())
    );
    assert!(stream.on_snapshot(&after).is_empty());
}

#[test]
fn a_removed_pool_leaves_the_routes_before_its_cluster_goes() {
    let table = routing(Some("a"), &[("gold", &["b", "a"])]);
    let before = snapshot(&[("a", "10.0.0.1"), ("b", "10.0.0.2")], &table);
    let mut stream = subscribed(&before);
    let after = before.update(&[], &["b".to_string()], &table);
    let sent = stream.on_snapshot(&after);
    assert_eq!(types(&sent), [ENDPOINT_TYPE, ROUTE_TYPE, CLUSTER_TYPE]);
    assert_eq!(sent[0].removed_resources, [B]);
    assert!(sent[0].resources.is_empty());
    assert_eq!(names(&sent[1]), ["tollgate_routes"]);
    assert_eq!(sent[2].removed_resources, [B]);
    assert!(sent[2].resources.is_empty());
}

#[test]
fn a_refusal_is_recorded_and_not_sent_again() {
    let table = routing(None, &[]);
    let before = snapshot(&[("a", "10.0.0.1")], &table);
    let mut stream = subscribed(&before);
    let bad = snapshot(&[("a", "10.0.0.1"), ("c", "10.0.0.3")], &table);
    let sent = stream.on_snapshot(&bad);
    assert_eq!(types(&sent), [CLUSTER_TYPE]);
    assert!(stream
        .on_request(nack(&sent[0], "bad cluster"), &bad)
        .is_empty());
    assert_eq!(stream.rejections().len(), 1);
    assert_eq!(stream.rejections()[0].message, "bad cluster");
    assert_eq!(stream.rejections()[0].version, bad.clusters().version());
    assert_eq!(
        stream.acked_version(CLUSTER_TYPE),
        Some(before.clusters().version())
    );
    assert!(stream.on_snapshot(&bad).is_empty());
    // An answer to a nonce already answered changes nothing.
    assert!(stream.on_request(ack(&sent[0]), &bad).is_empty());
    assert_eq!(
        stream.acked_version(CLUSTER_TYPE),
        Some(before.clusters().version())
    );
}

#[test]
fn names_asked_for_are_sent_or_said_missing_and_unsubscribed_ones_stay_quiet() {
    let table = routing(None, &[]);
    let snap = snapshot(&[("a", "10.0.0.1"), ("b", "10.0.0.2")], &table);
    let mut stream = DeltaStreamState::new();
    let sent = stream.on_request(subscribe(ENDPOINT_TYPE, &[A]), &snap);
    assert_eq!(names(&sent[0]), [A]);
    stream.on_request(ack(&sent[0]), &snap);

    let mut more = subscribe(ENDPOINT_TYPE, &[B, "tollgate_pool_gone"]);
    more.resource_names_unsubscribe = vec![A.into()];
    let sent = stream.on_request(more, &snap);
    assert_eq!(names(&sent[0]), [B]);
    assert_eq!(sent[0].removed_resources, ["tollgate_pool_gone"]);
    stream.on_request(ack(&sent[0]), &snap);

    let mut heavier = healthy_pool("a", "10.0.0.1");
    heavier.endpoints[0].weight = 50;
    assert!(stream
        .on_snapshot(&snap.update(&[heavier], &[], &table))
        .is_empty());
}

#[test]
fn other_types_are_ignored() {
    let mut stream = DeltaStreamState::new();
    let request = subscribe("type.googleapis.com/envoy.config.listener.v3.Listener", &[]);
    assert!(stream.on_request(request, &Snapshot::default()).is_empty());
    assert!(stream.on_snapshot(&Snapshot::default()).is_empty());
}
