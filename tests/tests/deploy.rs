//! `cargo xtask deploy`: the committed examples are what it emits today, every bad-input
//! rule fails with its message and nothing on stdout, and what it emits runs in a real Envoy.
//!
//! Each test runs the real `xtask` binary. `BLESS=1` rewrites `examples/*.yaml` from
//! the command in each file's header, on purpose only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `xtask` binary, built once per test run (`CARGO_BIN_EXE_xtask` is per crate).
fn xtask_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root())
            .args(["build", "--quiet", "--package", "xtask", "--bin", "xtask"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p xtask failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root().join("target"), PathBuf::from);
        target
            .join("debug")
            .join(format!("xtask{}", std::env::consts::EXE_SUFFIX))
    })
}

/// Runs `xtask deploy ARGS` with a docker config of its own (so no login of the machine leaks in).
fn deploy(args: &[&str]) -> Output {
    deploy_with(args, &[])
}

fn deploy_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let docker = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(xtask_bin());
    // Like a user in the repository root, where the examples' commands are run.
    cmd.current_dir(root())
        .arg("deploy")
        .args(args)
        .env("DOCKER_CONFIG", docker.path())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run xtask")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the run failed, printed nothing on stdout, and said `message` on stderr.
#[track_caller]
fn assert_refused(out: &Output, message: &str) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr:\n{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout must be empty on failure, got:\n{}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(message),
        "stderr lacks `{message}`:\n{stderr}"
    );
}

#[track_caller]
fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "deploy failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

// ---------------------------------------------------------------- examples (golden files)

/// Splits a command line the way a POSIX shell would for the quoting the examples use.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// An example file: its comment header (holding the `# cargo xtask deploy ...` command)
/// and the YAML below it.
struct Example {
    path: PathBuf,
    header: String,
    body: String,
    args: Vec<String>,
}

fn example(name: &str) -> Example {
    let path = root().join("examples").join(name);
    let content =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header_len: usize = content
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.len() + 1)
        .sum();
    let (header, body) = content.split_at(header_len.min(content.len()));
    let mut command = String::new();
    let mut in_command = false;
    for line in header.lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with("cargo xtask deploy ") {
            in_command = true;
        }
        if in_command {
            match line.strip_suffix('\\') {
                Some(rest) => command.push_str(rest),
                None => {
                    command.push_str(line);
                    break;
                }
            }
            command.push(' ');
        }
    }
    let words = shell_words(&command);
    assert!(
        words.len() > 3,
        "{}: no `# cargo xtask deploy ...` line in its header",
        path.display()
    );
    Example {
        path,
        header: header.to_owned(),
        body: body.to_owned(),
        args: words[3..].to_vec(),
    }
}

/// The committed example is byte for byte what `deploy` emits for its command;
/// `BLESS=1` rewrites it instead.
fn golden(name: &str) {
    let ex = example(name);
    let args: Vec<&str> = ex.args.iter().map(String::as_str).collect();
    let emitted = assert_ok(&deploy(&args));
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&ex.path, format!("{}{emitted}", ex.header)).expect("bless");
        return;
    }
    assert!(
        ex.body == emitted,
        "{} drifted from what `cargo xtask deploy {}` emits now; if the change is intended, run with BLESS=1.\n--- committed\n{}\n--- emitted\n{}",
        ex.path.display(),
        ex.args.join(" "),
        ex.body,
        emitted
    );
}

#[test]
fn example_asm_is_what_deploy_emits() {
    golden("asm.yaml");
}

#[test]
fn example_pull_secret_is_what_deploy_emits() {
    golden("pull-secret.yaml");
}

#[test]
fn example_wasmplugin_is_what_deploy_emits() {
    golden("wasmplugin.yaml");
}

#[test]
fn example_envoyfilter_is_what_deploy_emits() {
    golden("envoyfilter.yaml");
}

#[test]
fn example_autowasm_is_what_deploy_emits() {
    golden("autowasm.yaml");
}

#[test]
fn example_envoy_is_what_deploy_emits() {
    golden("envoy.yaml");
}

#[test]
fn asm_example_reproduces_the_seed_resource() {
    // The walkthrough's resource (seed 000, with 001's imagePullOptions), field for field.
    let seed = "\
apiVersion: istio.alibabacloud.com/v1beta1
kind: ASMFilterDeployment
metadata:
  name: details-v1-wasmfiltersample
  namespace: default
spec:
  workload:
    kind: Deployment
    labels:
      app: details
      version: v1
  filter:
    patchContext: 'SIDECAR_INBOUND'
    parameters: '{\"name\":\"hello\",\"value\":\"hello details\"}'
    image: 'acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1'
    imagePullOptions:
      pullSecret: 'asmwasm-cache'
    rootID: 'my_root_id'
    id: 'details-v1-wasmfiltersample.default'
";
    assert_eq!(example("asm.yaml").body, seed);
}

#[test]
fn tag_only_image_warns_and_suggests_a_digest() {
    let out = deploy(&[
        "autowasm",
        "--name",
        "t",
        "--image",
        "reg.io/w/add-header:v1",
        "--selector",
        "app=x",
    ]);
    assert_ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: --image `reg.io/w/add-header:v1` names a tag"),
        "{stderr}"
    );
    assert!(stderr.contains("reg.io/w/add-header@sha256:"), "{stderr}");
    let digest = format!("reg.io/w/add-header@sha256:{}", "a".repeat(64));
    let out = deploy(&[
        "autowasm",
        "--name",
        "t",
        "--image",
        &digest,
        "--selector",
        "app=x",
    ]);
    assert_ok(&out);
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn wasmplugin_sha256_is_the_image_digest_not_the_module_hash() {
    let hex = "b".repeat(64);
    let image = format!("reg.io/w/add-header@sha256:{hex}");
    let yaml = assert_ok(&deploy(&[
        "wasmplugin",
        "--name",
        "p",
        "--image",
        &image,
        "--filter",
        "add-header",
    ]));
    assert!(yaml.contains(&format!("url: oci://{image}\n")), "{yaml}");
    assert!(yaml.contains(&format!("sha256: {hex}\n")), "{yaml}");
    // A tag-only image has no digest to check against: no sha256 field at all.
    let yaml = assert_ok(&deploy(&[
        "wasmplugin",
        "--name",
        "p",
        "--image",
        "reg.io/w/a:v1",
    ]));
    assert!(!yaml.contains("sha256"), "{yaml}");
}

#[test]
fn every_kind_has_help_with_examples() {
    for kind in [
        "asm",
        "pull-secret",
        "wasmplugin",
        "envoyfilter",
        "autowasm",
        "envoy",
    ] {
        let out = deploy(&[kind, "--help"]);
        let help = assert_ok(&out);
        assert!(
            help.contains("Example"),
            "`deploy {kind} --help` has no examples:\n{help}"
        );
        assert!(help.contains("cargo xtask deploy"), "{help}");
    }
    let help = assert_ok(&deploy(&["envoy", "--help"]));
    for policy in ["fail-open", "fail-closed", "fail-reload"] {
        assert!(help.contains(policy), "{help}");
    }
}

#[test]
fn output_file_gets_the_yaml_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("aw.yaml");
    let out = deploy(&[
        "autowasm",
        "--name",
        "t",
        "--object-url",
        "https://a.example.com/f.wasm",
        "--selector",
        "app=x",
        "-o",
        file.to_str().expect("utf-8 path"),
    ]);
    assert!(assert_ok(&out).is_empty());
    let yaml = std::fs::read_to_string(&file).expect("output written");
    assert!(
        yaml.contains("object:\n        url: https://a.example.com/f.wasm"),
        "{yaml}"
    );
}

// ---------------------------------------------------------------- bad input, one rule each

const ASM: &[&str] = &[
    "asm",
    "--image",
    "reg.io/asm/add-header:v1",
    "--selector",
    "app=details",
    "--root-id",
    "r",
];

fn asm(extra: &[&str]) -> Output {
    let mut args = ASM.to_vec();
    if !extra.contains(&"--name") {
        args.extend(["--name", "details"]);
    }
    args.extend(extra);
    deploy(&args)
}

#[test]
fn refuses_a_name_that_is_not_dns_1123() {
    assert_refused(
        &asm(&["--name", "Details_v1"]),
        "--name `Details_v1` must be a DNS-1123 subdomain",
    );
}

#[test]
fn refuses_a_namespace_that_is_not_a_dns_label() {
    assert_refused(
        &asm(&["--namespace", "my.ns"]),
        "--namespace `my.ns` must be a DNS-1123 label",
    );
}

#[test]
fn refuses_a_selector_without_equals() {
    assert_refused(
        &asm(&["--selector", "app"]),
        "--selector `app` must be KEY=VALUE",
    );
}

#[test]
fn refuses_a_bad_label_key() {
    assert_refused(
        &asm(&["--selector=-app=x"]),
        "label key `-app` must be at most 63 characters",
    );
}

#[test]
fn refuses_a_bad_label_value() {
    assert_refused(
        &asm(&["--selector", "version=v 1"]),
        "label value `v 1` must be empty or at most 63 characters",
    );
}

#[test]
fn refuses_a_label_key_given_twice() {
    assert_refused(
        &asm(&["--selector", "app=other"]),
        "label key `app` is given twice",
    );
}

#[test]
fn refuses_an_image_with_an_uppercase_repository() {
    let out = deploy(&[
        "autowasm",
        "--name",
        "t",
        "--image",
        "reg.io/Weir/f:v1",
        "--selector",
        "app=x",
    ]);
    assert_refused(&out, "--image `reg.io/Weir/f:v1` is not a valid OCI image reference: repository path component `Weir`");
}

#[test]
fn refuses_an_image_without_tag_or_digest() {
    let out = deploy(&["wasmplugin", "--name", "p", "--image", "reg.io/weir/f"]);
    assert_refused(&out, "it names neither a tag nor a digest");
}

#[test]
fn refuses_an_image_with_a_malformed_digest() {
    let out = deploy(&[
        "wasmplugin",
        "--name",
        "p",
        "--image",
        "reg.io/weir/f@sha256:abc",
    ]);
    assert_refused(
        &out,
        "digest `sha256:abc` must be sha256: followed by 64 lowercase hex digits",
    );
}

#[test]
fn refuses_parameters_that_are_not_json() {
    assert_refused(
        &asm(&["--parameters", "{name: hello}"]),
        "--parameters is not valid JSON",
    );
}

#[test]
fn refuses_a_parameters_file_that_does_not_exist() {
    assert_refused(
        &asm(&["--parameters", "@/nonexistent/params.json"]),
        "--parameters @/nonexistent/params.json: cannot read the file",
    );
}

#[test]
fn refuses_parameters_the_filter_refuses_with_the_filters_own_message() {
    let out = asm(&[
        "--filter",
        "add-header",
        "--parameters",
        r#"{"name": 5, "value": "x"}"#,
    ]);
    assert_refused(
        &out,
        "--parameters refused by filter `add-header` (Envoy would refuse it too)",
    );
    assert_refused(
        &out,
        "add-header: configuration refused: field `name`: invalid type: integer `5`",
    );
}

#[test]
fn refuses_unknown_fields_the_filter_refuses() {
    let out = asm(&[
        "--filter",
        "add-header",
        "--parameters",
        r#"{"name":"a","value":"b","extra":1}"#,
    ]);
    assert_refused(&out, "add-header: configuration refused:");
    assert_refused(&out, "extra");
}

#[test]
fn accepts_parameters_the_filter_accepts_read_from_a_file() {
    // @FILE is relative to where the user runs the command; give this one absolutely.
    let file = xtask::project::root().join("filters/add-header/config.example.json");
    let parameters = format!("@{}", file.display());
    let out = asm(&["--filter", "add-header", "--parameters", &parameters]);
    let yaml = assert_ok(&out);
    assert!(
        yaml.contains(r#"parameters: '{"name":"hello","value":"hello details"}'"#),
        "{yaml}"
    );
}

#[test]
fn refuses_an_output_path_in_a_missing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing/filter.yaml");
    let out = asm(&["-o", missing.to_str().expect("utf-8 path")]);
    assert_refused(&out, "--output");
    assert_refused(&out, "does not exist");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn refuses_asm_without_a_root_id_source() {
    let out = deploy(&[
        "asm",
        "--name",
        "d",
        "--image",
        "reg.io/a/b:v1",
        "--selector",
        "app=d",
    ]);
    assert_refused(
        &out,
        "--root-id is required unless --filter names the filter",
    );
}

#[test]
fn refuses_wasmplugin_parameters_that_are_not_an_object() {
    let out = deploy(&[
        "wasmplugin",
        "--name",
        "p",
        "--image",
        "reg.io/a/b:v1",
        "--parameters",
        "[1]",
    ]);
    assert_refused(&out, "--parameters must be a JSON object for wasmplugin");
}

#[test]
fn refuses_a_relative_wasm_path_in_an_envoyfilter() {
    let out = deploy(&[
        "envoyfilter",
        "--name",
        "f",
        "--wasm-path",
        "add-header.wasm",
    ]);
    assert_refused(&out, "--wasm-path `add-header.wasm` must be absolute");
}

#[test]
fn refuses_a_wasm_url_that_is_not_http() {
    let out = deploy(&[
        "envoyfilter",
        "--name",
        "f",
        "--wasm-url",
        "ftp://a.example.com/f.wasm",
        "--filter",
        "add-header",
    ]);
    assert_refused(
        &out,
        "--wasm-url `ftp://a.example.com/f.wasm` must be an http:// or https:// URL",
    );
}

#[test]
fn refuses_a_pull_secret_without_any_login() {
    let out = deploy(&["pull-secret", "--registry", "reg.example.com"]);
    assert_refused(&out, "no login found for reg.example.com");
}

#[test]
fn pull_secret_says_its_output_holds_a_secret() {
    let out = deploy(&[
        "pull-secret",
        "--image",
        "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
        "--registry-config",
        "examples/registry-login.json",
    ]);
    let yaml = assert_ok(&out);
    assert!(
        yaml.contains("type: kubernetes.io/dockerconfigjson"),
        "{yaml}"
    );
    assert!(
        text(&out.stderr).contains("holds a registry secret"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("example-password"),
        "the password must never reach stderr"
    );
}

// ---------------------------------------------------------------- what is emitted runs

/// Envoy started on a config file, stopped when dropped.
struct RunningEnvoy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl RunningEnvoy {
    fn start(config: &Path, port: u16, admin: u16) -> RunningEnvoy {
        let log = config.with_extension("log");
        let child = Command::new(xtask::envoy::binary().expect("envoy installed"))
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--base-id",
                &admin.to_string(),
                "-c",
            ])
            .arg(config)
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        let mut envoy = RunningEnvoy { child, port, log };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("envoy exited ({status}):\n{}", envoy.log_text());
            }
            if xtask::envoy::http_get(admin, "/ready", &[]).is_ok_and(|r| r.status == 200) {
                return envoy;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "envoy not ready:\n{}",
                envoy.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RunningEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn envoy_kind_validates_and_serves_the_filters_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("envoy.yaml");
    let (port, admin) = (
        xtask::envoy::free_port().expect("port"),
        xtask::envoy::free_port().expect("port"),
    );
    let out = deploy(&[
        "envoy",
        "--filter",
        "add-header",
        "--parameters",
        r#"{"name":"x-weir-deployed","value":"by deploy envoy"}"#,
        "--listen-port",
        &port.to_string(),
        "--admin-port",
        &admin.to_string(),
        "--failure-policy",
        "fail-closed",
        "-o",
        config.to_str().expect("utf-8 path"),
    ]);
    assert!(assert_ok(&out).is_empty());
    xtask::envoy::validate_config(&config).expect("envoy --mode validate accepts the bootstrap");
    let envoy = RunningEnvoy::start(&config, port, admin);
    let response = xtask::envoy::http_get(envoy.port, "/", &[]).expect("request through envoy");
    assert_eq!(response.status, 200, "{}", envoy.log_text());
    assert_eq!(
        response.header_str("x-weir-deployed").as_deref(),
        Some("by deploy envoy"),
        "{}",
        envoy.log_text()
    );
}

/// The `envoyfilter` kind's embedded Wasm filter is the `http_filters` entry Envoy runs here:
/// taken out of the emitted YAML, put before the router of a plain bootstrap, and served.
#[test]
fn envoyfilter_embedded_wasm_filter_runs_in_envoy() {
    let module = weir_tests::module("add-header");
    let yaml = assert_ok(&deploy(&[
        "envoyfilter",
        "--name",
        "details-v1-add-header",
        "--selector",
        "app=details",
        "--filter",
        "add-header",
        "--wasm-path",
        module.to_str().expect("utf-8 path"),
        "--parameters",
        r#"{"name":"x-from-envoyfilter","value":"yes"}"#,
        "--failure-policy",
        "fail-open",
    ]));
    let doc: serde_json::Value = serde_saphyr::from_str(&yaml).expect("the output parses as YAML");
    let patch = &doc["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "HTTP_FILTER");
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    let wasm_filter = patch["patch"]["value"].clone();
    assert_eq!(wasm_filter["name"], "envoy.filters.http.wasm");

    let (port, admin) = (
        xtask::envoy::free_port().expect("port"),
        xtask::envoy::free_port().expect("port"),
    );
    let mut bootstrap = xtask::envoy::Bootstrap::new(port, admin, Vec::new())
        .to_json()
        .expect("bootstrap");
    let http_filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["http_filters"]
        .as_array_mut()
        .expect("http_filters");
    http_filters.insert(0, wasm_filter);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("envoy.json");
    std::fs::write(
        &config,
        serde_json::to_vec_pretty(&bootstrap).expect("json"),
    )
    .expect("write config");
    xtask::envoy::validate_config(&config)
        .expect("envoy --mode validate accepts the embedded filter");
    let envoy = RunningEnvoy::start(&config, port, admin);
    let response = xtask::envoy::http_get(envoy.port, "/", &[]).expect("request through envoy");
    assert_eq!(
        response.header_str("x-from-envoyfilter").as_deref(),
        Some("yes"),
        "{}",
        envoy.log_text()
    );
}

#[test]
fn envoyfilter_configmap_path_ships_the_module_and_the_mount() {
    let module = std::fs::read(weir_tests::module("add-header")).expect("module");
    let dir = tempfile::tempdir().expect("tempdir");
    let patch_file = dir.path().join("patch.yaml");
    let out = deploy(&[
        "envoyfilter",
        "--name",
        "details-v1-add-header",
        "--selector",
        "app=details",
        "--filter",
        "add-header",
        "--configmap",
        "wasm-add-header",
        "--deployment",
        "details-v1",
        "--patch-output",
        patch_file.to_str().expect("utf-8 path"),
    ]);
    let yaml = assert_ok(&out);
    let docs: Vec<serde_json::Value> = yaml
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).expect("each document parses"))
        .collect();
    assert_eq!(docs.len(), 2, "{yaml}");
    assert_eq!(docs[0]["kind"], "ConfigMap");
    assert_eq!(docs[0]["metadata"]["name"], "wasm-add-header");
    use base64::Engine as _;
    let shipped = base64::engine::general_purpose::STANDARD
        .decode(
            docs[0]["binaryData"]["add-header.wasm"]
                .as_str()
                .expect("binaryData"),
        )
        .expect("base64");
    assert!(
        shipped == module,
        "the ConfigMap must hold the built module byte for byte"
    );
    let code = &docs[1]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["vm_config"]["code"];
    assert_eq!(
        code["local"]["filename"],
        "/var/local/lib/wasm-filters/add-header.wasm"
    );
    let patch: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&patch_file).expect("patch written"))
            .expect("patch parses");
    let annotations = &patch["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["sidecar.istio.io/userVolume"],
        r#"[{"name":"wasmfilters-dir","configMap":{"name":"wasm-add-header"}}]"#
    );
    assert_eq!(
        annotations["sidecar.istio.io/userVolumeMount"],
        r#"[{"mountPath":"/var/local/lib/wasm-filters","name":"wasmfilters-dir"}]"#
    );
    assert!(
        text(&out.stderr).contains("kubectl patch deployment details-v1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn envoyfilter_remote_code_carries_the_modules_sha256() {
    let module = std::fs::read(weir_tests::module("add-header")).expect("module");
    let yaml = assert_ok(&deploy(&[
        "envoyfilter",
        "--name",
        "f",
        "--filter",
        "add-header",
        "--wasm-url",
        "http://wasm.default:8080/add-header.wasm",
    ]));
    let doc: serde_json::Value = serde_saphyr::from_str(&yaml).expect("parses");
    let remote = &doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["vm_config"]["code"]["remote"];
    assert_eq!(remote["sha256"], xtask::project::sha256_hex(&module));
    assert_eq!(remote["http_uri"]["cluster"], "outbound|8080||wasm.default");
}

// ---------------------------------------------------------------- --pin against a real registry

/// Pushes add-header to a local registry under a tag; returns (registry, `host/repo:tag`, digest).
fn pushed_add_header() -> (weir_tests::registry::Registry, String, String) {
    let registry = weir_tests::registry::Registry::start();
    let module = weir_tests::module("add-header");
    let reference = format!("{}/weir/add-header:v1", registry.host());
    let out = assert_ok(&deploy_raw(&[
        "push",
        module.to_str().expect("utf-8 path"),
        &reference,
        "--plain-http",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("push --json");
    let digest = report["digest"].as_str().expect("digest").to_owned();
    (registry, reference, digest)
}

/// Runs `xtask ARGS` (not under `deploy`).
fn deploy_raw(args: &[&str]) -> Output {
    let docker = tempfile::tempdir().expect("tempdir");
    Command::new(xtask_bin())
        .args(args)
        .env("DOCKER_CONFIG", docker.path())
        .stdin(Stdio::null())
        .output()
        .expect("run xtask")
}

#[test]
fn pin_writes_the_registry_digest_into_url_and_sha256() {
    let (_registry, reference, digest) = pushed_add_header();
    let out = deploy(&[
        "wasmplugin",
        "--name",
        "p",
        "--image",
        &reference,
        "--pin",
        "--plain-http",
        "--filter",
        "add-header",
    ]);
    let yaml = assert_ok(&out);
    let repo = reference.trim_end_matches(":v1");
    assert!(
        yaml.contains(&format!("url: oci://{repo}@{digest}\n")),
        "{yaml}"
    );
    let hex = digest.trim_start_matches("sha256:");
    assert!(yaml.contains(&format!("sha256: {hex}\n")), "{yaml}");
    assert!(
        !text(&out.stderr).contains("warning"),
        "a pinned image needs no warning: {}",
        text(&out.stderr)
    );

    let asm = assert_ok(&deploy(&[
        "asm",
        "--name",
        "d",
        "--image",
        &reference,
        "--pin",
        "--plain-http",
        "--selector",
        "app=d",
        "--filter",
        "add-header",
    ]));
    assert!(asm.contains(&format!("image: '{repo}@{digest}'")), "{asm}");
}

#[test]
fn pin_refuses_a_digest_the_registry_does_not_have() {
    let (_registry, reference, _) = pushed_add_header();
    let wrong = format!(
        "{}@sha256:{}",
        reference.trim_end_matches(":v1"),
        "0".repeat(64)
    );
    let out = deploy(&[
        "autowasm",
        "--name",
        "t",
        "--image",
        &wrong,
        "--pin",
        "--plain-http",
        "--selector",
        "app=x",
    ]);
    assert_refused(&out, "--pin: cannot resolve the digest of");
}

#[test]
fn refuses_a_pull_secret_registry_that_is_not_a_host() {
    let out = deploy(&["pull-secret", "--registry", "reg.example.com/team"]);
    assert_refused(
        &out,
        "--registry `reg.example.com/team` must be a registry host name or IP address",
    );
}

/// Files holding secrets are 0600 (a pull secret; any output embedding --parameters), and
/// replacing a 0600 file never widens it; other outputs get 0666 less the umask, as `cp` would.
#[cfg(unix)]
#[test]
fn secret_outputs_are_0600_and_others_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let umasked = mode(&probe);
    let path = |name: &str| dir.path().join(name);
    let secret_args = |out: &Path| -> Vec<String> {
        [
            "pull-secret",
            "--image",
            "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
            "--registry-config",
            "examples/registry-login.json",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = deploy(&args);
        assert_ok(&out);
    };
    // A new pull secret, and one replacing a 0644 file and a 0600 file.
    run(secret_args(&path("secret.yaml")));
    assert_eq!(mode(&path("secret.yaml")), 0o600);
    for before in [0o644, 0o600] {
        let p = path(&format!("old-{before:o}.yaml"));
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(before)).unwrap();
        run(secret_args(&p));
        assert_eq!(mode(&p), 0o600, "a pull secret replacing a {before:o} file");
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .contains(".dockerconfigjson"));
    }
    // --parameters makes an output secret; without it the umask decides.
    let plugin = |out: &Path, params: bool| {
        let mut a: Vec<String> = [
            "wasmplugin",
            "--name",
            "p",
            "--image",
            "reg.io/w/a:v1",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(out.display().to_string());
        if params {
            a.extend([
                "--parameters".to_string(),
                r#"{"api_key":"s3cr3t"}"#.to_string(),
            ]);
        }
        run(a);
    };
    plugin(&path("with-params.yaml"), true);
    assert_eq!(mode(&path("with-params.yaml")), 0o600);
    plugin(&path("plain.yaml"), false);
    assert_eq!(mode(&path("plain.yaml")), umasked);
    // An ordinary output replacing a 0600 file keeps 0600.
    plugin(&path("with-params.yaml"), false);
    assert_eq!(mode(&path("with-params.yaml")), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".weir-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
