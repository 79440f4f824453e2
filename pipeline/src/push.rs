//! `cargo xtask push`: packs a filter's module as an OCI artifact and pushes it to a registry or an OCI layout.

use crate::oci::artifact::{self, Format, Metadata};
use crate::oci::credentials::{self, CredentialArgs};
use crate::oci::layout::Layout;
use crate::oci::reference::Target;
use crate::oci::registry::{Registry, TagMaybeWritten, TransportArgs};
use crate::oci::transfer::{self, PushReport, Store};
use crate::project;
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

/// What `push` packs and where it sends it.
#[derive(Clone, Debug)]
pub struct Options {
    /// A filter under filters/ (built first), or a .wasm file.
    pub input: String,
    /// Where to: HOST[:PORT]/REPO[:TAG], or oci:DIR[:TAG] for an OCI image layout directory.
    pub reference: String,
    /// How to pack the module.
    pub format: Format,
    /// Root ids for the runtime config; empty: the filter's, or the file's stem.
    pub root_ids: Vec<String>,
    /// Which login to use.
    pub credentials: CredentialArgs,
    /// How to reach the registry.
    pub transport: TransportArgs,
}

/// Packs `options.input` and pushes it: blobs first, the tag last. `progress` follows the
/// upload (its length is set here; pass `ProgressBar::hidden()` for none).
pub fn push(options: &Options, progress: &ProgressBar) -> Result<PushReport> {
    options.push(progress)
}

impl Options {
    fn push(&self, progress: &ProgressBar) -> Result<PushReport> {
        let target = Target::parse(&self.reference)?;
        let (module, meta) = self.module()?;
        let artifact = artifact::pack(self.format, &module, &meta)?;
        progress.set_length(artifact.blobs.iter().map(|b| b.bytes.len() as u64).sum());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(async {
                let (store, tag) = match target {
                    Target::Layout(reference) => {
                        let layout = Layout::create(&reference.dir)?;
                        let tag = reference.tag_or_default().to_owned();
                        (Store::Layout { layout, reference }, tag)
                    }
                    Target::Registry(reference) => {
                        if reference.digest.is_some() {
                            bail!(
                                "cannot push to a digest ({reference}): name a tag, e.g. {}:v1",
                                reference.repository_url()
                            );
                        }
                        let login = credentials::resolve(&self.credentials, &reference.host)?;
                        let tag = reference.tag_or_default().to_owned();
                        let registry =
                            Registry::new(reference, &self.transport, &login, progress.clone())?;
                        registry.authenticate(true).await?;
                        (Store::Registry(Box::new(registry)), tag)
                    }
                };
                transfer::push(&store, &artifact, &tag, module.len() as u64)
                    .await
                    .map_err(|e| {
                        // Only say "no tag was written" when that is known.
                        let written = if e.downcast_ref::<TagMaybeWritten>().is_some() {
                            ""
                        } else {
                            " no tag was written,"
                        };
                        e.context(format!(
                            "push to {} did not complete;{written} run it again",
                            store.name()
                        ))
                    })
            })
    }

    /// The module's bytes and what the artifact says about it.
    fn module(&self) -> Result<(Vec<u8>, Metadata)> {
        let as_file = Path::new(&self.input);
        let (path, title, root_ids, source, revision) =
            if self.input.ends_with(".wasm") || as_file.is_file() {
                let stem = as_file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("module")
                    .to_owned();
                (as_file.to_path_buf(), stem.clone(), vec![stem], None, None)
            } else {
                let filter = project::filter(&self.input)?;
                let path = crate::build::module_for(&filter.name)?;
                let source = repository_url(&filter.dir.join("Cargo.toml"))
                    .or_else(|| repository_url(&project::root().join("Cargo.toml")));
                (
                    path,
                    filter.name.clone(),
                    vec![filter.root_id().to_owned()],
                    source,
                    git_revision(),
                )
            };
        let module = std::fs::read(&path)
            .with_context(|| format!("cannot read the module {}", path.display()))?;
        if !module.starts_with(b"\0asm") {
            bail!(
                "{} is not a wasm module (no \\0asm header); build one with `cargo xtask build`",
                path.display()
            );
        }
        // Nothing Envoy would refuse gets pushed: the same ABI check as `cargo xtask validate`.
        let report =
            crate::abi::check(&module).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if !report.is_ok() {
            let problems: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
            bail!("{} does not fit the proxy-wasm ABI, so Envoy would not load it; nothing was pushed:\n{}", path.display(), problems.join("\n"));
        }
        let abi_versions = report.abi_versions;
        let root_ids = if self.root_ids.is_empty() {
            root_ids
        } else {
            self.root_ids.clone()
        };
        Ok((
            module,
            Metadata {
                title,
                root_ids,
                abi_versions,
                source,
                revision,
                epoch: source_date_epoch()?,
            },
        ))
    }
}

/// `repository = "..."` from a Cargo.toml (`[package]` or `[workspace.package]`).
fn repository_url(cargo_toml: &PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(cargo_toml).ok()?;
    text.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("repository")?
            .trim_start()
            .strip_prefix('=')?
            .trim();
        let url = value.strip_prefix('"')?.split('"').next()?;
        (!url.is_empty()).then(|| url.to_owned())
    })
}

/// `git rev-parse HEAD` of the workspace, when it is a git checkout.
fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(project::root())
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && rev.len() == 40).then_some(rev)
}

/// `SOURCE_DATE_EPOCH`, the only clock a push reads.
fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH is `{v}`, not whole seconds since 1970; unset it or set e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_comes_from_the_workspace_manifest() {
        let url = repository_url(&project::root().join("Cargo.toml"));
        assert!(
            url.as_deref().is_some_and(|u| u.starts_with("https://")),
            "{url:?}"
        );
    }
}
