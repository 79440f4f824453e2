//! The project on disk: the Cargo workspace around the current directory, which of its
//! packages are filters, and where modules go. Found at run time, never from where the
//! toolchain was compiled, so the same library serves this repository and a team's own.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The SDK's package name: a filter is a `cdylib` package that depends on it.
pub const SDK_PACKAGE: &str = "weir-sdk";

/// The workspace as cargo describes it, read once per process.
struct Workspace {
    root: PathBuf,
    /// Every filter, sorted by name; `Err` says why the workspace could not be read.
    filters: std::result::Result<Vec<Filter>, String>,
    /// `[workspace.metadata.weir]` of the root manifest.
    settings: serde_json::Value,
}

static WORKSPACE: OnceLock<Workspace> = OnceLock::new();

fn workspace() -> &'static Workspace {
    WORKSPACE.get_or_init(|| {
        let mut cmd = cargo_metadata::MetadataCommand::new();
        cmd.no_deps();
        if let Some(root) = std::env::var_os("WEIR_ROOT") {
            cmd.manifest_path(PathBuf::from(root).join("Cargo.toml"));
        }
        match cmd.exec() {
            Ok(meta) => Workspace {
                root: meta.workspace_root.clone().into_std_path_buf(),
                filters: Ok(filters_of(&meta)),
                settings: meta.workspace_metadata.get("weir").cloned().unwrap_or_default(),
            },
            Err(e) => {
                let root = std::env::var_os("WEIR_ROOT")
                    .map(PathBuf::from)
                    .or_else(|| std::env::current_dir().ok())
                    .unwrap_or_else(|| PathBuf::from("."));
                let why = format!(
                    "no Cargo workspace around {} ({}): run this inside a weir project, or create one with `cargo xtask init DIR`",
                    root.display(),
                    first_line(&e.to_string())
                );
                Workspace { root, filters: Err(why), settings: serde_json::Value::Null }
            }
        }
    })
}

fn first_line(s: &str) -> &str {
    s.trim()
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// The packages of `meta`'s workspace that are filters: a `cdylib` library that depends
/// on the SDK, unless its manifest says `[package.metadata.weir] filter = false`
/// (a test fixture that nothing should build, test or ship as a filter).
fn filters_of(meta: &cargo_metadata::Metadata) -> Vec<Filter> {
    let mut out: Vec<Filter> = meta
        .workspace_packages()
        .into_iter()
        .filter(|p| p.dependencies.iter().any(|d| d.name == SDK_PACKAGE))
        .filter(|p| {
            p.targets
                .iter()
                .any(|t| t.crate_types.iter().any(|c| c.to_string() == "cdylib"))
        })
        .filter(|p| p.metadata.pointer("/weir/filter").and_then(|v| v.as_bool()) != Some(false))
        .filter_map(|p| {
            let dir = p.manifest_path.parent()?.to_path_buf().into_std_path_buf();
            Some(Filter {
                name: p.name.to_string(),
                dir,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The project root: the root of the Cargo workspace around the current directory
/// (`$WEIR_ROOT` names another one; the reproducibility test builds a copy). Outside
/// any workspace it is the current directory, where `validate`, `pull` and `deploy`
/// still work.
pub fn root() -> PathBuf {
    workspace().root.clone()
}

/// A filter: a `cdylib` package of the workspace that depends on the SDK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The package name (`add-header`); its library keeps that name, as cargo's default.
    pub name: String,
    /// The directory holding its `Cargo.toml`.
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

    /// `<filter dir>/config.example.json`, read.
    pub fn example_config(&self) -> Result<String> {
        let path = self.dir.join("config.example.json");
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// The cargo artifact name (`add_header.wasm`).
    pub fn artifact_name(&self) -> String {
        format!("{}.wasm", self.name.replace('-', "_"))
    }
}

/// Where built modules go: `target/filters/` under the project root.
pub fn modules_dir() -> PathBuf {
    root().join("target").join("filters")
}

/// The tools the root manifest says this project's tests need beyond the core:
/// `[workspace.metadata.weir] needs = ["docker-registry", …]`.
pub fn declared_needs() -> Result<Vec<String>> {
    match workspace().settings.get("needs") {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .context("[workspace.metadata.weir] needs: list names as strings")
            })
            .collect(),
        Some(_) => bail!(
            "[workspace.metadata.weir] needs: expected a list of names, like [\"docker-registry\"]"
        ),
    }
}

/// Every filter of the workspace, sorted by name.
pub fn filters() -> Result<Vec<Filter>> {
    match &workspace().filters {
        Ok(f) => Ok(f.clone()),
        Err(why) => bail!("{why}"),
    }
}

/// The filter called `name`, or an error listing the ones that exist.
pub fn filter(name: &str) -> Result<Filter> {
    let all = filters()?;
    if let Some(f) = all.iter().find(|f| f.name == name) {
        return Ok(f.clone());
    }
    let have: Vec<_> = all.iter().map(|f| f.name.as_str()).collect();
    let have = if have.is_empty() {
        "none yet".to_owned()
    } else {
        have.join(", ")
    };
    bail!(
        "no filter named `{name}` in the workspace at {} (have: {have}); create one with `cargo xtask new {name}`",
        root().display()
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
/// A new file gets the mode `cp` would give it (0666 less the umask); a file that exists keeps
/// its mode, so a file someone narrowed is never widened.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, false)
}

/// [`write_atomic`] for a file holding a secret (a pull secret's password, a filter
/// configuration): mode 0600 from its first byte on, whatever the umask or the old file's mode.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, true)
}

/// The one atomic writer behind [`write_atomic`] and [`write_secret`].
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    // The mode the file ends with: a secret's 0600, or the mode of the file it replaces.
    #[cfg(unix)]
    let keep = {
        use std::os::unix::fs::PermissionsExt;
        let old = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.permissions().mode() & 0o7777);
        if secret {
            Some(0o600)
        } else {
            old
        }
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".weir-");
    // The mode goes to open(2), so the umask applies, and the temporary file is never wider
    // than the file will be: nobody can open it early and read what is written later.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(keep.unwrap_or(0o666)));
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    #[cfg(unix)]
    if let Some(mode) = keep {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file().sync_all().ok();
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
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
        assert!(
            e.contains("no filter named `nope`") && e.contains("add-header"),
            "{e}"
        );
        assert!(
            !filters()
                .unwrap()
                .iter()
                .any(|f| f.name == "panicky" || f.name == "raw-add-header"),
            "fixtures and non-weir cdylibs are not filters"
        );
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

    #[cfg(unix)]
    #[test]
    fn secrets_are_0600_and_other_files_respect_the_umask_and_the_old_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        // The umask as the process has it: what a file created with 0666 gets.
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let umasked = mode(&probe);

        let plain = dir.path().join("plain.yaml");
        write_atomic(&plain, b"a").unwrap();
        assert_eq!(
            mode(&plain),
            umasked,
            "a new ordinary file gets 0666 less the umask"
        );

        let secret = dir.path().join("secret.yaml");
        write_secret(&secret, b"password").unwrap();
        assert_eq!(mode(&secret), 0o600);
        // Replacing a 0644 file with a secret narrows it; replacing a 0600 file never widens it.
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&plain, b"password").unwrap();
        assert_eq!(mode(&plain), 0o600);
        write_atomic(&plain, b"not secret").unwrap();
        assert_eq!(
            mode(&plain),
            0o600,
            "an ordinary write keeps the narrower mode of the file it replaces"
        );
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&plain, b"again").unwrap();
        assert_eq!(mode(&plain), 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "no temporary file is left"
        );
    }
}
