//! Moving an artifact to or from a store (registry or layout): blobs first, skipping those
//! already there, the tag last; pulls verify every digest before anything is written.

use super::artifact::{self, Artifact, Descriptor, Format, Manifest, RuntimeConfig};
use super::digest::Digest;
use super::layout::Layout;
use super::reference::LayoutRef;
use super::registry::Registry;
use anyhow::{Context, Result};
use serde::Serialize;

/// Where an artifact goes or comes from.
pub enum Store {
    /// An OCI image layout directory.
    Layout {
        /// The open layout.
        layout: Layout,
        /// How it was named.
        reference: LayoutRef,
    },
    /// A registry repository (boxed: a client is much larger than a layout).
    Registry(Box<Registry>),
}

/// One blob of a push.
#[derive(Debug, Serialize)]
pub struct BlobReport {
    /// What it is ("wasm layer").
    pub role: &'static str,
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// False when the store had it already and nothing was sent.
    pub uploaded: bool,
}

/// What a push did.
#[derive(Debug, Serialize)]
pub struct PushReport {
    /// The reference written (`host/repo:tag` or `oci:DIR:tag`).
    pub reference: String,
    /// The reference pinned to the manifest digest (`host/repo@sha256:...`).
    pub pinned: String,
    /// The manifest digest.
    pub digest: String,
    /// The format packed.
    pub format: Format,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// The module's size in bytes.
    pub module_size: u64,
    /// Each blob, config first.
    pub blobs: Vec<BlobReport>,
    /// Blob bytes sent.
    pub uploaded_bytes: u64,
    /// Blob bytes the store already had.
    pub skipped_bytes: u64,
    /// The credentials used, described without secrets (registries only).
    pub credentials: Option<String>,
}

/// What a pull found.
#[derive(Debug)]
pub struct Pulled {
    /// The module.
    pub module: Vec<u8>,
    /// The layout it was found in (`universal`, `asm`, `compat`, `docker-compat`).
    pub layout: &'static str,
    /// The manifest digest.
    pub digest: Digest,
    /// The digest of the layer that held the module.
    pub layer_digest: String,
    /// The runtime config, when the artifact carries one.
    pub runtime_config: Option<RuntimeConfig>,
    /// The reference pinned to the manifest digest.
    pub pinned: String,
}

impl Store {
    /// The store's name for messages.
    pub fn name(&self) -> String {
        match self {
            Store::Layout { reference, .. } => reference.to_string(),
            Store::Registry(r) => r.target().to_string(),
        }
    }
}

/// Pushes `artifact` and points `tag` at it, after every blob is in place.
pub async fn push(
    store: &Store,
    artifact: &Artifact,
    tag: &str,
    module_size: u64,
) -> Result<PushReport> {
    let mut blobs = Vec::new();
    for blob in &artifact.blobs {
        let present = match store {
            Store::Layout { layout, .. } => layout.has_blob(&blob.digest),
            Store::Registry(r) => r.has_blob(blob).await?,
        };
        if !present {
            match store {
                Store::Layout { layout, .. } => layout.put_blob(&blob.digest, &blob.bytes)?,
                Store::Registry(r) => r.put_blob(blob).await?,
            }
        }
        blobs.push(BlobReport {
            role: blob.role,
            media_type: blob.media_type.clone(),
            digest: blob.digest.to_string(),
            size: blob.bytes.len() as u64,
            uploaded: !present,
        });
    }
    let (reference, pinned, credentials) = match store {
        Store::Layout { layout, reference } => {
            layout.put_blob(&artifact.digest, &artifact.manifest)?;
            let desc = Descriptor {
                media_type: artifact.media_type.to_owned(),
                digest: artifact.digest.to_string(),
                size: artifact.manifest.len() as u64,
                annotations: Default::default(),
            };
            layout.tag(tag, desc)?;
            let dir = reference.dir.display();
            (
                format!("oci:{dir}:{tag}"),
                format!("oci:{dir}@{}", artifact.digest),
                None,
            )
        }
        Store::Registry(r) => {
            r.put_manifest(tag, &artifact.manifest, artifact.media_type)
                .await?;
            let t = r.target();
            (
                format!("{}:{tag}", t.repository_url()),
                t.pinned(&artifact.digest),
                Some(r.tried().to_owned()),
            )
        }
    };
    let sum = |up: bool| {
        blobs
            .iter()
            .filter(|b| b.uploaded == up)
            .map(|b| b.size)
            .sum()
    };
    Ok(PushReport {
        reference,
        pinned,
        digest: artifact.digest.to_string(),
        format: artifact.format,
        manifest_size: artifact.manifest.len() as u64,
        module_size,
        uploaded_bytes: sum(true),
        skipped_bytes: sum(false),
        blobs,
        credentials,
    })
}

/// Fetches the manifest the store's reference names, finds the module, verifies everything.
pub async fn pull(store: &Store) -> Result<Pulled> {
    let name = store.name();
    let (manifest_bytes, digest) = match store {
        Store::Layout { layout, reference } => {
            let desc = layout.resolve(reference.tag.as_deref())?;
            let d = Digest::parse(&desc.digest)
                .with_context(|| format!("{name}: index.json names a bad digest"))?;
            if desc.size > super::registry::MAX_MANIFEST {
                anyhow::bail!(
                    "{name}: index.json says the manifest is {} bytes, more than the {} weir reads",
                    desc.size,
                    super::registry::MAX_MANIFEST
                );
            }
            (layout.get_blob(&d, Some(desc.size), "manifest")?, d)
        }
        Store::Registry(r) => r.get_manifest().await?,
    };
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        anyhow::anyhow!("the manifest of {name} is not an OCI or Docker manifest ({e})")
    })?;
    let located = artifact::locate(&manifest)
        .with_context(|| format!("cannot pull a wasm module from {name}"))?;
    let what = if located.tar_gzip {
        "compat layer"
    } else {
        "wasm layer"
    };
    let layer = get(store, &located.layer, what).await?;
    let module = artifact::unpack(&located, layer)
        .with_context(|| format!("cannot pull a wasm module from {name}"))?;
    let runtime_config = match &located.runtime_config {
        Some(desc) => {
            let bytes = get(store, desc, "runtime config").await?;
            // What the store says about the module is printed: escaped here, once.
            serde_json::from_slice(&bytes)
                .ok()
                .map(|mut c: RuntimeConfig| {
                    let safe = |v: &mut Vec<String>| {
                        v.iter_mut()
                            .for_each(|s| *s = crate::display::quote(s, 200))
                    };
                    safe(&mut c.abi_versions);
                    safe(&mut c.config.root_ids);
                    c
                })
        }
        None => None,
    };
    let pinned = match store {
        Store::Layout { reference, .. } => format!("oci:{}@{digest}", reference.dir.display()),
        Store::Registry(r) => r.target().pinned(&digest),
    };
    Ok(Pulled {
        module,
        layout: located.layout,
        digest,
        layer_digest: located.layer.digest.clone(),
        runtime_config,
        pinned,
    })
}

async fn get(store: &Store, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    match store {
        Store::Layout { layout, .. } => {
            let d = Digest::parse(&desc.digest)
                .with_context(|| format!("the manifest names its {what} by a bad digest"))?;
            layout.get_blob(&d, Some(desc.size), what)
        }
        Store::Registry(r) => r.get_blob(desc, what).await,
    }
}
