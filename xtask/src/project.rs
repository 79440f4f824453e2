//! The workspace on disk: where the root is, which filters exist, where modules go.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The workspace root (the directory holding `filters/` and `xtask/`);
/// `$WEIR_ROOT` overrides it (the reproducibility test builds another checkout).
pub fn root() -> PathBuf {
    if let Some(root) = std::env::var_os("WEIR_ROOT") {
        return PathBuf::from(root);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A filter crate under `filters/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The directory name, which is also the package name (`add-header`).
    pub name: String,
    /// `filters/<name>`.
    pub dir: PathBuf,
}

impl Filter {
    /// The built, optimized module: `target/filters/<name>.wasm`.
    pub fn module(&self) -> PathBuf {
        modules_dir().join(format!("{}.wasm", self.name))
    }

    /// The root id the filter answers to in Envoy; weir filters answer to any,
    /// and this one is what generated configuration names.
    pub fn root_id(&self) -> &str {
        &self.name
    }

    /// `filters/<name>/config.example.json`, read.
    pub fn example_config(&self) -> Result<String> {
        let path = self.dir.join("config.example.json");
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// The cargo artifact name (`add_header.wasm`).
    pub fn artifact_name(&self) -> String {
        format!("{}.wasm", self.name.replace('-', "_"))
    }
}

/// Where built modules go: `target/filters/`.
pub fn modules_dir() -> PathBuf {
    root().join("target").join("filters")
}

/// Every filter under `filters/`, sorted by name.
pub fn filters() -> Result<Vec<Filter>> {
    let dir = root().join("filters");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file() {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                out.push(Filter { name: name.to_owned(), dir: path.clone() });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The filter called `name`, or an error listing the ones that exist.
pub fn filter(name: &str) -> Result<Filter> {
    let all = filters()?;
    if let Some(f) = all.iter().find(|f| f.name == name) {
        return Ok(f.clone());
    }
    let have: Vec<_> = all.iter().map(|f| f.name.as_str()).collect();
    bail!(
        "no filter named `{name}` under filters/ (have: {}); create one with `cargo xtask new {name}`",
        have.join(", ")
    )
}

/// The filters named, or all of them when `names` is empty.
pub fn select(names: &[String]) -> Result<Vec<Filter>> {
    if names.is_empty() {
        return filters();
    }
    names.iter().map(|n| filter(n)).collect()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory,
/// renamed over `path` only once complete. A missing directory is an error, not created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("cannot write {}: directory {} does not exist", path.display(), dir.display());
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".weir-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    // tempfile creates 0600; a module or a config must be readable by an Envoy
    // running as another user, as a file written by `cp` would be.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all().ok();
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `sha256:` hex digest of `bytes`, without the prefix.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_header_is_a_filter() {
        let f = filter("add-header").unwrap();
        assert_eq!(f.module(), root().join("target/filters/add-header.wasm"));
        assert_eq!(f.artifact_name(), "add_header.wasm");
    }

    #[test]
    fn unknown_filter_lists_the_known_ones() {
        let e = filter("nope").unwrap_err().to_string();
        assert!(e.contains("no filter named `nope`") && e.contains("add-header"), "{e}");
    }

    #[test]
    fn atomic_write_refuses_a_missing_directory_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing/out.wasm");
        let e = write_atomic(&target, b"x").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!dir.path().join("missing").exists());
        let ok = dir.path().join("out.wasm");
        write_atomic(&ok, b"abc").unwrap();
        assert_eq!(std::fs::read(&ok).unwrap(), b"abc");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
