//! OCI image layout directories (`oci:DIR:TAG`): blobs by digest, tags in `index.json`.
//!
//! Every file is written atomically; `index.json`, which holds the tags, is written last, under
//! a lock (concurrent pushes to one layout keep each other's tags).

use super::artifact::{Descriptor, OCI_INDEX};
use super::digest::Digest;
use crate::project::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
pub struct Layout {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

impl Layout {
    /// Opens `dir` for writing, creating it and its `oci-layout` marker when missing.
    pub fn create(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .with_context(|| format!("cannot create OCI layout {}", dir.display()))?;
        let marker = dir.join("oci-layout");
        if !marker.is_file() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Layout {
            dir: dir.to_owned(),
        })
    }

    /// Opens an existing layout for reading.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("oci-layout").is_file() {
            bail!("{} is not an OCI image layout (no oci-layout file); push to it first with `cargo xtask push FILTER oci:{}:TAG`", dir.display(), dir.display());
        }
        Ok(Layout {
            dir: dir.to_owned(),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// True when the blob is present with the right content (a damaged one counts as absent,
    /// so the next push repairs it).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        std::fs::read(self.blob_path(digest)).is_ok_and(|b| &Digest::of(&b) == digest)
    }

    /// Writes a blob under its digest.
    pub fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.blob_path(digest), bytes)
    }

    /// Reads a blob and verifies it against `digest` (and `size` when known).
    pub fn get_blob(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        // A file bigger than its descriptor says is refused before it is read.
        if let (Some(size), Ok(meta)) = (size, std::fs::metadata(&path)) {
            if meta.len() != size {
                bail!("the {what} in {} is {} bytes, but its descriptor says {size}: refusing it (truncated or tampered content)", self.dir.display(), meta.len());
            }
        }
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "OCI layout {} lacks the {what} {digest} ({})",
                self.dir.display(),
                path.display()
            )
        })?;
        digest.verify(
            &bytes,
            size,
            &format!("the {what} in {}", self.dir.display()),
        )?;
        Ok(bytes)
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.dir.join("index.json");
        if !path.exists() {
            return Ok(Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.to_owned()),
                manifests: Vec::new(),
                annotations: BTreeMap::new(),
            });
        }
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{} is not an OCI image index", path.display()))
    }

    /// Holds the layout's lock until dropped: an exclusive `flock` on the directory itself (no
    /// extra file in the layout), or on `.weir-index.lock` where a directory cannot be opened.
    fn lock(&self) -> Result<std::fs::File> {
        let file = std::fs::File::open(&self.dir).or_else(|_| {
            // scratch: an empty lock file, never read for its content.
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.dir.join(".weir-index.lock"))
        });
        let file =
            file.with_context(|| format!("cannot lock OCI layout {}", self.dir.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock OCI layout {}", self.dir.display()))?;
        Ok(file)
    }

    /// Points `tag` at the manifest (written after every blob): replaces an older `tag`.
    /// index.json is read, changed and replaced under the layout's lock, so concurrent pushes
    /// to one layout keep each other's tags.
    pub fn tag(&self, tag: &str, manifest: Descriptor) -> Result<()> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
        let mut manifest = manifest;
        manifest.annotations = BTreeMap::from([(REF_NAME.to_owned(), tag.to_owned())]);
        index.manifests.push(manifest);
        index.media_type = Some(OCI_INDEX.to_owned());
        let bytes = serde_json::to_vec_pretty(&index).context("cannot serialize index.json")?;
        write_atomic(&self.dir.join("index.json"), &bytes)
    }

    /// The manifest descriptor `tag` names; with no tag, the layout's only manifest.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        let index = self.read_index()?;
        let names = || {
            let n: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(|m| m.annotations.get(REF_NAME).map(String::as_str))
                .collect();
            if n.is_empty() {
                "none".to_owned()
            } else {
                n.join(", ")
            }
        };
        match tag {
            Some(tag) => index
                .manifests
                .iter()
                .find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
                .cloned()
                .with_context(|| {
                    format!(
                        "OCI layout {} has no tag `{tag}` (it has: {})",
                        self.dir.display(),
                        names()
                    )
                }),
            None => match index.manifests.as_slice() {
                [only] => Ok(only.clone()),
                _ => bail!(
                    "OCI layout {} holds {} manifests; name one: oci:{}:TAG (tags: {})",
                    self.dir.display(),
                    index.manifests.len(),
                    self.dir.display(),
                    names()
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_and_tags_round_trip_and_retag_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let d = Digest::of(b"hello");
        assert!(!layout.has_blob(&d));
        layout.put_blob(&d, b"hello").unwrap();
        assert!(layout.has_blob(&d));
        assert_eq!(layout.get_blob(&d, Some(5), "blob").unwrap(), b"hello");
        let desc = |d: &Digest| Descriptor {
            media_type: "m".into(),
            digest: d.to_string(),
            size: 5,
            annotations: BTreeMap::new(),
        };
        layout.tag("v1", desc(&d)).unwrap();
        let e = Digest::of(b"other");
        layout.tag("v1", desc(&e)).unwrap();
        layout.tag("v2", desc(&d)).unwrap();
        let opened = Layout::open(dir.path()).unwrap();
        assert_eq!(opened.resolve(Some("v1")).unwrap().digest, e.to_string());
        assert!(opened
            .resolve(None)
            .unwrap_err()
            .to_string()
            .contains("holds 2 manifests"));
        assert!(opened
            .resolve(Some("v3"))
            .unwrap_err()
            .to_string()
            .contains("has no tag `v3` (it has: v1, v2)"));
        // A damaged blob is not "present", and reading it fails verification.
        std::fs::write(opened.blob_path(&d), b"hellO").unwrap();
        assert!(!opened.has_blob(&d));
        assert!(opened
            .get_blob(&d, None, "blob")
            .unwrap_err()
            .to_string()
            .contains("refusing"));
    }

    /// Pushes to one layout from several processes at once (threads here, each with its own
    /// handle): every tag written must survive; none is lost to another's index.json rewrite.
    #[test]
    fn concurrent_tags_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        Layout::create(dir.path()).unwrap();
        let d = Digest::of(b"m");
        std::thread::scope(|s| {
            for t in 0..4 {
                let (path, d) = (dir.path(), &d);
                s.spawn(move || {
                    let layout = Layout::create(path).unwrap();
                    for i in 0..25 {
                        let desc = Descriptor {
                            media_type: "m".into(),
                            digest: d.to_string(),
                            size: 1,
                            annotations: BTreeMap::new(),
                        };
                        layout.tag(&format!("t{t}-{i}"), desc).unwrap();
                    }
                });
            }
        });
        let index = Layout::open(dir.path()).unwrap().read_index().unwrap();
        assert_eq!(index.manifests.len(), 100, "tags were lost");
    }

    #[test]
    fn a_plain_directory_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Layout::open(dir.path())
            .err()
            .unwrap()
            .to_string()
            .contains("is not an OCI image layout"));
    }
}
