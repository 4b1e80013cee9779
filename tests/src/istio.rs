//! The ingress gateway's Envoy as Istio configures it from the shipped manifests
//! (`envoy/istio-wasmplugin.yaml`, `envoy/istio-control-plane.yaml`), on the configuration
//! written out in `tests/fixtures/istio/ingress-gateway.yaml`: the filter as an HTTP filter
//! with the WasmPlugin's `pluginConfig`, no bootstrap extension, the control plane behind the
//! cluster Istio names after its Service.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use crate::control_plane::ENVOY_CREDENTIAL;
use crate::{ControlPlane, ControlPlaneOptions, Echo, Envoy, GatewaySlot, Layout};

/// Workers of the gateway's Envoy, each with its own filter VM.
pub const GATEWAY_WORKERS: u32 = 2;

/// What Istio makes of the WasmPlugin and the control plane's Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmPluginFilter {
    /// `<namespace>.<name>` of the WasmPlugin: the HTTP filter's and the plugin's name.
    pub name: String,
    pub root_id: String,
    /// The `pluginConfig` as JSON.
    pub configuration: String,
    /// The variables of the gateway's environment passed into the VM (`vmConfig.env` with
    /// `valueFrom: HOST`).
    pub host_env_keys: Vec<String>,
    /// The variable the filter reads its credential from, as `pluginConfig` names it.
    pub credential_env: String,
    /// Envoy's `failure_policy` for the plugin's `failStrategy`.
    pub failure_policy: String,
    /// The cluster the filter calls, as the WasmPlugin names it.
    pub control_plane_cluster: String,
    /// The cluster Istio builds for the control plane Service's port named `grpc`.
    pub istio_cluster: String,
}

impl WasmPluginFilter {
    /// Reads the shipped manifests.
    pub fn from_manifests(root: &Path) -> Self {
        let plugin = document(root, "envoy/istio-wasmplugin.yaml", "WasmPlugin");
        let service = document(root, "envoy/istio-control-plane.yaml", "Service");
        let spec = &plugin["spec"];
        let config: Json =
            serde_yaml::from_value(spec["pluginConfig"].clone()).expect("pluginConfig is JSON");
        let host_env_keys = spec["vmConfig"]["env"]
            .as_sequence()
            .map(|variables| {
                variables
                    .iter()
                    .filter(|variable| text(&variable["valueFrom"]) == "HOST")
                    .map(|variable| text(&variable["name"]).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let failure_policy = match text(&spec["failStrategy"]) {
            "FAIL_OPEN" => "FAIL_OPEN",
            "FAIL_RELOAD" => "FAIL_RELOAD",
            _ => "FAIL_CLOSED",
        };
        let grpc_port = service["spec"]["ports"]
            .as_sequence()
            .expect("the Service has ports")
            .iter()
            .find(|port| text(&port["name"]) == "grpc")
            .and_then(|port| port["port"].as_u64())
            .expect("the Service has a port named grpc");
        Self {
            name: format!(
                "{}.{}",
                text(&plugin["metadata"]["namespace"]),
                text(&plugin["metadata"]["name"])
            ),
            root_id: text(&spec["pluginName"]).to_owned(),
            control_plane_cluster: config["control_plane_cluster"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            credential_env: config["control_plane_credential_env"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            configuration: config.to_string(),
            host_env_keys,
            failure_policy: failure_policy.to_owned(),
            istio_cluster: format!(
                "outbound|{grpc_port}||{}.{}.svc.cluster.local",
                text(&service["metadata"]["name"]),
                text(&service["metadata"]["namespace"])
            ),
        }
    }

    /// The gateway's bootstrap with this filter, on the given ports.
    fn bootstrap(&self, layout: &Layout, ports: &GatewayPorts) -> String {
        let template = std::fs::read_to_string(layout.root.join(GATEWAY_TEMPLATE))
            .expect("the gateway's configuration");
        template
            .replace("${ENVOY_LISTEN_PORT}", &ports.listen.to_string())
            .replace("${ENVOY_ADMIN_PORT}", &ports.admin.to_string())
            .replace("${ENVOY_NODE_ID}", &gateway_node_id(ports.admin))
            .replace(
                "${ENVOY_FILTER_WASM}",
                &layout.filter_wasm.display().to_string(),
            )
            .replace("${WASM_PLUGIN_FILTER_NAME}", &self.name)
            .replace("${WASM_PLUGIN_ROOT_ID}", &self.root_id)
            .replace(
                "${WASM_PLUGIN_CONFIG}",
                &self.configuration.replace('\'', "''"),
            )
            .replace(
                "${WASM_PLUGIN_HOST_ENV_KEYS}",
                &Json::from(self.host_env_keys.clone()).to_string(),
            )
            .replace("${WASM_PLUGIN_FAILURE_POLICY}", &self.failure_policy)
            .replace("${CONTROL_PLANE_CLUSTER}", &self.istio_cluster)
            .replace("${CONTROL_PLANE_PORT}", &ports.control_plane.to_string())
            .replace("${UPSTREAM_PORT}", &ports.upstream.to_string())
    }
}

/// A node id as Istio gives a gateway pod's Envoy, unique to this one.
fn gateway_node_id(admin_port: u16) -> String {
    format!(
        "router~127.0.0.1~istio-ingressgateway-{admin_port}.istio-system~istio-system.svc.cluster.local"
    )
}

const GATEWAY_TEMPLATE: &str = "tests/fixtures/istio/ingress-gateway.yaml";

struct GatewayPorts {
    listen: u16,
    admin: u16,
    control_plane: u16,
    upstream: u16,
}

/// The documents of a multi-document YAML file of the repository, empty ones left out.
pub fn manifest_documents(root: &Path, file: &str) -> Vec<Value> {
    let yaml = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|document| !document.is_null())
        .collect();
    documents
}

/// The one document of `kind` in a multi-document YAML file of the repository.
fn document(root: &Path, file: &str, kind: &str) -> Value {
    manifest_documents(root, file)
        .into_iter()
        .find(|document| text(&document["kind"]) == kind)
        .unwrap_or_else(|| panic!("{file} has no {kind}"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// A control plane, an upstream, and the ingress gateway's Envoy configured as Istio
/// configures it.
pub struct IstioGateway {
    pub envoy: Envoy,
    pub control_plane: ControlPlane,
    pub filter: WasmPluginFilter,
    _upstream: Echo,
    _slot: GatewaySlot,
}

impl IstioGateway {
    /// Starts everything and waits until the gateway's syncer has the control plane's state.
    pub fn start() -> Self {
        let slot = GatewaySlot::acquire();
        let layout = Layout::discover();
        let filter = WasmPluginFilter::from_manifests(&layout.root);
        let upstream = Echo::start(&layout, "backend");
        let control_plane = ControlPlane::start(&layout, ControlPlaneOptions::default());
        // The gateway's environment holds the credential, as its Secret would put it there.
        let environment = [(filter.credential_env.clone(), ENVOY_CREDENTIAL.to_owned())];
        let envoy =
            Envoy::start_with_bootstrap(&layout, GATEWAY_WORKERS, &environment, |listen, admin| {
                filter.bootstrap(
                    &layout,
                    &GatewayPorts {
                        listen,
                        admin,
                        control_plane: control_plane.grpc_port,
                        upstream: upstream.port,
                    },
                )
            });
        envoy.wait_for_stat(
            crate::SYNC_ANSWERS_STAT,
            1,
            std::time::Duration::from_secs(10),
        );
        Self {
            envoy,
            control_plane,
            filter,
            _upstream: upstream,
            _slot: slot,
        }
    }
}
