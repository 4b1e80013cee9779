use envoy_types::pb::google::rpc::Status;

use super::*;
use crate::routing::xds::model::{Pool, RoutingTable};
use crate::routing::xds::snapshot::tests::{healthy_pool, routing};

fn request(type_url: &str, version: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        resource_names: names.iter().map(|n| (*n).into()).collect(),
        ..DiscoveryRequest::default()
    }
}

/// Envoy's ACK repeats the names it is subscribed to.
fn ack(response: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    request(
        &response.type_url,
        &response.version_info,
        &response.nonce,
        names,
    )
}

fn nack(response: &DiscoveryResponse, running: &str, message: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: message.into(),
            details: Vec::new(),
        }),
        ..request(&response.type_url, running, &response.nonce, &[])
    }
}

fn snapshot(pools: &[&str], table: &RoutingTable) -> Snapshot {
    let pools: Vec<Pool> = pools
        .iter()
        .enumerate()
        .map(|(i, name)| healthy_pool(name, &format!("10.0.0.{}", i + 1)))
        .collect();
    Snapshot::build(&pools, table)
}

fn names(response: &DiscoveryResponse) -> Vec<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use prost::Message;
    response
        .resources
        .iter()
        .map(|any| match any.type_url.as_str() {
            CLUSTER_TYPE => Cluster::decode(any.value.as_slice()).expect("cluster").name,
            ENDPOINT_TYPE => {
                ClusterLoadAssignment::decode(any.value.as_slice())
                    .expect("assignment")
                    .cluster_name
            }
            _ => {
                RouteConfiguration::decode(any.value.as_slice())
                    .expect("routes")
                    .name
            }
        })
        .collect()
}

/// A stream subscribed to every type, with everything acknowledged.
fn subscribed(snapshot: &Snapshot) -> StreamState {
    let mut stream = StreamState::new();
    for type_url in [CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE] {
        let names: &[&str] = if type_url == ROUTE_TYPE {
            &["tollgate_routes"]
        } else {
            &[]
        };
        let sent = stream.on_request(request(type_url, "", "", names), snapshot);
        assert_eq!(sent.len(), 1);
        assert!(stream.on_request(ack(&sent[0], names), snapshot).is_empty());
    }
    stream
}

fn types(responses: &[DiscoveryResponse]) -> Vec<&str> {
    responses.iter().map(|r| r.type_url.as_str()).collect()
}

#[test]
fn the_first_request_gets_the_current_resources() {
    let snap = snapshot(&["b", "a"], &routing(Some("a"), &[]));
    let mut stream = StreamState::new();
    let sent = stream.on_request(request(CLUSTER_TYPE, "", "", &[]), &snap);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].type_url, CLUSTER_TYPE);
    assert_eq!(sent[0].version_info, snap.clusters().version());
    assert_eq!(names(&sent[0]), ["tollgate_pool_a", "tollgate_pool_b"]);
    assert!(!sent[0].nonce.is_empty());
    assert_eq!(stream.acked_version(CLUSTER_TYPE), None);
}

#[test]
fn an_ack_records_the_version_and_sends_nothing() {
    let snap = snapshot(&["a"], &routing(None, &[]));
    let mut stream = StreamState::new();
    let sent = stream.on_request(request(CLUSTER_TYPE, "", "", &[]), &snap);
    assert!(stream.on_request(ack(&sent[0], &[]), &snap).is_empty());
    assert_eq!(
        stream.acked_version(CLUSTER_TYPE),
        Some(snap.clusters().version())
    );
    assert!(stream.on_snapshot(&snap).is_empty());
}

#[test]
fn a_nack_is_recorded_and_that_version_is_not_sent_again() {
    let good = snapshot(&["a"], &routing(None, &[]));
    let mut stream = subscribed(&good);
    let bad = snapshot(&["a", "b"], &routing(None, &[]));
    let sent = stream.on_snapshot(&bad);
    let cds = sent
        .iter()
        .find(|r| r.type_url == CLUSTER_TYPE)
        .expect("CDS update");

    let refused = nack(cds, good.clusters().version(), "duplicate cluster");
    assert!(stream.on_request(refused, &bad).is_empty());
    assert_eq!(
        stream.acked_version(CLUSTER_TYPE),
        Some(good.clusters().version())
    );
    assert_eq!(
        stream.rejections(),
        [Rejection {
            type_url: CLUSTER_TYPE.into(),
            version: bad.clusters().version().into(),
            nonce: cds.nonce.clone(),
            message: "duplicate cluster".into(),
        }]
    );
    assert!(stream.on_snapshot(&bad).is_empty());

    let fixed = snapshot(&["a", "c"], &routing(None, &[]));
    let sent = stream.on_snapshot(&fixed);
    let last_cds = sent
        .iter()
        .rfind(|r| r.type_url == CLUSTER_TYPE)
        .expect("CDS update");
    assert_eq!(last_cds.version_info, fixed.clusters().version());
}

#[test]
fn a_stale_nonce_is_ignored() {
    let first = snapshot(&["a"], &routing(None, &[]));
    let mut stream = StreamState::new();
    let old = stream.on_request(request(CLUSTER_TYPE, "", "", &[]), &first);
    let second = snapshot(&["a", "b"], &routing(None, &[]));
    let new = stream.on_snapshot(&second);
    assert_ne!(old[0].nonce, new[0].nonce);

    assert!(stream.on_request(ack(&old[0], &[]), &second).is_empty());
    assert_eq!(stream.acked_version(CLUSTER_TYPE), None);
    assert!(stream
        .on_request(nack(&old[0], "", "too late"), &second)
        .is_empty());
    assert!(stream.rejections().is_empty());
    assert!(stream.on_request(ack(&new[0], &[]), &second).is_empty());
    assert_eq!(
        stream.acked_version(CLUSTER_TYPE),
        Some(second.clusters().version())
    );
}

#[test]
fn eds_answers_only_the_names_envoy_asked_for() {
    let snap = snapshot(&["a", "b", "c"], &routing(None, &[]));
    let mut stream = StreamState::new();
    let sent = stream.on_request(
        request(
            ENDPOINT_TYPE,
            "",
            "",
            &["tollgate_pool_b", "tollgate_pool_x"],
        ),
        &snap,
    );
    assert_eq!(names(&sent[0]), ["tollgate_pool_b"]);

    // The same names again are an ACK; new names are answered at once, with what Envoy
    // lacks only: it keeps the load assignment of `b`.
    let asked = ["tollgate_pool_b", "tollgate_pool_x"];
    assert!(stream.on_request(ack(&sent[0], &asked), &snap).is_empty());
    let more = request(
        ENDPOINT_TYPE,
        &sent[0].version_info,
        &sent[0].nonce,
        &["tollgate_pool_a", "tollgate_pool_b"],
    );
    let sent = stream.on_request(more, &snap);
    assert_eq!(names(&sent[0]), ["tollgate_pool_a"]);
    assert_eq!(sent[0].version_info, snap.endpoints().version());

    // Once names were given, an empty list unsubscribes from everything.
    let none = request(ENDPOINT_TYPE, &sent[0].version_info, &sent[0].nonce, &[]);
    assert!(stream.on_request(none, &snap).is_empty());
    let changed = snapshot(&["a", "b", "c", "d"], &routing(None, &[]));
    assert!(types(&stream.on_snapshot(&changed))
        .iter()
        .all(|t| *t != ENDPOINT_TYPE));
}

#[test]
fn an_empty_first_list_and_a_star_mean_everything() {
    let snap = snapshot(&["a", "b"], &routing(None, &[]));
    for names_asked in [&[][..], &["*"][..]] {
        let mut stream = StreamState::new();
        let sent = stream.on_request(request(ENDPOINT_TYPE, "", "", names_asked), &snap);
        assert_eq!(names(&sent[0]), ["tollgate_pool_a", "tollgate_pool_b"]);
    }
}

#[test]
fn a_reconnecting_envoy_reports_its_version_and_is_answered() {
    let snap = snapshot(&["a"], &routing(None, &[]));
    let mut stream = StreamState::new();
    let sent = stream.on_request(request(CLUSTER_TYPE, "0123abcd", "", &[]), &snap);
    assert_eq!(sent.len(), 1);
    assert_eq!(stream.acked_version(CLUSTER_TYPE), Some("0123abcd"));
}

#[test]
fn other_types_are_ignored() {
    let snap = Snapshot::default();
    let mut stream = StreamState::new();
    let listeners = "type.googleapis.com/envoy.config.listener.v3.Listener";
    assert!(stream
        .on_request(request(listeners, "", "", &[]), &snap)
        .is_empty());
    assert!(stream.on_snapshot(&snap).is_empty());
}

#[test]
fn a_new_pool_goes_clusters_then_endpoints_then_routes() {
    let before = snapshot(&["a"], &routing(Some("a"), &[]));
    let mut stream = subscribed(&before);
    let after = snapshot(&["a", "b"], &routing(Some("a"), &[("g", &["b"])]));
    let sent = stream.on_snapshot(&after);
    assert_eq!(types(&sent), [CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE]);
    assert_eq!(names(&sent[0]), ["tollgate_pool_a", "tollgate_pool_b"]);
    let nonces: BTreeSet<&str> = sent.iter().map(|r| r.nonce.as_str()).collect();
    assert_eq!(nonces.len(), sent.len());
}

#[test]
fn a_removed_pool_leaves_the_routes_before_the_clusters() {
    let before = snapshot(&["a", "b"], &routing(Some("a"), &[("g", &["b"])]));
    let mut stream = subscribed(&before);
    let after = snapshot(&["a"], &routing(Some("a"), &[]));
    // Envoy drops the load assignment with its cluster: nothing to send over EDS.
    let sent = stream.on_snapshot(&after);
    assert_eq!(types(&sent), [ROUTE_TYPE, CLUSTER_TYPE]);
    assert_eq!(names(&sent[1]), ["tollgate_pool_a"]);
    assert_eq!(sent[1].version_info, after.clusters().version());
}

#[test]
fn a_swapped_pool_is_added_before_and_removed_after_the_routes() {
    let before = snapshot(&["old"], &routing(Some("old"), &[]));
    let mut stream = subscribed(&before);
    let after = snapshot(&["new"], &routing(Some("new"), &[]));
    let sent = stream.on_snapshot(&after);
    assert_eq!(
        types(&sent),
        [CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, CLUSTER_TYPE]
    );
    assert_eq!(names(&sent[0]), ["tollgate_pool_new", "tollgate_pool_old"]);
    assert_eq!(names(&sent[3]), ["tollgate_pool_new"]);

    // Envoy answers the bridge after the final update was sent: that ACK is stale.
    assert!(stream.on_request(ack(&sent[0], &[]), &after).is_empty());
    assert_eq!(
        stream.acked_version(CLUSTER_TYPE),
        Some(before.clusters().version())
    );
    assert!(stream.on_request(ack(&sent[3], &[]), &after).is_empty());
    assert_eq!(
        stream.acked_version(CLUSTER_TYPE),
        Some(after.clusters().version())
    );
}

#[test]
fn a_refused_version_is_still_sent_for_names_newly_asked_for() {
    let snap = snapshot(&["a", "b"], &routing(None, &[]));
    let mut stream = StreamState::new();
    let sent = stream.on_request(request(ENDPOINT_TYPE, "", "", &["tollgate_pool_a"]), &snap);
    let refused = DiscoveryRequest {
        resource_names: vec!["tollgate_pool_a".into()],
        ..nack(&sent[0], "", "bad endpoint")
    };
    assert!(stream.on_request(refused, &snap).is_empty());
    let wider = request(
        ENDPOINT_TYPE,
        "",
        &sent[0].nonce,
        &["tollgate_pool_a", "tollgate_pool_b"],
    );
    let sent = stream.on_request(wider, &snap);
    assert_eq!(names(&sent[0]), ["tollgate_pool_b"]);
}

#[test]
fn a_first_request_with_a_foreign_nonce_is_answered() {
    let snap = snapshot(&["a"], &routing(None, &[]));
    let mut stream = StreamState::new();
    let sent = stream.on_request(request(CLUSTER_TYPE, "v0", "17", &[]), &snap);
    assert_eq!(sent.len(), 1);
}

#[test]
fn a_change_to_one_pool_sends_that_pools_load_assignment_only() {
    let table = routing(Some("a"), &[]);
    let before = snapshot(&["a", "b"], &table);
    let mut stream = subscribed(&before);
    let mut heavier = crate::routing::xds::snapshot::tests::healthy_pool("b", "10.0.0.2");
    heavier.endpoints[0].weight = 50;
    let after = before.update(&[heavier], &[], &table);
    let sent = stream.on_snapshot(&after);
    assert_eq!(types(&sent), [ENDPOINT_TYPE]);
    assert_eq!(names(&sent[0]), ["tollgate_pool_b"]);
    assert_eq!(sent[0].version_info, after.endpoints().version());
}
