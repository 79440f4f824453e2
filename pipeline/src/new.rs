//! `cargo xtask new NAME`: creates `filters/NAME`, a filter that builds, validates and passes its test as generated.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Names cargo reserves or the workspace already uses for another crate.
const TAKEN: &[&str] = &[
    "test",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "proc-macro",
    "self",
    "super",
    "crate",
    "build",
    "deps",
    "examples",
    "incremental",
    "weir",
    "weir-sdk",
    "weir-macros",
    "weir-build",
    "weir-tests",
    "xtask",
];

/// Rust keywords: a crate named like one cannot be used from Rust code.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "macro", "override", "priv", "try", "typeof",
    "unsized", "virtual", "yield", "gen",
];

/// Checks `name` as a filter (and crate) name.
pub fn check_name(name: &str) -> Result<()> {
    let Some(first) = name.chars().next() else {
        bail!("the filter name is empty: give one like `rate-limit`")
    };
    if !first.is_ascii_lowercase() {
        bail!("`{name}` is not a valid filter name: it must start with a lowercase letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        bail!("`{name}` is not a valid filter name: {c:?} is not allowed (use lowercase letters, digits, `-` and `_`)");
    }
    if name.ends_with(['-', '_']) || name.len() > 64 {
        bail!("`{name}` is not a valid filter name: it must end with a letter or digit and be at most 64 characters");
    }
    let underscored = name.replace('-', "_");
    if TAKEN.contains(&name) || KEYWORDS.contains(&underscored.as_str()) {
        bail!("`{name}` is reserved (a Rust keyword or a crate cargo or this workspace uses): pick another name");
    }
    Ok(())
}

/// `rate-limit` → `RateLimit`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect()
}

/// Writes `filters/<name>` under `root`; refuses a name that exists. The filter is
/// written into a temporary directory beside it and renamed into place when complete,
/// so a failure leaves nothing behind.
pub fn create(root: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    let filters = root.join("filters");
    let dir = filters.join(name);
    if dir.exists() {
        bail!("filters/{name} already exists: pick another name, or edit that filter");
    }
    std::fs::create_dir_all(&filters)
        .with_context(|| format!("cannot create {}", filters.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".weir-new-")
        .tempdir_in(&filters)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                filters.display()
            )
        })?;
    let ty = type_name(name);
    let files = [
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", LIB_RS),
        ("tests/native.rs", NATIVE_RS),
        ("config.example.json", CONFIG_JSON),
        ("README.md", README_MD),
    ];
    for (path, template) in files {
        let text = template
            .replace("{name}", name)
            .replace("{crate}", &name.replace('-', "_"))
            .replace("{Type}", &ty);
        let path = scratch.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // scratch: a private temporary directory, renamed into place below.
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let kept = scratch.keep();
    if let Err(e) = std::fs::rename(&kept, &dir) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(e).with_context(|| format!("cannot create {}", dir.display()));
    }
    Ok(dir)
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition.workspace = true
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir = { workspace = true }
serde = { workspace = true }
"#;

const LIB_RS: &str = r#"//! {name}: sets one request header before the request goes upstream.
//!
//! Configuration (`config.example.json`): `{"header": "x-{name}", "value": "hello"}`.

use weir::{Action, HeaderName, HeaderValue, HttpFilter, Request};

/// The header to set; both fields are checked when Envoy configures the filter.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Header name, a lowercase HTTP token.
    pub header: HeaderName,
    /// Header value: any bytes but NUL, CR and LF.
    pub value: HeaderValue,
}

/// One value per request: per-request state goes in its fields.
#[derive(Default)]
pub struct {Type};

#[weir::filter]
impl HttpFilter for {Type} {
    type Config = Config;

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        let config = cx.config();
        cx.headers().set(&config.header, &config.value)?;
        Ok(Action::Continue)
    }
}

weir::export!({Type});
"#;

const NATIVE_RS: &str = r##"//! {name}, natively: no Envoy, no wasm.

use {crate}::{Type};
use weir::testing::{TestFilter, TestRequest};

const EXAMPLE: &str = include_str!("../config.example.json");

#[test]
fn example_config_sets_the_request_header() {
    let mut filter = TestFilter::<{Type}>::configure(EXAMPLE).unwrap();
    let exchange = filter.send(TestRequest::get("/").header("x-bytes", b"\x80\xff"));
    assert!(exchange.forwarded());
    assert_eq!(exchange.upstream_header("x-{name}").unwrap(), "hello");
    assert_eq!(exchange.status(), 200);
}

#[test]
fn bad_configuration_names_the_field() {
    let err = TestFilter::<{Type}>::configure(r#"{"header": "Bad Name", "value": "x"}"#).err().unwrap();
    assert!(err.to_string().starts_with("field `header`"), "{err}");
}
"##;

const CONFIG_JSON: &str = r#"{"header": "x-{name}", "value": "hello"}
"#;

const README_MD: &str = r#"# {name}

Sets one request header before the request goes upstream.

## Configuration

| field | meaning |
| --- | --- |
| `header` | header name, lowercase |
| `value` | header value |

Per-route overrides use weir's `_rules_` (see `docs/filter-guide.md`).

## Example

```console
$ cargo test -p {name}
$ cargo xtask run {name} --config @filters/{name}/config.example.json
$ curl -i localhost:10000/    # the upstream sees x-{name}: hello
```
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project;

    #[test]
    fn names_must_be_crate_names() {
        for good in ["rate-limit", "a", "jwt_auth2", "x1-y2"] {
            check_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let cases = [
            ("", "empty"),
            ("Rate", "start with a lowercase letter"),
            ("1st", "start with a lowercase letter"),
            ("rate limit", "' ' is not allowed"),
            ("rate.limit", "'.' is not allowed"),
            ("ratelimit-", "must end with a letter or digit"),
            ("weir", "reserved"),
            ("xtask", "reserved"),
            ("fn", "reserved"),
            ("test", "reserved"),
        ];
        for (name, expected) in cases {
            let e = check_name(name)
                .err()
                .unwrap_or_else(|| panic!("`{name}` was accepted"))
                .to_string();
            assert!(e.contains(expected), "{name}: {e}");
        }
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("rate-limit"), "RateLimit");
        assert_eq!(type_name("jwt_auth2"), "JwtAuth2");
    }

    #[test]
    fn refuses_an_existing_filter() {
        let e = create(&project::root(), "add-header")
            .unwrap_err()
            .to_string();
        assert!(e.contains("filters/add-header already exists"), "{e}");
    }

    /// Generates a filter into a scratch workspace that uses this repository's
    /// SDK and lockfile, runs its tests with cargo (offline), then compiles it
    /// to wasm the way `cargo xtask build` does and validates the module.
    #[test]
    fn generated_filter_passes_its_tests() {
        let root = project::root();
        // A fixed scratch workspace with its own target dir: cargo locks a
        // target dir for the whole `cargo test`, so the inner cargo must not
        // share this test's; fixed, so reruns reuse its builds.
        let scratch = root.join("target").join("xtask-new");
        let _ = std::fs::remove_dir_all(scratch.join("filters"));
        std::fs::create_dir_all(&scratch).unwrap();
        let sdk = root.join("sdk");
        let manifest = format!(
            "[workspace]\nresolver = \"2\"\nmembers = [\"filters/*\"]\n\n[workspace.package]\nedition = \"2021\"\nlicense = \"Apache-2.0\"\n\n[workspace.dependencies]\nweir = {{ package = \"weir-sdk\", path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n[profile.release]\nopt-level = \"z\"\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = true\n",
            sdk.display().to_string()
        );
        std::fs::write(scratch.join("Cargo.toml"), manifest).unwrap();
        std::fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock")).unwrap();
        let dir = create(&scratch, "hello-world").unwrap();
        for file in [
            "Cargo.toml",
            "src/lib.rs",
            "tests/native.rs",
            "config.example.json",
            "README.md",
        ] {
            assert!(dir.join(file).is_file(), "{file} was not written");
        }
        let e = create(&scratch, "hello-world").unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        let out =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["test", "--offline", "-p", "hello-world"])
                .current_dir(&scratch)
                .env("CARGO_TARGET_DIR", scratch.join("target"))
                .output()
                .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "the generated filter's tests failed:\n{log}"
        );
        assert!(log.contains("test result: ok. 2 passed"), "{log}");

        let target = crate::toolchain::Target::Wasip1;
        let toolchain = crate::toolchain::find(target).unwrap();
        let out = toolchain
            .cargo_build(target, &scratch)
            .args(["--offline", "-p", "hello-world"])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the generated filter does not compile to wasm:\n{log}"
        );
        let module = toolchain
            .artifact_dir(target, &scratch)
            .join("hello_world.wasm");
        let verdict = crate::validate::verdict(&module);
        assert!(verdict.ok, "{}", crate::validate::render(&verdict));
        let bytes = std::fs::read(&module).unwrap();
        // The section's name (length-prefixed), then its bits: request headers only.
        let mut section = vec![weir::hooks::SECTION.len() as u8];
        section.extend(weir::hooks::SECTION.as_bytes());
        section.extend(weir::hooks::REQUEST_HEADERS.to_le_bytes());
        assert!(
            bytes
                .windows(section.len())
                .any(|w| w == section.as_slice()),
            "no weir.hooks section saying request headers only"
        );
    }
}
