//! `cargo xtask init DIR`: a standalone filter project of a team's own, whose `cargo xtask`
//! is a few lines over this library, pinned in its own `Cargo.lock`.
//!
//! The project is written into a temporary directory beside `DIR` and renamed into place
//! once complete, so a failure leaves nothing behind.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What `init` is asked to create.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A weir checkout to depend on by path instead of the released crates.
    pub weir_path: Option<PathBuf>,
    /// A first filter to create under `filters/`.
    pub filter: Option<String>,
}

/// What `init` wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Created {
    /// The project's directory.
    pub dir: PathBuf,
    /// Every file written, relative to `dir`, sorted.
    pub files: Vec<PathBuf>,
    /// Where the SDK and toolchain come from: `crates.io 0.1.0` or the checkout's path.
    pub weir: String,
}

/// The version of weir this toolchain is, which a generated project depends on.
pub const WEIR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Creates the project at `dir`, which must not exist or be empty.
pub fn create(dir: &Path, options: &Options) -> Result<Created> {
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            bail!(
                "{} already exists and is not empty: name a new directory",
                dir.display()
            );
        }
    }
    let name = project_name(dir)?;
    if let Some(filter) = &options.filter {
        crate::new::check_name(filter)?;
    }
    let weir = match &options.weir_path {
        Some(path) => Some(checkout(path)?),
        None => None,
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot create {}: directory {} does not exist",
            dir.display(),
            parent.display()
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix(".weir-init-")
        .tempdir_in(&parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )
        })?;
    let root = scratch.path();

    let deps = match &weir {
        Some(w) => format!(
            "weir = {{ package = \"weir-sdk\", path = {sdk:?} }}\nweir-build = {{ path = {pipeline:?} }}",
            sdk = w.join("sdk").display().to_string(),
            pipeline = w.join("pipeline").display().to_string()
        ),
        None => format!(
            "weir = {{ package = \"weir-sdk\", version = \"{WEIR_VERSION}\" }}\nweir-build = \"{WEIR_VERSION}\""
        ),
    };
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", WORKSPACE_TOML.replace("{deps}", &deps)),
        ("rust-toolchain.toml", RUST_TOOLCHAIN.to_owned()),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", "/target\n".to_owned()),
        ("xtask/Cargo.toml", XTASK_TOML.to_owned()),
        ("xtask/src/main.rs", XTASK_MAIN.to_owned()),
        ("README.md", README.replace("{name}", &name)),
        (".github/workflows/release.yml", RELEASE_YML.to_owned()),
    ];
    for (path, text) in &files {
        let path = root.join(path);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        // scratch: a private temporary directory, renamed into place below.
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // Cargo reads a `filters/*` glob that matches nothing as a literal path and refuses the
    // workspace; a file in filters/ makes the glob match (cargo skips non-directories).
    std::fs::create_dir_all(root.join("filters")).context("cannot create filters/")?;
    // scratch: a private temporary directory, renamed into place below.
    std::fs::write(root.join("filters/README.md"), FILTERS_README)
        .context("cannot write filters/README.md")?;
    // A checkout's lockfile pins what weir was tested with; cargo drops what this
    // project does not use. (Released crates carry no lockfile: cargo resolves.)
    if let Some(w) = &weir {
        let lock = w.join("Cargo.lock");
        if lock.is_file() {
            std::fs::copy(&lock, root.join("Cargo.lock"))
                .with_context(|| format!("cannot copy {}", lock.display()))?;
        }
    }
    if let Some(filter) = &options.filter {
        crate::new::create(root, filter)?;
    }
    let mut written = Vec::new();
    list_files(root, root, &mut written)?;
    written.sort();

    // Into place: a directory that exists (empty) is replaced, otherwise renamed.
    if dir.exists() {
        std::fs::remove_dir(dir)
            .with_context(|| format!("cannot replace the empty directory {}", dir.display()))?;
    }
    let kept = scratch.keep();
    if let Err(e) = std::fs::rename(&kept, dir) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(e).with_context(|| format!("cannot create {}", dir.display()));
    }
    Ok(Created {
        dir: dir.to_path_buf(),
        files: written,
        weir: match weir {
            Some(w) => w.display().to_string(),
            None => format!("crates.io {WEIR_VERSION}"),
        },
    })
}

/// The directory's name, which names the project in its README.
fn project_name(dir: &Path) -> Result<String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .with_context(|| {
            format!(
                "{}: name the new project's directory, e.g. ../my-filters",
                dir.display()
            )
        })?;
    Ok(name.to_owned())
}

/// Checks that `path` is a weir checkout (the SDK and this toolchain's sources) and
/// returns it absolute.
fn checkout(path: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(path)
        .with_context(|| format!("--weir-path {}: no such directory", path.display()))?;
    for (part, package) in [
        ("sdk", crate::project::SDK_PACKAGE),
        ("pipeline", "weir-build"),
    ] {
        let manifest = abs.join(part).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        if !text.contains(&format!("name = \"{package}\"")) {
            bail!(
                "--weir-path {}: not a weir checkout ({} does not define the `{package}` package); \
                 give the directory holding weir's sdk/ and pipeline/",
                path.display(),
                manifest.display()
            );
        }
    }
    Ok(abs)
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            list_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

const WORKSPACE_TOML: &str = r#"# A weir filter project: each package under filters/ is a filter (a cdylib that
# depends on weir-sdk); `cargo xtask` builds, tests, pushes and deploys them.
[workspace]
resolver = "2"
members = ["filters/*", "xtask"]

[workspace.package]
edition = "2021"

[workspace.dependencies]
# `weir` is the SDK's library name: filters write `use weir::…`.
{deps}
serde = { version = "1", features = ["derive"] }

# The wasm release profile (cargo reads profiles only from the workspace root).
[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
strip = true
debug = false
incremental = false

# Dev builds without dependencies' debug info: each test binary would otherwise carry
# hundreds of MB of DWARF (Binaryen's C++ among it). Own crates keep line tables.
[profile.dev]
debug = "line-tables-only"
[profile.dev.package."*"]
debug = false

# The toolchain compiles Binaryen (C++) once; optimized even in dev builds of xtask,
# or `wasm-opt -Oz` and the in-process Wasm host run at debug speed.
[profile.dev.package.wasm-opt-sys]
opt-level = 2
[profile.dev.package.walrus]
opt-level = 2
[profile.dev.package.wasmi]
opt-level = 2
[profile.dev.package.rustls-pki-types]
opt-level = 2
"#;

const RUST_TOOLCHAIN: &str = r#"# The host toolchain and both wasm targets (rustup installs them where it can download;
# where it cannot, `cargo xtask build` falls back to a rustc that carries its own std source).
[toolchain]
channel = "stable"
components = ["rustfmt", "clippy"]
targets = ["wasm32-wasip1", "wasm32-unknown-unknown"]
"#;

const FILTERS_README: &str =
    "# Filters\n\nOne directory per filter: `cargo xtask new NAME` adds one.\n";

const CARGO_CONFIG: &str = r#"[alias]
# Not --quiet: the first run compiles the toolchain (Binaryen's C++ takes minutes),
# and cargo's progress says so.
xtask = "run --package xtask --"
"#;

const XTASK_TOML: &str = r#"[package]
name = "xtask"
version = "0.0.0"
edition.workspace = true
publish = false

[dependencies]
weir-build = { workspace = true }
"#;

const XTASK_MAIN: &str = r#"//! `cargo xtask`: weir's toolchain, pinned in Cargo.lock like any dependency.

fn main() -> std::process::ExitCode {
    weir_build::cli::main()
}
"#;

const README: &str = r#"# {name}

Envoy HTTP filters in Rust, built with [weir](https://github.com/weir-rs/weir).

```sh
cargo xtask build   # compile every filter to wasm, validate it, optimize it -> target/filters/*.wasm
cargo xtask test    # every filter's tests, natively and end to end in a real Envoy
```

The first run compiles the toolchain (a few minutes: Binaryen's C++); later runs take seconds.
Both commands install what they are missing (a wasm target, Envoy); `--no-install` stops that.

## Start

```sh
cargo xtask new my-filter      # filters/my-filter: a config type, one hook, a native test
cargo test -p my-filter        # its tests, natively
cargo xtask run my-filter --config @filters/my-filter/config.example.json   # in a local Envoy
```

## Ship

`.github/workflows/release.yml` runs on a `v*` tag: `cargo xtask test`, then for each filter
`build`, `push` (credentials from the repository's secrets `REGISTRY_USERNAME` and
`REGISTRY_PASSWORD`, through `--password-stdin`) to `$REGISTRY/<filter>:<tag>` (the repository
variable `REGISTRY`, e.g. `ghcr.io/my-org/filters`), and `deploy wasmplugin --pin`; the JSON
reports and the YAML are kept as the run's artifacts.

Upgrade weir by bumping `weir` and `weir-build` in `Cargo.toml` (`cargo update -p weir-sdk -p weir-build`).
"#;

/// The release workflow. Actions are pinned by commit; credentials reach weir only
/// through stdin; nothing from the event is expanded inside a script.
const RELEASE_YML: &str = r#"# Release: on a version tag, test, build and push every filter, and write its mesh resources.
name: release

on:
  push:
    tags: ["v*"]

permissions: {}

# One release per tag at a time; a second push of the same tag waits rather than racing it.
concurrency:
  group: release-${{ github.ref }}
  cancel-in-progress: false

jobs:
  release:
    name: test, push, deploy
    runs-on: ubuntu-24.04
    permissions:
      contents: read
    env:
      REGISTRY: ${{ vars.REGISTRY }}
      TAG: ${{ github.ref_name }}
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false

      - name: test
        run: cargo xtask test

      - name: build
        run: |
          mkdir -p release
          cargo xtask build --json > release/build.json

      - name: push
        env:
          REGISTRY_USERNAME: ${{ secrets.REGISTRY_USERNAME }}
          REGISTRY_PASSWORD: ${{ secrets.REGISTRY_PASSWORD }}
        run: |
          for filter in $(jq -r '.[].filter' release/build.json); do
            printf '%s' "$REGISTRY_PASSWORD" | cargo xtask push "$filter" "$REGISTRY/$filter:$TAG" \
              --username "$REGISTRY_USERNAME" --password-stdin --json > "release/push-$filter.json"
          done

      - name: deploy
        env:
          REGISTRY_USERNAME: ${{ secrets.REGISTRY_USERNAME }}
          REGISTRY_PASSWORD: ${{ secrets.REGISTRY_PASSWORD }}
        run: |
          for filter in $(jq -r '.[].filter' release/build.json); do
            printf '%s' "$REGISTRY_PASSWORD" | cargo xtask deploy wasmplugin --name "$filter" --filter "$filter" \
              --image "$REGISTRY/$filter:$TAG" --pin --username "$REGISTRY_USERNAME" --password-stdin \
              -o "release/$filter.wasmplugin.yaml"
          done

      - uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2
        with:
          name: release-${{ github.ref_name }}
          path: release/
          if-no-files-found: error
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_non_empty_directory_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let e = create(dir.path(), &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists and is not empty"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_a_path_that_is_not_a_checkout_and_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let options = Options {
            weir_path: Some(parent.path().to_path_buf()),
            filter: None,
        };
        let e = create(&parent.path().join("p"), &options)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a weir checkout"), "{e}");
        assert_eq!(
            std::fs::read_dir(parent.path()).unwrap().count(),
            0,
            "something was left behind"
        );
    }

    #[test]
    fn refuses_a_bad_filter_name_before_writing() {
        let parent = tempfile::tempdir().unwrap();
        let options = Options {
            weir_path: None,
            filter: Some("Bad Name".into()),
        };
        let e = create(&parent.path().join("p"), &options)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid filter name"), "{e}");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn writes_the_project_with_released_versions_by_default() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("team-filters");
        let created = create(
            &dir,
            &Options {
                weir_path: None,
                filter: Some("hello".into()),
            },
        )
        .unwrap();
        let names: Vec<String> = created
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        for f in [
            ".cargo/config.toml",
            ".github/workflows/release.yml",
            ".gitignore",
            "Cargo.toml",
            "README.md",
            "filters/README.md",
            "filters/hello/Cargo.toml",
            "filters/hello/src/lib.rs",
            "rust-toolchain.toml",
            "xtask/Cargo.toml",
            "xtask/src/main.rs",
        ] {
            assert!(names.iter().any(|n| n == f), "{f} missing from {names:?}");
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("weir-build = \"{WEIR_VERSION}\"")),
            "{manifest}"
        );
        assert!(manifest.contains("package = \"weir-sdk\""), "{manifest}");
        assert!(!manifest.contains("path ="), "{manifest}");
        assert_eq!(
            std::fs::read_dir(parent.path()).unwrap().count(),
            1,
            "scratch directory left behind"
        );
    }
}
