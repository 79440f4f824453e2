//! Finds a Rust toolchain that can build a wasm target, in the order users expect:
//! the active rustup toolchain with the target installed, `rustup target add`,
//! then a rustc that carries its own std source (`-Zbuild-std`, Debian's rustc-web).

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A wasm target weir builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Target {
    /// WASI preview 1 (the default; what Istio and Envoy examples use).
    #[serde(rename = "wasm32-wasip1")]
    Wasip1,
    /// Bare wasm32, no WASI imports.
    #[serde(rename = "wasm32-unknown-unknown")]
    Unknown,
}

impl Target {
    /// The rustc target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Target::Wasip1 => "wasm32-wasip1",
            Target::Unknown => "wasm32-unknown-unknown",
        }
    }

    fn env_key(self) -> &'static str {
        match self {
            Target::Wasip1 => "WASM32_WASIP1",
            Target::Unknown => "WASM32_UNKNOWN_UNKNOWN",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.triple())
    }
}

/// How a target gets built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// The active rustup toolchain has the target's std.
    Rustup,
    /// A rustc whose sysroot has the std source: std is built with `-Zbuild-std`.
    BuildStd {
        /// That rustc.
        rustc: PathBuf,
        /// The cargo beside it.
        cargo: PathBuf,
    },
}

impl Toolchain {
    /// A short name for tables and `--json`.
    pub fn label(&self) -> &'static str {
        match self {
            Toolchain::Rustup => "rustup",
            Toolchain::BuildStd { .. } => "build-std",
        }
    }

    /// A `cargo build --release --target T` command for this toolchain, with
    /// the environment that makes the module independent of the machine's paths.
    pub fn cargo_build(&self, target: Target, root: &Path) -> Command {
        let target_dir = wasm_target_dir(root).join(self.label());
        let mut flags = remap_flags(root);
        let mut cmd = match self {
            Toolchain::Rustup => {
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            }
            Toolchain::BuildStd { rustc, cargo } => {
                let mut cmd = Command::new(cargo);
                cmd.env("RUSTC", rustc).env("RUSTC_BOOTSTRAP", "1");
                cmd.env(
                    format!("CARGO_TARGET_{}_LINKER", target.env_key()),
                    "wasm-ld",
                );
                if target == Target::Wasip1 {
                    flags.push(format!("-L{}", WASI_LIBC));
                    flags.push("-Clink-self-contained=no".into());
                }
                cmd
            }
        };
        // Nothing from the host toolchain may leak into a wasm build.
        for var in [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "CARGO_BUILD_TARGET",
        ] {
            cmd.env_remove(var);
        }
        if matches!(self, Toolchain::BuildStd { .. }) {
            cmd.env_remove("RUSTUP_TOOLCHAIN");
        }
        cmd.current_dir(root)
            .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
            .args(["build", "--release", "--target", target.triple()])
            .arg("--target-dir")
            .arg(target_dir);
        if matches!(self, Toolchain::BuildStd { .. }) {
            // std's own size-over-speed choices (2–5 KB less per module; BENCHMARKS.md, "Size").
            // `WEIR_BUILD_STD_FEATURES` replaces them (the benchmark measures std without).
            let features = std::env::var_os("WEIR_BUILD_STD_FEATURES")
                .unwrap_or_else(|| "optimize_for_size".into());
            let mut arg = std::ffi::OsString::from("-Zbuild-std-features=");
            arg.push(features);
            cmd.arg("-Zbuild-std=std,panic_abort").arg(arg);
        }
        cmd
    }

    /// Where cargo puts the `.wasm` files for this toolchain.
    pub fn artifact_dir(&self, target: Target, root: &Path) -> PathBuf {
        wasm_target_dir(root)
            .join(self.label())
            .join(target.triple())
            .join("release")
    }
}

/// Where wasm builds go: `target/wasm/`, or `$WEIR_WASM_TARGET_DIR` (the benchmark's cold build).
fn wasm_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("WEIR_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("wasm"))
}

const WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

/// `--remap-path-prefix` for every machine path that can end up in a module:
/// the workspace, cargo's registry and git checkouts, and the std source.
fn remap_flags(root: &Path) -> Vec<String> {
    let mut flags = vec![format!("--remap-path-prefix={}=/weir", root.display())];
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags.push("--remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc/src".into());
    flags
}

fn sysroot(rustc: &Path) -> Option<PathBuf> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// True when the active rustup toolchain has `target`'s standard library.
fn rustup_has(target: Target) -> bool {
    let rustc = std::env::var_os("RUSTC")
        .map(PathBuf::from)
        .unwrap_or_else(|| "rustc".into());
    sysroot(&rustc).is_some_and(|s| {
        s.join("lib/rustlib")
            .join(target.triple())
            .join("lib")
            .is_dir()
    })
}

/// A rustc with its std source and the cargo beside it (Debian's rustc-web, cargo-web).
fn build_std_toolchain() -> Option<(PathBuf, PathBuf)> {
    let rustc = PathBuf::from(
        std::env::var_os("WEIR_BUILD_STD_RUSTC").unwrap_or_else(|| "/usr/bin/rustc".into()),
    );
    let cargo = rustc.with_file_name("cargo");
    let root = sysroot(&rustc)?;
    let has_src = root.join("lib/rustlib/src/rust/library/std").is_dir();
    (has_src && cargo.is_file()).then_some((rustc, cargo))
}

fn have_wasm_ld() -> bool {
    crate::envoy::which("wasm-ld").is_some()
}

/// A marker that remembers a failed `rustup target add` for a day, so an
/// offline machine does not wait for rustup on every build.
fn rustup_marker(target: Target) -> PathBuf {
    crate::project::root()
        .join("target")
        .join("weir")
        .join(format!("rustup-add-{}.failed", target.triple()))
}

fn try_rustup_add(target: Target) -> bool {
    let marker = rustup_marker(target);
    let recent = std::fs::metadata(&marker)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < Duration::from_secs(24 * 3600));
    if recent || crate::envoy::which("rustup").is_none() {
        return false;
    }
    eprintln!(
        "     Install {} with `rustup target add` (up to 20 s)",
        target
    );
    let child = Command::new("rustup")
        .args(["target", "add", target.triple()])
        .current_dir(crate::project::root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let start = Instant::now();
    let ok = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success() && rustup_has(target),
            Ok(None) if start.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    if !ok {
        if let Some(dir) = marker.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // scratch: a cache marker under target/weir, not an output; losing it costs a retry.
        let _ = std::fs::write(
            &marker,
            "rustup target add failed; delete this file to try again\n",
        );
        eprintln!("     rustup could not install {target}; using the build-std path (not retried for 24 h)");
    }
    ok
}

/// What to install for each way of building `target`.
pub fn install_hint(target: Target) -> String {
    format!(
        "no toolchain can build {t}. Any one of these fixes it:\n  \
         - rustup (with network): rustup target add {t}\n  \
         - offline, Debian: apt-get install rustc-web cargo-web rust-web-src lld{wasi}\n  \
         - or let weir do it: cargo xtask setup",
        t = target.triple(),
        wasi = if target == Target::Wasip1 {
            " wasi-libc"
        } else {
            ""
        }
    )
}

/// The build-std toolchain for `target`, when its packages are installed.
fn build_std(target: Target) -> Option<Toolchain> {
    let (rustc, cargo) = build_std_toolchain()?;
    let wasi_ok = target != Target::Wasip1 || Path::new(WASI_LIBC).join("libc.a").is_file();
    (have_wasm_ld() && wasi_ok).then_some(Toolchain::BuildStd { rustc, cargo })
}

/// Finds a toolchain for `target`, in this order: rustup with the target installed,
/// `rustup target add`, the build-std toolchain. Installing the build-std packages when
/// none is found is the caller's choice (`build` does, through [`crate::doctor`], which
/// sits above this module).
pub fn find(target: Target) -> Result<Toolchain> {
    // `WEIR_TOOLCHAIN=build-std`: the smaller modules of std built with the
    // release profile (BENCHMARKS.md, "Size"), when that toolchain is here.
    if std::env::var_os("WEIR_TOOLCHAIN").is_some_and(|v| v == "build-std") {
        return build_std(target).ok_or_else(|| anyhow::anyhow!("{}", install_hint(target)));
    }
    if rustup_has(target) {
        return Ok(Toolchain::Rustup);
    }
    if try_rustup_add(target) {
        return Ok(Toolchain::Rustup);
    }
    if let Some(t) = build_std(target) {
        return Ok(t);
    }
    bail!("{}", install_hint(target))
}
