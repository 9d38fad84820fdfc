//! Standalone source: every `*.yaml`, `*.yml` and `*.json` under a directory, re-read when it
//! changes. A file that fails to parse keeps the objects last loaded from it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::routes::Snapshot;

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub enum Object {
    /// networking.k8s.io/v1 Ingress.
    Ingress(Arc<Ingress>),
    /// networking.k8s.io/v1 IngressClass.
    IngressClass(Arc<IngressClass>),
    /// v1 Service.
    Service(Arc<Service>),
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice(Arc<EndpointSlice>),
    /// v1 Secret.
    Secret(Arc<Secret>),
}

impl Object {
    fn key(&self) -> (&'static str, String, String) {
        let (kind, meta): (&'static str, &ObjectMeta) = match self {
            Object::Ingress(o) => ("Ingress", &o.metadata),
            Object::IngressClass(o) => ("IngressClass", &o.metadata),
            Object::Service(o) => ("Service", &o.metadata),
            Object::EndpointSlice(o) => ("EndpointSlice", &o.metadata),
            Object::Secret(o) => ("Secret", &o.metadata),
        };
        (
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// Why a manifest file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML or JSON.
    #[error("{file}: document {doc}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based document number.
        doc: usize,
        /// Parser message with line and column.
        message: String,
    },
    /// A document does not fit its kind's schema.
    #[error("{file}: document {doc} ({object}): field {field}: {message}")]
    Schema {
        /// The file.
        file: String,
        /// 1-based document number.
        doc: usize,
        /// `Kind namespace/name`.
        object: String,
        /// Path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

#[derive(Debug)]
struct FileState {
    stamp: Stamp,
    objects: Vec<Object>,
    error: Option<String>,
}

/// The state of a manifest directory: the objects of every file, as last loaded.
#[derive(Debug)]
pub struct DirSource {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

impl DirSource {
    /// A source over `root`; nothing is read until `scan`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            files: BTreeMap::new(),
        }
    }

    /// Re-reads new and changed files and forgets deleted ones; returns whether anything changed.
    pub fn scan(&mut self) -> bool {
        let mut found = Vec::new();
        walk(&self.root, &mut found);
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| found.iter().any(|(f, _)| f == p));
        changed |= self.files.len() != before;
        for (path, stamp) in found {
            if self.files.get(&path).is_some_and(|s| s.stamp == stamp) {
                continue;
            }
            changed = true;
            let shown = path
                .strip_prefix(&self.root)
                .unwrap_or(&path)
                .display()
                .to_string();
            match load_file(&path, &shown) {
                Ok(objects) => {
                    self.files.insert(
                        path,
                        FileState {
                            stamp,
                            objects,
                            error: None,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(file = %shown, error = %e, "manifest not loaded; keeping its previous objects");
                    let objects = self
                        .files
                        .remove(&path)
                        .map(|s| s.objects)
                        .unwrap_or_default();
                    self.files.insert(
                        path,
                        FileState {
                            stamp,
                            objects,
                            error: Some(e.to_string()),
                        },
                    );
                }
            }
        }
        changed
    }

    /// The current snapshot, and the errors of files and duplicate objects.
    pub fn snapshot(&self) -> (Snapshot, Vec<String>) {
        let mut snap = Snapshot::default();
        let mut errors: Vec<String> = self
            .files
            .values()
            .filter_map(|f| f.error.clone())
            .collect();
        let mut seen: HashMap<(&'static str, String, String), &Path> = HashMap::new();
        for (path, file) in &self.files {
            for obj in &file.objects {
                let key = obj.key();
                if let Some(first) = seen.get(&key) {
                    errors.push(format!(
                        "{}: {} {}/{} is also defined in {}; the first definition is used",
                        path.strip_prefix(&self.root).unwrap_or(path).display(),
                        key.0,
                        key.1,
                        key.2,
                        first.strip_prefix(&self.root).unwrap_or(first).display()
                    ));
                    continue;
                }
                seen.insert(key, path);
                match obj {
                    Object::Ingress(o) => snap.ingresses.push(o.clone()),
                    Object::IngressClass(o) => snap.ingress_classes.push(o.clone()),
                    Object::Service(o) => snap.services.push(o.clone()),
                    Object::EndpointSlice(o) => snap.endpoint_slices.push(o.clone()),
                    Object::Secret(o) => snap.secrets.push(o.clone()),
                }
            }
        }
        (snap, errors)
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Stamp)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, out);
        } else if [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x)) {
            use std::os::unix::fs::MetadataExt;
            out.push((
                path,
                Stamp {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                    ino: meta.ino(),
                },
            ));
        }
    }
}

/// Reads every object in one file (multi-document YAML, JSON, `kind: List`).
pub fn load_file(path: &Path, display: &str) -> Result<Vec<Object>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        file: display.to_owned(),
        source,
    })?;
    parse_manifests(&text, display)
}

/// Parses manifest text; objects of kinds Portcullis does not read are skipped.
pub fn parse_manifests(text: &str, file: &str) -> Result<Vec<Object>, LoadError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc_no = i + 1;
        let value = serde_json::Value::deserialize(doc).map_err(|e| LoadError::Syntax {
            file: file.to_owned(),
            doc: doc_no,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let items = if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            match value.get("items") {
                Some(serde_json::Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            }
        } else {
            vec![value]
        };
        for item in items {
            if let Some(obj) = to_object(item, file, doc_no)? {
                out.push(obj);
            }
        }
    }
    Ok(out)
}

fn to_object(
    value: serde_json::Value,
    file: &str,
    doc: usize,
) -> Result<Option<Object>, LoadError> {
    let api = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let ns = value
        .pointer("/metadata/namespace")
        .and_then(|v| v.as_str())
        .unwrap_or("default")
        .to_owned();
    let name = value
        .pointer("/metadata/name")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let object = format!("{kind} {ns}/{name}");
    let schema = |field: String, message: String| LoadError::Schema {
        file: file.to_owned(),
        doc,
        object: object.clone(),
        field,
        message,
    };
    if !value.is_object() {
        return Err(schema(
            "(document)".into(),
            "expected a mapping with apiVersion and kind".into(),
        ));
    }
    if name.is_empty()
        && matches!(
            kind.as_str(),
            "Ingress" | "IngressClass" | "Service" | "EndpointSlice" | "Secret"
        )
    {
        return Err(schema("metadata.name".into(), "is required".into()));
    }
    fn typed<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, (String, String)> {
        serde_path_to_error::deserialize(v)
            .map_err(|e| (e.path().to_string(), e.inner().to_string()))
    }
    let obj = match (api.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "Ingress") => typed::<Ingress>(value).map(|mut o| {
            o.metadata.namespace = Some(ns.clone());
            Object::Ingress(Arc::new(o))
        }),
        ("networking.k8s.io/v1", "IngressClass") => {
            typed::<IngressClass>(value).map(|o| Object::IngressClass(Arc::new(o)))
        }
        ("v1", "Service") => typed::<Service>(value).map(|mut o| {
            o.metadata.namespace = Some(ns.clone());
            Object::Service(Arc::new(o))
        }),
        ("discovery.k8s.io/v1", "EndpointSlice") => typed::<EndpointSlice>(value).map(|mut o| {
            o.metadata.namespace = Some(ns.clone());
            Object::EndpointSlice(Arc::new(o))
        }),
        ("v1", "Secret") => typed::<Secret>(value).map(|mut o| {
            o.metadata.namespace = Some(ns.clone());
            // The API server merges stringData into data; do the same.
            if let Some(sd) = o.string_data.take() {
                let data = o.data.get_or_insert_with(Default::default);
                for (k, v) in sd {
                    data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                }
            }
            Object::Secret(Arc::new(o))
        }),
        _ => {
            tracing::debug!(file, doc, api = %api, kind = %kind, "ignoring object of a kind Portcullis does not read");
            return Ok(None);
        }
    };
    obj.map(Some)
        .map_err(|(field, message)| schema(field, message))
}
