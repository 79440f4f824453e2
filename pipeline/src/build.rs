//! `cargo xtask build`: compile each filter to wasm, validate it against the
//! proxy-wasm ABI, optimize it, validate again, and write it atomically.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;

use crate::project::{self, Filter};
use crate::toolchain::{self, Target};
use crate::{abi, optimize};

/// One built module.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Built {
    /// The filter's name.
    pub filter: String,
    /// The target it was built for.
    pub target: Target,
    /// `rustup` or `build-std`.
    pub toolchain: &'static str,
    /// Bytes as cargo wrote it.
    pub raw_bytes: u64,
    /// Bytes after wasm-opt.
    pub bytes: u64,
    /// Hex sha256 of the optimized module.
    pub sha256: String,
    /// Compile + validate + optimize, in milliseconds.
    pub millis: u64,
    /// Of which cargo took this many.
    pub cargo_millis: u64,
    /// Hook exports removed because the filter does not implement them.
    pub hooks_removed: Vec<String>,
    /// Where the module was written.
    pub path: PathBuf,
}

/// How to build.
#[derive(Clone, Debug)]
pub struct Options {
    /// The wasm target.
    pub target: Target,
    /// Keep debug info and names.
    pub debug: bool,
    /// Install a missing toolchain instead of failing.
    pub install: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: Target::Wasip1,
            debug: false,
            install: true,
        }
    }
}

/// Builds the named filters (every filter when `names` is empty), in order.
pub fn build_filters(names: &[String], options: &Options) -> Result<Vec<Built>> {
    project::select(names)?
        .iter()
        .map(|filter| build(filter, options))
        .collect()
}

/// Where `filter`'s module for `target` goes.
pub fn output_path(filter: &Filter, target: Target) -> PathBuf {
    match target {
        Target::Wasip1 => filter.module(),
        other => project::modules_dir()
            .join(other.triple())
            .join(format!("{}.wasm", filter.name)),
    }
}

/// Builds the filter called `name` for wasm32-wasip1 (cargo makes this quick when
/// nothing changed) and returns `target/filters/<name>.wasm`.
///
/// Under `cargo xtask test` (which sets `WEIR_FILTERS_BUILT=1` after building
/// every filter) an existing module is used as it is.
pub fn module_for(name: &str) -> Result<PathBuf> {
    let filter = project::filter(name)?;
    let path = output_path(&filter, Target::Wasip1);
    if std::env::var_os("WEIR_FILTERS_BUILT").is_some() && path.is_file() {
        return Ok(path);
    }
    Ok(build(&filter, &Options::default())?.path)
}

/// Part of the optimized module's cache key beside the raw module's digest: bump
/// it when `validate_and_optimize` changes what it makes of the same raw module,
/// or a module optimized by the previous pipeline is reused.
const OPTIMIZE_REVISION: &str = "opt7";

/// Compiles, validates, optimizes and writes one filter.
pub fn build(filter: &Filter, options: &Options) -> Result<Built> {
    let start = Instant::now();
    let root = project::root();
    let toolchain = find_toolchain(options.target, options.install)?;
    let mut cargo = toolchain.cargo_build(options.target, &root);
    cargo.args(["--package", &filter.name]);
    if options.debug {
        cargo
            .env("CARGO_PROFILE_RELEASE_STRIP", "none")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
    } else {
        // Function names, for `optimize::stub_default_panic_hook`; wasm-opt strips them.
        cargo.env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    }
    let status = cargo.status().context("cannot run cargo")?;
    if !status.success() {
        bail!(
            "cargo could not compile `{}` for {} (its errors are above)",
            filter.name,
            options.target
        );
    }
    let cargo_millis = start.elapsed().as_millis() as u64;
    let artifact = toolchain
        .artifact_dir(options.target, &root)
        .join(filter.artifact_name());
    let raw = std::fs::read(&artifact).with_context(|| {
        format!(
            "cargo did not produce {}: is `{}` a cdylib crate?",
            artifact.display(),
            filter.name
        )
    })?;

    let path = output_path(filter, options.target);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Optimizing takes seconds: skip it when cargo's output is what we optimized last time.
    let stamp = path.with_extension("wasm.stamp");
    let raw_sha = format!(
        "{} {} {}",
        OPTIMIZE_REVISION,
        if options.debug { "debug" } else { "release" },
        project::sha256_hex(&raw)
    );
    let cached = std::fs::read_to_string(&stamp)
        .ok()
        .filter(|s| s.trim() == raw_sha)
        .and_then(|_| std::fs::read(&path).ok());
    let (optimized, hooks_removed) = match cached {
        Some(module) if abi::check(&module).is_ok_and(|r| r.is_ok()) => (module, Vec::new()),
        _ => {
            let (optimized, removed) = validate_and_optimize(&filter.name, &raw, options.debug)?;
            project::write_atomic(&path, &optimized)?;
            project::write_atomic(&stamp, raw_sha.as_bytes())?;
            (optimized, removed)
        }
    };
    Ok(Built {
        filter: filter.name.clone(),
        target: options.target,
        toolchain: toolchain.label(),
        raw_bytes: raw.len() as u64,
        bytes: optimized.len() as u64,
        sha256: project::sha256_hex(&optimized),
        millis: start.elapsed().as_millis() as u64,
        cargo_millis,
        hooks_removed,
        path,
    })
}

/// [`toolchain::find`], then, when none is found and `install` allows, installs the
/// build-std packages (`cargo xtask setup`'s) and looks again.
fn find_toolchain(target: Target, install: bool) -> Result<toolchain::Toolchain> {
    match toolchain::find(target) {
        Err(_) if install => {
            eprintln!("     Install the build-std toolchain (what `cargo xtask setup` installs)");
            crate::doctor::install_packages(crate::doctor::BUILD_PACKAGES)
                .context("installing the wasm toolchain")?;
            toolchain::find(target)
        }
        found => found,
    }
}

fn refuse(name: &str, stage: &str, report: &abi::AbiReport) -> anyhow::Error {
    let lines: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::anyhow!(
        "`{name}` {stage} does not fit the proxy-wasm ABI:\n{}",
        lines.join("\n")
    )
}

/// Validates `raw`, strips unused hooks, runs wasm-opt, validates the result.
/// Returns the optimized bytes and the removed hook exports.
pub fn validate_and_optimize(
    name: &str,
    raw: &[u8],
    debug: bool,
) -> Result<(Vec<u8>, Vec<String>)> {
    let mut module = abi::parse(raw).with_context(|| format!("`{name}` as compiled"))?;
    let report = abi::check_module(&module);
    if !report.is_ok() {
        return Err(refuse(name, "as compiled", &report));
    }
    if module
        .customs
        .iter()
        .any(|(_, c)| c.name() == optimize::HOOKS_SECTION)
    {
        optimize::stub_default_panic_hook(&mut module);
        optimize::forward_duplicates(&mut module);
    }
    if !debug {
        // The names were only for the step above, and with `strip = "debuginfo"` rustc
        // also writes these sections, which `strip = true` leaves out and wasm-opt keeps.
        for func in module.funcs.iter_mut() {
            func.name = None;
        }
        for section in ["producers", "target_features"] {
            module.customs.remove_raw(section);
        }
    }
    let removed = optimize::strip_unused_hooks(&mut module);
    let stripped = module.emit_wasm();

    let scratch = tempfile::Builder::new().prefix("weir-opt-").tempdir()?;
    let (input, output) = (
        scratch.path().join("in.wasm"),
        scratch.path().join("out.wasm"),
    );
    // scratch: a private temporary directory.
    std::fs::write(&input, &stripped)?;
    optimize::run(&input, &output, debug)?;
    let optimized = std::fs::read(&output)?;

    let report = abi::check(&optimized).with_context(|| format!("`{name}` after wasm-opt"))?;
    if !report.is_ok() {
        return Err(refuse(name, "after wasm-opt", &report));
    }
    Ok((optimized, removed))
}

/// `1234` → `1.2 KB`.
pub fn human_bytes(n: u64) -> String {
    if n < 1000 {
        format!("{n} B")
    } else {
        format!("{:.1} KB", n as f64 / 1000.0)
    }
}
