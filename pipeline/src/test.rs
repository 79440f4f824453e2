//! `cargo xtask test`: install what is missing, build every filter for both targets,
//! run every test of the workspace (`cargo test`), run each filter's own tests again
//! against its compiled module for both targets ([`module_tests`]), then serve each
//! filter's module from a real Envoy with its example configuration.

use anyhow::{bail, Context, Result};

use crate::build::{self, Built, Options};
use crate::toolchain::Target;
use crate::{doctor, project};

/// Checks that this project's test needs ([`doctor::test_needs`]) are installed; with
/// `install`, installs what is missing, else fails naming it.
pub fn ensure_needs(install: bool) -> Result<()> {
    let needs = doctor::test_needs()?;
    if install {
        return doctor::install_packages(&needs);
    }
    let missing: Vec<&str> = doctor::NEEDS
        .iter()
        .filter(|n| needs.contains(&n.name) && !(n.present)())
        .map(|n| n.name)
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing {}: run `cargo xtask setup` (or drop --no-install)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Builds every filter for both wasm targets; `on_built` sees each module as it is written.
pub fn build_filters(install: bool, mut on_built: impl FnMut(&Built)) -> Result<Vec<Built>> {
    let filters = project::filters()?;
    let mut out = Vec::new();
    for target in [Target::Wasip1, Target::Unknown] {
        for filter in &filters {
            let b = build::build(
                filter,
                &Options {
                    target,
                    debug: false,
                    install,
                },
            )?;
            on_built(&b);
            out.push(b);
        }
    }
    Ok(out)
}

/// Runs `cargo test --workspace --no-fail-fast` with `cargo_args`, telling the tests the
/// filters are built (`WEIR_FILTERS_BUILT=1`); fails when a test fails.
pub fn cargo_test(cargo_args: &[String]) -> Result<()> {
    let status =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(project::root())
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(cargo_args)
            .env("WEIR_FILTERS_BUILT", "1")
            .status()
            .context("cannot run cargo test")?;
    if !status.success() {
        bail!("tests failed (see above)");
    }
    Ok(())
}

/// One filter's own tests, run against its compiled module.
#[derive(Clone, Debug)]
pub struct ModuleRun {
    /// The filter.
    pub filter: String,
    /// The module's target.
    pub target: Target,
    /// How long the run took.
    pub elapsed: std::time::Duration,
}

/// Runs `filter`'s own tests again (`cargo test -p <filter> --tests`: its unit and
/// integration tests, not its doctests, whose filters are other types) with
/// `WEIR_TEST_MODULE` naming its built module for `target`, so `weir::testing`
/// drives the compiled module instead of the filter compiled into the test. The
/// variable is read when the tests run, so the test binaries `cargo_test` built are
/// reused as they are. Fails when a test fails, or when the module is missing.
pub fn module_tests(filter: &project::Filter, target: Target) -> Result<ModuleRun> {
    let start = std::time::Instant::now();
    let module = build::output_path(filter, target);
    tests_against(filter, &module, &target.to_string())?;
    Ok(ModuleRun {
        filter: filter.name.clone(),
        target,
        elapsed: start.elapsed(),
    })
}

/// Runs `filter`'s own tests against `module` (see [`module_tests`]); `what` names the
/// module's target in errors. Another filter's module fails them.
pub fn tests_against(
    filter: &project::Filter,
    module: &std::path::Path,
    target: &str,
) -> Result<()> {
    if !module.is_file() {
        bail!(
            "no {} module for `{}` at {}: run `cargo xtask build --target {}`",
            target,
            filter.name,
            module.display(),
            target
        );
    }
    let status =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(project::root())
            .args(["test", "--quiet", "--tests", "-p", &filter.name])
            .env("WEIR_TEST_MODULE", module)
            .env("WEIR_FILTERS_BUILT", "1")
            .status()
            .with_context(|| format!("cannot run the tests of `{}`", filter.name))?;
    if !status.success() {
        bail!(
            "the tests of `{}` failed against its {} module {} (see above)",
            filter.name,
            target,
            module.display()
        );
    }
    Ok(())
}

/// What a filter did in a real Envoy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InEnvoy {
    /// Envoy's version line.
    pub version: String,
    /// The status a GET / was answered with.
    pub status: u16,
}

/// Serves `filter`'s built module with its `config.example.json` (when it has one) from a
/// real Envoy in front of a direct 200, sends GET /, and fails when Envoy's log shows a VM
/// failure or a refused configuration: the module a filter ships loads, configures and
/// runs. The status is reported, not judged (a filter may answer 403 or 503 itself).
pub fn in_envoy(filter: &project::Filter) -> Result<InEnvoy> {
    use crate::envoy::{self, Bootstrap, Code, Envoy, WasmFilter};
    let module = build::module_for(&filter.name)?;
    let configuration = filter.example_config().ok();
    let wasm = WasmFilter {
        name: filter.name.clone(),
        root_id: filter.root_id().to_owned(),
        code: Code::Local(module),
        configuration,
        failure_policy: None,
    };
    let bootstrap = Bootstrap::new(envoy::free_port()?, envoy::free_port()?, vec![wasm]);
    let envoy =
        Envoy::start(&bootstrap).with_context(|| format!("`{}` in a real Envoy", filter.name))?;
    let answer = envoy
        .get("/", &[])
        .with_context(|| format!("GET / through `{}`", filter.name))?;
    std::thread::sleep(std::time::Duration::from_millis(150)); // the log file is flushed every 50 ms
                                                               // A filter may answer 5xx itself (ext-authz fails closed without its service); what
                                                               // must not happen is a VM failure or a configuration the filter refused.
    let mut failures = envoy.vm_failures();
    failures.extend(
        envoy
            .log_text()
            .lines()
            .filter(|l| l.contains("configuration refused"))
            .map(str::to_owned),
    );
    if !failures.is_empty() {
        bail!(
            "`{}` in a real Envoy (GET / answered {}) failed:\n{}",
            filter.name,
            answer.status,
            failures.join("\n")
        );
    }
    Ok(InEnvoy {
        version: envoy::version().unwrap_or_else(|_| "(version unknown)".into()),
        status: answer.status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter's tests pass against its own module and fail against another
    /// filter's, which `weir::testing` refuses by the module's `weir.filter` section.
    #[test]
    fn a_filters_tests_refuse_another_filters_module() {
        let add_header = project::filter("add-header").unwrap();
        let own = build::module_for("add-header").unwrap();
        tests_against(&add_header, &own, "wasm32-wasip1").unwrap();
        let redact = build::module_for("redact").unwrap();
        let e = tests_against(&add_header, &redact, "wasm32-wasip1").unwrap_err();
        assert!(
            e.to_string().contains("the tests of `add-header` failed"),
            "{e:#}"
        );
    }
}
