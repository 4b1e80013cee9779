//! Where the built artifacts are.

use std::path::{Path, PathBuf};

/// Paths of everything the tests run, all built or installed by `make test`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub tollgate_bin: PathBuf,
    pub echo_bin: PathBuf,
    pub filter_wasm: PathBuf,
    pub envoy_bin: PathBuf,
    pub bootstrap_template: PathBuf,
}

impl Layout {
    /// Finds the artifacts; panics with the command that builds a missing one.
    pub fn discover() -> Self {
        let layout = Self::of_build("debug");
        for path in [
            &layout.tollgate_bin,
            &layout.echo_bin,
            &layout.filter_wasm,
            &layout.envoy_bin,
        ] {
            assert!(
                path.exists(),
                "{} is missing: run `make test` (it builds and installs everything)",
                path.display()
            );
        }
        layout
    }

    /// The release build's control plane, for benchmarks that run it alone; panics when it
    /// is missing.
    pub fn release_control_plane() -> Self {
        let layout = Self::of_build("release");
        assert!(
            layout.tollgate_bin.exists(),
            "{} is missing: run `cargo build --release -p tollgate`",
            layout.tollgate_bin.display()
        );
        layout
    }

    /// The repository's folder (where `.tools/` and `tests/fixtures/` are).
    pub fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ sits in the repository")
            .to_path_buf()
    }

    /// Where everything is when the Rust binaries are of the `profile` build.
    fn of_build(profile: &str) -> Self {
        let root = Self::root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Self {
            tollgate_bin: target.join(profile).join("tollgate"),
            echo_bin: target.join(profile).join("tollgate-echo"),
            filter_wasm: target.join("wasm32-wasip1/release/tollgate_filter.wasm"),
            envoy_bin: root.join(".tools/bin/envoy"),
            bootstrap_template: root.join("envoy/bootstrap.yaml"),
            root,
        }
    }
}
