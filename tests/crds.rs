//! `crds/` must be exactly what the Rust types generate, and the chart must ship the same files.

use std::path::Path;

const REGENERATE: &str = "cargo run -- crds --out crds && cp crds/*.yaml charts/portcullis/crds/";

#[test]
fn crds_dir_matches_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected: Vec<String> = Vec::new();
    for (name, yaml) in portcullis::api::crd_files() {
        let path = dir.join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "{} is stale or missing; regenerate with `{REGENERATE}`",
            path.display()
        );
        expected.push(name.to_owned());
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(
        present, expected,
        "crds/ holds files no type generates; regenerate with `{REGENERATE}`"
    );
}
