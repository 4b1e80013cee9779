//! The Kubernetes manifests shipped for Istio users are valid against their published schemas:
//! the core kinds against Kubernetes' (kubernetes-validate, strict: no unknown fields), Istio's
//! against its CRDs (@kubernetes-models/istio). Both validators are installed into `.tools/`
//! by `scripts/setup.sh`, since no cluster runs here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml::Value;
use tollgate_e2e::manifest_documents;

const MANIFESTS: [&str; 2] = [
    "envoy/istio-control-plane.yaml",
    "envoy/istio-wasmplugin.yaml",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn is_istio(resource: &Value) -> bool {
    resource["apiVersion"]
        .as_str()
        .is_some_and(|version| version.contains(".istio.io/"))
}

fn tool(relative: &str) -> PathBuf {
    let path = root().join(".tools").join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (make test does)",
        path.display()
    );
    path
}

/// kubernetes-validate's verdict on the core resources: whether all are valid, and its report.
fn kubernetes_validate(resources: &[Value]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a folder");
    let file = dir.path().join("resources.yaml");
    let yaml: Vec<String> = resources
        .iter()
        .map(|resource| serde_yaml::to_string(resource).expect("YAML"))
        .collect();
    std::fs::write(&file, yaml.join("---\n")).expect("write resources");
    let output = Command::new(tool("venv/bin/kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success() && !report.contains("ERROR"), report)
}

/// The Istio schemas' verdict on Istio resources: whether all are valid, and the report.
fn istio_validate(resources: &[Value]) -> (bool, String) {
    let json = serde_json::to_vec(resources).expect("JSON");
    let mut child = Command::new("node")
        .arg(root().join("tests/schemas/validate-istio.mjs"))
        .arg(tool("node/node_modules"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&json)
        .expect("write resources");
    let output = child.wait_with_output().expect("the validator ends");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(2), "{report}");
    (output.status.success(), report)
}

fn shipped() -> (Vec<Value>, Vec<Value>) {
    MANIFESTS
        .iter()
        .flat_map(|file| manifest_documents(&root(), file))
        .partition(is_istio)
}

#[test]
fn the_istio_manifests_are_valid_against_their_published_schemas() {
    let (istio, core) = shipped();
    let kinds = |resources: &[Value]| -> Vec<String> {
        resources
            .iter()
            .map(|r| r["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(&core),
        [
            "Namespace",
            "Secret",
            "Secret",
            "Secret",
            "ServiceAccount",
            "Deployment",
            "Service"
        ]
    );
    assert_eq!(
        kinds(&istio),
        [
            "PeerAuthentication",
            "AuthorizationPolicy",
            "WasmPlugin",
            "DestinationRule"
        ]
    );
    let (valid, report) = kubernetes_validate(&core);
    assert!(valid, "{report}");
    let (valid, report) = istio_validate(&istio);
    assert!(valid, "{report}");
}

#[test]
fn the_validators_refuse_what_their_schemas_do_not_allow() {
    let (mut istio, mut core) = shipped();
    let service = core
        .iter_mut()
        .find(|r| r["kind"] == "Service")
        .expect("a Service");
    service["spec"]["ports"][0]["appProtocl"] = Value::from("grpc");
    let (valid, report) = kubernetes_validate(&core);
    assert!(!valid, "a misspelt field passed: {report}");

    let plugin = istio
        .iter_mut()
        .find(|r| r["kind"] == "WasmPlugin")
        .expect("a WasmPlugin");
    plugin["spec"]["failStrategy"] = Value::from("FAIL_CLOSED");
    let (valid, report) = istio_validate(&istio);
    assert!(!valid, "an unknown failStrategy passed: {report}");
    assert!(report.contains("failStrategy"), "{report}");
}
