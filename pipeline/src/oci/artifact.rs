//! The three ways a wasm module is packed into an OCI artifact, and finding it again in any of them.
//!
//! - `universal`: the "oci" variant of the Wasm image spec that Istio, Envoy Gateway and Higress
//!   fetch: exactly two layers, the runtime config and the raw module.
//! - `asm`: the seed's `oras push` layout: the runtime config as the manifest config, one raw
//!   module layer.
//! - `compat`: a plain OCI image whose one tar+gzip layer holds `plugin.wasm`.
//!
//! Nothing here reads a clock: the same module and metadata give the same bytes and digests.

use super::digest::Digest;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// A raw wasm module layer.
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The Wasm artifact runtime config.
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// An OCI image config.
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An OCI tar+gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A Docker tar+gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Every manifest type `pull` asks a registry for.
pub const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];

/// The annotation holding the module's proxy-wasm ABI versions (comma-separated).
pub const ABI_ANNOTATION: &str = "com.github.weir-rs.proxy-wasm.abi-versions";
/// The file name of the module inside a compat layer (the spec's, and Istio's).
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// The largest module `pull` unpacks from a tar+gzip layer.
const MAX_MODULE: u64 = 256 << 20;

/// How `push` packs the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Two layers (runtime config + raw module): Istio, Envoy Gateway, Higress.
    Universal,
    /// The seed's ORAS layout (wasm config, one raw module layer): ASM's ORAS flow.
    Asm,
    /// An OCI image whose tar+gzip layer holds plugin.wasm: Istio's "compat" variant.
    Compat,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Universal => "universal",
            Format::Asm => "asm",
            Format::Compat => "compat",
        })
    }
}

/// What the artifact says about the module besides its bytes.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// The module's name (`add-header`): the title annotation, and `<title>.wasm` for the layer.
    pub title: String,
    /// The root ids the module answers to.
    pub root_ids: Vec<String>,
    /// The proxy-wasm ABI versions it exports (`0_2_1`).
    pub abi_versions: Vec<String>,
    /// Where its source lives (`org.opencontainers.image.source`).
    pub source: Option<String>,
    /// The source revision (`org.opencontainers.image.revision`).
    pub revision: Option<String>,
    /// Seconds since the epoch, from `SOURCE_DATE_EPOCH` only: `created` and tar mtimes.
    pub epoch: Option<i64>,
}

/// One blob of an artifact.
#[derive(Clone, Debug)]
pub struct Blob {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its content.
    pub bytes: Vec<u8>,
    /// What it is, for messages ("wasm layer").
    pub role: &'static str,
}

/// A packed artifact: its blobs (each once) and its manifest, which is written last.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The format it was packed in.
    pub format: Format,
    /// The manifest's exact bytes (what its digest covers).
    pub manifest: Vec<u8>,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: &'static str,
    /// The config and layer blobs, each digest once, config first.
    pub blobs: Vec<Blob>,
}

/// An OCI descriptor as it appears in manifests and indexes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest of the content (kept as text until it is verified).
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker v2) or index, as far as finding a module needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest's own media type (optional in OCI).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    /// The layers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Descriptor>,
    /// An index's manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The Wasm artifact runtime config (`application/vnd.module.wasm.config.v1+json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Always `envoy_proxy` for weir's modules.
    #[serde(rename = "type")]
    pub kind: String,
    /// ABI versions (`0_2_1`).
    #[serde(rename = "abiVersions", default)]
    pub abi_versions: Vec<String>,
    /// Runtime-specific settings.
    #[serde(default)]
    pub config: RuntimeSettings,
}

/// The `config` object of a [`RuntimeConfig`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RuntimeSettings {
    /// Root ids the module answers to.
    #[serde(rename = "rootIds", default)]
    pub root_ids: Vec<String>,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>, role: &'static str) -> Self {
        Blob {
            media_type: media_type.to_owned(),
            digest: Digest::of(&bytes),
            bytes,
            role,
        }
    }

    fn descriptor(&self, title: Option<&str>) -> Descriptor {
        let mut annotations = BTreeMap::new();
        if let Some(t) = title {
            annotations.insert("org.opencontainers.image.title".to_owned(), t.to_owned());
        }
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.to_string(),
            size: self.bytes.len() as u64,
            annotations,
        }
    }
}

/// The runtime config JSON for `meta`.
pub fn runtime_config(meta: &Metadata) -> Vec<u8> {
    let config = RuntimeConfig {
        kind: "envoy_proxy".to_owned(),
        abi_versions: meta.abi_versions.clone(),
        config: RuntimeSettings {
            root_ids: meta.root_ids.clone(),
        },
    };
    serde_json::to_vec(&config).unwrap_or_default()
}

/// Packs `module` in `format`.
pub fn pack(format: Format, module: &[u8], meta: &Metadata) -> Result<Artifact> {
    let wasm_title = format!("{}.wasm", meta.title);
    let runtime = Blob::new(WASM_CONFIG, runtime_config(meta), "runtime config");
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.title".to_owned(),
        meta.title.clone(),
    );
    annotations.insert(ABI_ANNOTATION.to_owned(), meta.abi_versions.join(","));
    if let Some(s) = &meta.source {
        annotations.insert("org.opencontainers.image.source".to_owned(), s.clone());
    }
    if let Some(r) = &meta.revision {
        annotations.insert("org.opencontainers.image.revision".to_owned(), r.clone());
    }
    if let Some(created) = meta.epoch.and_then(rfc3339) {
        annotations.insert("org.opencontainers.image.created".to_owned(), created);
    }
    let (config, layers, blobs) = match format {
        Format::Universal => {
            let wasm = Blob::new(WASM_LAYER, module.to_vec(), "wasm layer");
            let layers = vec![
                runtime.descriptor(Some("runtime-config.json")),
                wasm.descriptor(Some(&wasm_title)),
            ];
            (runtime.descriptor(None), layers, vec![runtime, wasm])
        }
        Format::Asm => {
            let wasm = Blob::new(WASM_LAYER, module.to_vec(), "wasm layer");
            let layers = vec![wasm.descriptor(Some(&wasm_title))];
            (runtime.descriptor(None), layers, vec![runtime, wasm])
        }
        Format::Compat => {
            annotations.insert("module.wasm.image/variant".to_owned(), "compat".to_owned());
            let tar = compat_tar(module, &runtime.bytes, meta.epoch.unwrap_or(0))?;
            let image_config = image_config(&Digest::of(&tar), meta.epoch);
            let layer = Blob::new(OCI_LAYER_GZIP, gzip(&tar)?, "compat layer");
            let config = Blob::new(OCI_IMAGE_CONFIG, image_config, "image config");
            (
                config.descriptor(None),
                vec![layer.descriptor(None)],
                vec![config, layer],
            )
        }
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        config: Some(config),
        layers,
        manifests: Vec::new(),
        annotations,
    };
    let bytes = serde_json::to_vec(&manifest).context("cannot serialize the manifest")?;
    Ok(Artifact {
        format,
        digest: Digest::of(&bytes),
        manifest: bytes,
        media_type: OCI_MANIFEST,
        blobs,
    })
}

/// A minimal OCI image config for the compat image.
fn image_config(diff_id: &Digest, epoch: Option<i64>) -> Vec<u8> {
    let mut config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id.as_str()] },
    });
    if let Some(created) = epoch.and_then(rfc3339) {
        config["created"] = serde_json::Value::String(created);
    }
    serde_json::to_vec(&config).unwrap_or_default()
}

/// An uncompressed tar of `plugin.wasm` and `runtime-config.json`, owned by root, mode 0644.
fn compat_tar(module: &[u8], runtime_config: &[u8], mtime: i64) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        (PLUGIN_FILE, module),
        ("runtime-config.json", runtime_config),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime.max(0) as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes)
            .with_context(|| format!("cannot add {name} to the compat layer"))?;
    }
    tar.into_inner().context("cannot finish the compat layer")
}

/// Gzip with no name and mtime 0, so the output depends only on the input.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)
        .context("cannot compress the compat layer")?;
    gz.finish().context("cannot compress the compat layer")
}

/// `1700000000` → `2023-11-14T22:13:20Z`.
fn rfc3339(epoch: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(epoch, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// How the module sits in a manifest's layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Which layout this is: `universal`, `asm`, `compat` or `docker-compat`.
    pub layout: &'static str,
    /// The layer holding the module.
    pub layer: Descriptor,
    /// True when the layer is tar+gzip holding `plugin.wasm`; false for a raw module.
    pub tar_gzip: bool,
    /// The runtime config blob, when the manifest has one.
    pub runtime_config: Option<Descriptor>,
}

/// Finds the module in `manifest` the way Istio's fetcher does: a Docker manifest's single
/// tar+gzip layer; else one OCI tar+gzip layer (compat); else two layers one of which is the
/// wasm layer (universal); and, for ASM's ORAS flow, one wasm layer.
pub fn locate(manifest: &Manifest) -> Result<Located> {
    let media_type = manifest.media_type.as_deref().unwrap_or("");
    if media_type == OCI_INDEX || media_type == DOCKER_LIST || !manifest.manifests.is_empty() {
        let digests: Vec<&str> = manifest
            .manifests
            .iter()
            .map(|m| m.digest.as_str())
            .collect();
        bail!(
            "it is an image index of {} manifests ({}); pull one of them by digest (REPO@sha256:...)",
            digests.len(),
            digests.join(", ")
        );
    }
    if manifest.schema_version != 2 {
        bail!(
            "its manifest has schemaVersion {}; only schema 2 manifests hold wasm artifacts",
            manifest.schema_version
        );
    }
    let layers = &manifest.layers;
    let runtime_config = manifest
        .config
        .clone()
        .filter(|c| c.media_type == WASM_CONFIG);
    let types = || {
        layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if media_type == DOCKER_MANIFEST {
        return match layers.as_slice() {
            [layer] if layer.media_type == DOCKER_LAYER_GZIP => {
                Ok(Located { layout: "docker-compat", layer: layer.clone(), tar_gzip: true, runtime_config: None })
            }
            _ => bail!("it is a Docker image with {} layers ({}); a wasm image has one {DOCKER_LAYER_GZIP} layer holding {PLUGIN_FILE}", layers.len(), types()),
        };
    }
    match layers.as_slice() {
        [layer] if layer.media_type == OCI_LAYER_GZIP => {
            Ok(Located { layout: "compat", layer: layer.clone(), tar_gzip: true, runtime_config: None })
        }
        [a, b] if a.media_type == WASM_LAYER || b.media_type == WASM_LAYER => {
            let layer = if a.media_type == WASM_LAYER { a } else { b };
            let runtime_config =
                runtime_config.or_else(|| [a, b].into_iter().find(|l| l.media_type == WASM_CONFIG).cloned());
            Ok(Located { layout: "universal", layer: layer.clone(), tar_gzip: false, runtime_config })
        }
        [layer] if layer.media_type == WASM_LAYER => {
            Ok(Located { layout: "asm", layer: layer.clone(), tar_gzip: false, runtime_config })
        }
        _ => bail!(
            "it holds no wasm module in a layout weir knows: {} layers ({}); expected one {OCI_LAYER_GZIP} layer (compat), two layers with one {WASM_LAYER} (universal), or one {WASM_LAYER} (asm)",
            layers.len(),
            if layers.is_empty() { "none".to_owned() } else { types() }
        ),
    }
}

/// The module out of a located layer's (already verified) bytes.
pub fn unpack(located: &Located, layer: Vec<u8>) -> Result<Vec<u8>> {
    let module = if located.tar_gzip {
        plugin_from_tar_gzip(&layer)?
    } else {
        layer
    };
    if !module.starts_with(b"\0asm") {
        bail!(
            "the {} layer does not hold a wasm module (no \\0asm header)",
            located.layout
        );
    }
    Ok(module)
}

fn plugin_from_tar_gzip(layer: &[u8]) -> Result<Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let entries = archive.entries().context("the layer is not tar+gzip")?;
    for entry in entries {
        let entry = entry.context("the layer is not a readable tar+gzip")?;
        let is_plugin = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n == PLUGIN_FILE))
            .unwrap_or(false);
        if !is_plugin {
            continue;
        }
        let size = entry.header().size().unwrap_or(0);
        if size > MAX_MODULE {
            bail!("{PLUGIN_FILE} in the layer is {size} bytes, more than the {MAX_MODULE} weir unpacks");
        }
        let mut module = Vec::with_capacity(size as usize);
        entry
            .take(MAX_MODULE)
            .read_to_end(&mut module)
            .with_context(|| format!("cannot read {PLUGIN_FILE} from the layer"))?;
        return Ok(module);
    }
    Err(anyhow!("the tar+gzip layer holds no {PLUGIN_FILE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn meta() -> Metadata {
        Metadata {
            title: "add-header".into(),
            root_ids: vec!["add-header".into()],
            abi_versions: vec!["0_2_1".into()],
            ..Default::default()
        }
    }

    fn manifest(a: &Artifact) -> Manifest {
        serde_json::from_slice(&a.manifest).unwrap()
    }

    #[test]
    fn runtime_config_is_the_issue_shape() {
        let v: serde_json::Value = serde_json::from_slice(&runtime_config(&meta())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"envoy_proxy","abiVersions":["0_2_1"],"config":{"rootIds":["add-header"]}})
        );
    }

    #[test]
    fn universal_has_exactly_two_layers_one_wasm() {
        let a = pack(Format::Universal, MODULE, &meta()).unwrap();
        let m = manifest(&a);
        assert_eq!(m.layers.len(), 2);
        assert_eq!(
            m.layers
                .iter()
                .filter(|l| l.media_type == WASM_LAYER)
                .count(),
            1
        );
        assert_eq!(m.config.as_ref().unwrap().media_type, WASM_CONFIG);
        assert_eq!(m.annotations[ABI_ANNOTATION], "0_2_1");
        assert!(!m
            .annotations
            .contains_key("org.opencontainers.image.created"));
        let located = locate(&m).unwrap();
        assert_eq!((located.layout, located.tar_gzip), ("universal", false));
        assert_eq!(
            a.blobs.len(),
            2,
            "the runtime config is config and layer but one blob"
        );
    }

    #[test]
    fn asm_is_the_seeds_layout() {
        let m = manifest(&pack(Format::Asm, MODULE, &meta()).unwrap());
        assert_eq!(m.config.as_ref().unwrap().media_type, WASM_CONFIG);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].media_type, WASM_LAYER);
        assert_eq!(
            m.layers[0].annotations["org.opencontainers.image.title"],
            "add-header.wasm"
        );
        assert_eq!(locate(&m).unwrap().layout, "asm");
    }

    #[test]
    fn compat_holds_plugin_wasm_and_unpacks() {
        let a = pack(Format::Compat, MODULE, &meta()).unwrap();
        let m = manifest(&a);
        assert_eq!(m.annotations["module.wasm.image/variant"], "compat");
        let located = locate(&m).unwrap();
        assert_eq!(located.layout, "compat");
        let layer = a
            .blobs
            .iter()
            .find(|b| b.media_type == OCI_LAYER_GZIP)
            .unwrap();
        assert_eq!(unpack(&located, layer.bytes.clone()).unwrap(), MODULE);
    }

    #[test]
    fn same_input_same_digest_and_source_date_epoch_adds_created() {
        let a = pack(Format::Compat, MODULE, &meta()).unwrap();
        let b = pack(Format::Compat, MODULE, &meta()).unwrap();
        assert_eq!(a.digest, b.digest);
        let dated = Metadata {
            epoch: Some(1_700_000_000),
            ..meta()
        };
        let c = pack(Format::Universal, MODULE, &dated).unwrap();
        assert_eq!(
            manifest(&c).annotations["org.opencontainers.image.created"],
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn locate_refuses_what_istio_refuses() {
        let layer = |t: &str| Descriptor {
            media_type: t.into(),
            digest: Digest::of(b"x").to_string(),
            size: 1,
            annotations: BTreeMap::new(),
        };
        let m = |layers: Vec<Descriptor>| Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: None,
            layers,
            manifests: vec![],
            annotations: BTreeMap::new(),
        };
        let three = m(vec![
            layer(WASM_LAYER),
            layer(WASM_CONFIG),
            layer(WASM_CONFIG),
        ]);
        assert!(locate(&three).unwrap_err().to_string().contains("3 layers"));
        let none = m(vec![layer("application/octet-stream")]);
        assert!(locate(&none)
            .unwrap_err()
            .to_string()
            .contains("application/octet-stream"));
        let mut docker = m(vec![layer(DOCKER_LAYER_GZIP)]);
        docker.media_type = Some(DOCKER_MANIFEST.into());
        assert_eq!(locate(&docker).unwrap().layout, "docker-compat");
        let index = Manifest {
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![layer(OCI_MANIFEST)],
            ..m(vec![])
        };
        assert!(locate(&index)
            .unwrap_err()
            .to_string()
            .contains("image index"));
        let raw = Located {
            layout: "asm",
            layer: layer(WASM_LAYER),
            tar_gzip: false,
            runtime_config: None,
        };
        assert!(unpack(&raw, b"not wasm".to_vec())
            .unwrap_err()
            .to_string()
            .contains("no \\0asm header"));
    }
}
