//! `cargo xtask push` / `pull` against a real CNCF distribution registry, with real peers
//! (oras-py, skopeo), a fault-injecting proxy, and htpasswd logins.

use std::path::Path;
use weir_tests::registry::{
    module_file, oras_pull, oras_push_seed_layout, registry_manifest, skopeo, xtask, xtask_env,
    FaultProxy, Faults, Registry, Tls, TokenServer,
};

const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// add-header's size after wasm-opt (ENVIRONMENT.md: 54 KB).
const ADD_HEADER_SIZE: usize = 54_000;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn push(file: &Path, reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["push", file.to_str().unwrap(), reference, "--json"];
    args.extend_from_slice(extra);
    let run = xtask(&args, None);
    assert!(run.status.success(), "push failed:\n{}", run.all());
    json(&run.stdout)
}

fn pull(reference: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["pull", reference, "-o", out.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let run = xtask(&args, None);
    assert!(run.status.success(), "pull failed:\n{}", run.all());
    json(&run.stdout)
}

fn layer_types(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| l["mediaType"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn universal_has_two_layers_one_wasm_and_oras_py_pulls_the_same_bytes() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "uni", 4000, 1);
    let host = reg.host();
    let report = push(&file, &format!("{host}/weir/uni:v1"), &["--plain-http"]);
    assert_eq!(report["format"], "universal");

    // Istio's rule for the "oci" variant: exactly two layers, one of them the raw module.
    let manifest = registry_manifest(&host, "weir/uni:v1");
    let types = layer_types(&manifest);
    assert_eq!(types.len(), 2, "{manifest:#}");
    assert_eq!(
        types.iter().filter(|t| *t == WASM_LAYER).count(),
        1,
        "{manifest:#}"
    );
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
    assert_eq!(
        manifest["annotations"]["com.github.weir-rs.proxy-wasm.abi-versions"],
        "0_2_1"
    );

    let out = dir.path().join("oras");
    std::fs::create_dir(&out).unwrap();
    let files = oras_pull(&host, &format!("{host}/weir/uni:v1"), &out);
    let wasm = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .expect("oras-py wrote the module");
    assert_eq!(
        std::fs::read(wasm).unwrap(),
        bytes,
        "oras-py got other bytes"
    );
    let config = files
        .iter()
        .find(|f| f.ends_with("runtime-config.json"))
        .expect("oras-py wrote the runtime config");
    let config = json(&std::fs::read_to_string(config).unwrap());
    assert_eq!(
        config,
        serde_json::json!({"type":"envoy_proxy","abiVersions":["0_2_1"],"config":{"rootIds":["uni"]}})
    );

    let back = dir.path().join("back.wasm");
    let pulled = pull(&format!("{host}/weir/uni:v1"), &back, &["--plain-http"]);
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
    assert_eq!(pulled["layout"], "universal");
    assert_eq!(pulled["digest"], report["digest"]);
}

#[test]
fn asm_is_the_seeds_oras_layout_and_each_side_pulls_the_other() {
    let reg = Registry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "example-filter", 3000, 2);

    // weir pushes asm; oras-py pulls the same bytes.
    push(
        &file,
        &format!("{host}/asm/weir:v0.1"),
        &["--plain-http", "--format", "asm"],
    );
    let ours = registry_manifest(&host, "asm/weir:v0.1");
    let out = dir.path().join("oras");
    std::fs::create_dir(&out).unwrap();
    let files = oras_pull(&host, &format!("{host}/asm/weir:v0.1"), &out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);

    // The seed's own command, run by oras-py, gives the same layout: same config type, one
    // wasm layer with the same digest.
    let config =
        r#"{"type":"envoy_proxy","abiVersions":["0_2_1"],"config":{"rootIds":["example-filter"]}}"#;
    oras_push_seed_layout(
        &host,
        &format!("{host}/asm/seed:v0.1"),
        dir.path(),
        "example-filter.wasm",
        config,
    );
    let seed = registry_manifest(&host, "asm/seed:v0.1");
    assert_eq!(ours["config"]["mediaType"], seed["config"]["mediaType"]);
    assert_eq!(layer_types(&ours), layer_types(&seed));
    assert_eq!(layer_types(&ours), vec![WASM_LAYER.to_owned()]);
    assert_eq!(ours["layers"][0]["digest"], seed["layers"][0]["digest"]);

    // weir pulls what oras-py pushed.
    let back = dir.path().join("from-seed.wasm");
    let pulled = pull(&format!("{host}/asm/seed:v0.1"), &back, &["--plain-http"]);
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
    assert_eq!(pulled["layout"], "asm");
    assert_eq!(pulled["root_ids"], serde_json::json!(["example-filter"]));
}

#[test]
fn compat_holds_plugin_wasm_and_a_docker_manifest_copy_pulls_too() {
    let reg = Registry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "compat", 5000, 3);
    push(
        &file,
        &format!("{host}/c/compat:v1"),
        &["--plain-http", "--format", "compat"],
    );
    let manifest = registry_manifest(&host, "c/compat:v1");
    assert_eq!(
        layer_types(&manifest),
        vec!["application/vnd.oci.image.layer.v1.tar+gzip".to_owned()]
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );

    // The layer is a tar+gzip with plugin.wasm, as `tar` itself reads it.
    let layer = reg.blob_file(manifest["layers"][0]["digest"].as_str().unwrap());
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&layer)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .any(|l| l == "plugin.wasm"),
        "{listing:?}"
    );

    let back = dir.path().join("back.wasm");
    assert_eq!(
        pull(&format!("{host}/c/compat:v1"), &back, &["--plain-http"])["layout"],
        "compat"
    );
    assert_eq!(std::fs::read(&back).unwrap(), bytes);

    // skopeo copies it as a Docker v2 image (Docker media types); pull finds plugin.wasm there.
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{host}/c/compat:v1"),
        &format!("docker://{host}/c/docker:v1"),
    ]);
    let docker = registry_manifest(&host, "c/docker:v1");
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let back2 = dir.path().join("back2.wasm");
    assert_eq!(
        pull(&format!("{host}/c/docker:v1"), &back2, &["--plain-http"])["layout"],
        "docker-compat"
    );
    assert_eq!(std::fs::read(&back2).unwrap(), bytes);
}

/// skopeo reads every layout weir writes: the manifest of each (`inspect --raw`), the whole
/// image for compat (`inspect`; skopeo refuses image-level inspection of any artifact whose
/// config is not an image config, the seed's ORAS layout included), and copies the universal
/// artifact to a registry blob for blob, digest unchanged.
#[test]
fn skopeo_reads_the_oci_layouts_weir_writes_and_pull_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "lay", 2000, 4);
    let layout = dir.path().join("layout");
    for format in ["universal", "asm", "compat"] {
        let reference = format!("oci:{}:{format}", layout.display());
        let report = push(&file, &reference, &["--format", format]);
        let raw = skopeo(&["inspect", "--raw", &reference]);
        assert_eq!(
            format!("sha256:{}", xtask::project::sha256_hex(raw.as_bytes())),
            report["digest"].as_str().unwrap(),
            "{format}"
        );
        let expected_layers = if format == "universal" { 2 } else { 1 };
        assert_eq!(
            layer_types(&json(&raw)).len(),
            expected_layers,
            "{format}: {raw}"
        );
        let back = dir.path().join(format!("{format}.wasm"));
        assert_eq!(pull(&reference, &back, &[])["layout"], format);
        assert_eq!(std::fs::read(&back).unwrap(), bytes, "{format}");
        if format == "compat" {
            let inspected = json(&skopeo(&["inspect", &reference]));
            assert_eq!(inspected["Digest"], report["digest"], "{inspected:#}");
            assert_eq!(inspected["Architecture"], "wasm", "{inspected:#}");
        }
    }
    let reg = Registry::start();
    let host = reg.host();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:universal", layout.display()),
        &format!("docker://{host}/copied/lay:v1"),
    ]);
    let back = dir.path().join("copied.wasm");
    let pulled = pull(&format!("{host}/copied/lay:v1"), &back, &["--plain-http"]);
    assert_eq!(pulled["layout"], "universal");
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
}

#[test]
fn second_push_of_the_same_module_uploads_no_blob() {
    let reg = Registry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = module_file(dir.path(), "dedup", ADD_HEADER_SIZE, 5);
    let reference = format!("{host}/d/dedup:v1");
    let first = push(&file, &reference, &["--plain-http"]);
    let after_first = reg.upload_requests();
    assert!(
        after_first >= 2,
        "the first push uploaded nothing?\n{}",
        reg.log_text()
    );
    assert!(first["uploaded_bytes"].as_u64().unwrap() > ADD_HEADER_SIZE as u64 - 300);

    let second = push(&file, &reference, &["--plain-http"]);
    assert_eq!(
        reg.upload_requests(),
        after_first,
        "the second push uploaded blobs:\n{}",
        reg.log_text()
    );
    assert_eq!(second["uploaded_bytes"], 0);
    assert_eq!(second["skipped_bytes"], first["uploaded_bytes"]);
    assert_eq!(
        second["digest"], first["digest"],
        "the same module must give the same manifest digest"
    );
}

#[test]
fn push_retries_503s_and_a_dropped_upload_and_the_tag_pulls_back_the_module() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            fail_uploads: 2,
            drop_uploads: 1,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "flaky", 20_000, 6);
    let run = xtask(
        &[
            "push",
            file.to_str().unwrap(),
            &format!("{}/f/flaky:v1", proxy.host()),
            "--plain-http",
        ],
        None,
    );
    assert!(
        run.status.success(),
        "push did not get through the faults:\n{}",
        run.all()
    );
    let seen = proxy.faults();
    assert_eq!(
        (seen.answered_503, seen.dropped),
        (2, 1),
        "the faults were not all injected"
    );
    assert!(run.stderr.contains("retry 1 of 4"), "{}", run.all());

    let back = dir.path().join("back.wasm");
    pull(
        &format!("{}/f/flaky:v1", reg.host()),
        &back,
        &["--plain-http"],
    );
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
}

#[test]
fn a_push_that_keeps_failing_leaves_no_tag_and_succeeds_on_rerun() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            fail_uploads: 1000,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "down", 8000, 7);
    let reference = format!("{}/f/down:v1", proxy.host());
    let run = xtask(
        &[
            "push",
            file.to_str().unwrap(),
            &reference,
            "--plain-http",
            "--retries",
            "1",
        ],
        None,
    );
    assert!(
        !run.status.success(),
        "push succeeded against a registry that refuses uploads:\n{}",
        run.all()
    );
    let err = &run.stderr;
    assert!(
        err.contains(&proxy.host())
            && err.contains("uploading the")
            && err.contains("after 2 tries"),
        "{}",
        run.all()
    );
    assert!(
        err.contains("no tag was written") && err.contains("503"),
        "{}",
        run.all()
    );

    // The tag is written last: nothing points at missing blobs.
    let miss = xtask(
        &[
            "pull",
            &format!("{}/f/down:v1", reg.host()),
            "-o",
            dir.path().join("x.wasm").to_str().unwrap(),
            "--plain-http",
        ],
        None,
    );
    assert!(!miss.status.success());
    assert!(
        miss.stderr.contains("has no tag or repository")
            && miss.stderr.contains("reading the manifest"),
        "{}",
        miss.all()
    );
    assert!(
        !dir.path().join("x.wasm").exists(),
        "a failed pull wrote its output"
    );

    proxy.set(Faults::default());
    let again = xtask(
        &["push", file.to_str().unwrap(), &reference, "--plain-http"],
        None,
    );
    assert!(again.status.success(), "{}", again.all());
    let back = dir.path().join("back.wasm");
    pull(
        &format!("{}/f/down:v1", reg.host()),
        &back,
        &["--plain-http"],
    );
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
}

#[test]
fn a_registry_that_never_answers_times_out_with_the_step_named() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            stall: true,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = module_file(dir.path(), "slow", 1000, 8);
    let run = xtask(
        &[
            "push",
            file.to_str().unwrap(),
            &format!("{}/s/slow:v1", proxy.host()),
            "--plain-http",
            "--timeout",
            "1",
            "--retries",
            "0",
        ],
        None,
    );
    assert!(!run.status.success(), "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("{} did not answer within 1s while", proxy.host()))
            && run.stderr.contains("--timeout"),
        "{}",
        run.all()
    );
}

/// Registries that refuse: an account without push rights (403), and one that rejects custom
/// artifact media types (400 on the manifest), where compat still goes through.
#[test]
fn refusals_name_the_registry_the_step_and_the_way_out() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            deny_uploads: true,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "refused", 2000, 13);
    let file = file.to_str().unwrap();
    let reference = format!("{}/r/refused:v1", proxy.host());
    let denied = xtask(&["push", file, &reference, "--plain-http"], None);
    assert!(!denied.status.success());
    assert!(
        denied.stderr.contains(&format!(
            "{} denied access to {}/r/refused while uploading the",
            proxy.host(),
            proxy.host()
        )) && denied.stderr.contains("403")
            && denied.stderr.contains("no credentials (anonymous)"),
        "{}",
        denied.all()
    );
    assert!(
        !denied.stderr.contains("retry"),
        "a 403 was retried:\n{}",
        denied.all()
    );

    proxy.set(Faults {
        no_repository: true,
        ..Faults::default()
    });
    let missing = xtask(&["push", file, &reference, "--plain-http"], None);
    assert!(!missing.status.success());
    assert!(
        missing.stderr.contains(&format!(
            "{} has no repository {}/r/refused while uploading the",
            proxy.host(),
            proxy.host()
        )) && missing.stderr.contains("NAME_UNKNOWN")
            && missing.stderr.contains("create it in the registry first"),
        "{}",
        missing.all()
    );

    proxy.set(Faults {
        reject_manifest_containing: Some(WASM_CONFIG.to_owned()),
        ..Faults::default()
    });
    let rejected = xtask(&["push", file, &reference, "--plain-http"], None);
    assert!(!rejected.status.success(), "{}", rejected.all());
    assert!(
        rejected.stderr.contains(&format!(
            "{} rejected the request while writing tag v1 (manifest PUT)",
            proxy.host()
        )) && rejected.stderr.contains("MANIFEST_INVALID")
            && rejected.stderr.contains("try --format compat"),
        "{}",
        rejected.all()
    );
    let compat = xtask(
        &[
            "push",
            file,
            &reference,
            "--plain-http",
            "--format",
            "compat",
        ],
        None,
    );
    assert!(compat.status.success(), "{}", compat.all());
    let back = dir.path().join("back.wasm");
    pull(
        &format!("{}/r/refused:v1", reg.host()),
        &back,
        &["--plain-http"],
    );
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
}

const USER: &str = "weir";
const PASSWORD: &str = "Corr3ct-h0rse-battery";
const WRONG: &str = "wr0ng-Passw0rd-zebra";

#[test]
fn a_wrong_password_fails_clearly_and_no_password_is_ever_printed() {
    let reg = Registry::start_with_login(USER, PASSWORD);
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "auth", 3000, 9);
    let reference = format!("{host}/a/auth:v1");
    let file = file.to_str().unwrap();

    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec![
            "push",
            file,
            &reference,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        let run = xtask(&args, Some(&format!("{WRONG}\n")));
        assert!(!run.status.success(), "{}", run.all());
        assert!(
            run.stderr.contains(&format!("{host} refused the login")) && run.stderr.contains("401"),
            "{}",
            run.all()
        );
        assert!(
            run.stderr
                .contains("tried user `weir` from --username with --password-stdin"),
            "{}",
            run.all()
        );
        assert!(
            run.stderr.contains("--password-stdin") && run.stderr.contains("docker login"),
            "{}",
            run.all()
        );
        assert!(
            !run.all().contains(WRONG),
            "the password was printed:\n{}",
            run.all()
        );
    }

    let anonymous = xtask(&["push", file, &reference, "--plain-http"], None);
    assert!(!anonymous.status.success());
    assert!(
        anonymous
            .stderr
            .contains("tried no credentials (anonymous)"),
        "{}",
        anonymous.all()
    );

    // The right password, from stdin, pushes; from the seed's myconfig.json, pulls.
    let ok = xtask(
        &[
            "push",
            file,
            &reference,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
            "--json",
        ],
        Some(PASSWORD),
    );
    assert!(ok.status.success(), "{}", ok.all());
    assert!(
        !ok.all().contains(PASSWORD),
        "the password was printed:\n{}",
        ok.all()
    );
    let config = dir.path().join("myconfig.json");
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{host}":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}"#),
    )
    .unwrap();
    let back = dir.path().join("back.wasm");
    let pulled = xtask(
        &[
            "pull",
            &reference,
            "-o",
            back.to_str().unwrap(),
            "--plain-http",
            "--registry-config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(pulled.status.success(), "{}", pulled.all());
    assert!(!pulled.all().contains(PASSWORD));
    assert_eq!(std::fs::read(&back).unwrap(), bytes);

    // And from $DOCKER_CONFIG with a base64 `auth` entry (what `docker login` writes).
    let docker = tempfile::tempdir().unwrap();
    let auth = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(
        docker.path().join("config.json"),
        format!(r#"{{"auths":{{"http://{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let back2 = dir.path().join("back2.wasm");
    let pulled2 = xtask_env(
        &[
            "pull",
            &reference,
            "-o",
            back2.to_str().unwrap(),
            "--plain-http",
        ],
        None,
        &[("DOCKER_CONFIG", docker.path().to_str().unwrap())],
    );
    assert!(pulled2.status.success(), "{}", pulled2.all());
    assert!(!pulled2.all().contains(PASSWORD) && !pulled2.all().contains(&auth));
}

/// A bearer-token registry (distribution's `auth: token`, JWTs from a token server): the login
/// goes to the token endpoint, the token to the registry; a wrong password is named as such.
#[test]
fn a_bearer_token_registry_takes_the_login_at_its_token_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(dir.path(), USER, PASSWORD);
    let reg = Registry::start_with_tokens(&tokens);
    let host = reg.host();
    let (file, bytes) = module_file(dir.path(), "bearer", 3000, 12);
    let file = file.to_str().unwrap();
    let reference = format!("{host}/b/bearer:v1");

    let wrong = xtask(
        &[
            "push",
            file,
            &reference,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ],
        Some(WRONG),
    );
    assert!(!wrong.status.success(), "{}", wrong.all());
    assert!(
        wrong.stderr.contains(&format!("{host} refused the login"))
            && wrong.stderr.contains("tried user `weir`"),
        "{}",
        wrong.all()
    );
    assert!(!wrong.all().contains(WRONG));

    let ok = xtask(
        &[
            "push",
            file,
            &reference,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert!(ok.status.success(), "{}\n{}", ok.all(), reg.log_text());
    assert!(!ok.all().contains(PASSWORD));
    let granted: Vec<String> = tokens
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(s, _)| s.clone())
        .collect();
    assert!(
        granted.iter().any(|s| s == "repository:b/bearer:pull,push"),
        "{granted:?}"
    );

    let back = dir.path().join("back.wasm");
    let pulled = xtask(
        &[
            "pull",
            &reference,
            "-o",
            back.to_str().unwrap(),
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert!(pulled.status.success(), "{}", pulled.all());
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
}

#[test]
fn a_filter_name_is_built_then_pushed_with_its_root_id_source_and_revision() {
    let built = std::fs::read(weir_tests::module("add-header")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("oci:{}:v1", dir.path().join("layout").display());
    let run = xtask(&["push", "add-header", &reference, "--json"], None);
    assert!(run.status.success(), "{}", run.all());
    let raw = json(&skopeo(&["inspect", "--raw", &reference]));
    let notes = &raw["annotations"];
    assert_eq!(notes["org.opencontainers.image.title"], "add-header");
    assert!(
        notes["org.opencontainers.image.source"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "{raw:#}"
    );
    assert_eq!(
        notes["org.opencontainers.image.revision"]
            .as_str()
            .map(str::len),
        Some(40),
        "{raw:#}"
    );
    let back = dir.path().join("back.wasm");
    let pulled = pull(&reference, &back, &[]);
    assert_eq!(pulled["root_ids"], serde_json::json!(["add-header"]));
    assert_eq!(
        std::fs::read(&back).unwrap(),
        built,
        "the pushed module is not the built one"
    );
}

#[test]
fn pull_refuses_a_blob_that_does_not_match_its_digest_and_writes_nothing() {
    let reg = Registry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = module_file(dir.path(), "tamper", 3000, 10);
    push(
        &file,
        &format!("{host}/t/tamper:v1"),
        &["--plain-http", "--format", "asm"],
    );
    let manifest = registry_manifest(&host, "t/tamper:v1");
    let blob = reg.blob_file(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut data = std::fs::read(&blob).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&blob, data).unwrap();

    let out = dir.path().join("out.wasm");
    let run = xtask(
        &[
            "pull",
            &format!("{host}/t/tamper:v1"),
            "-o",
            out.to_str().unwrap(),
            "--plain-http",
            "--retries",
            "1",
        ],
        None,
    );
    assert!(!run.status.success(), "{}", run.all());
    assert!(
        run.stderr.contains("digest") && run.stderr.contains("refusing"),
        "{}",
        run.all()
    );
    assert!(
        !out.exists(),
        "pull wrote a module whose digest did not match"
    );

    let wrong = format!("{host}/t/tamper@sha256:{}", "0".repeat(64));
    let run = xtask(
        &["pull", &wrong, "-o", out.to_str().unwrap(), "--plain-http"],
        None,
    );
    assert!(!run.status.success() && !out.exists(), "{}", run.all());
}

#[test]
fn https_is_verified_a_private_ca_is_trusted_with_ca_file_and_plain_http_mixups_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::make(dir.path());
    let reg = Registry::start_tls(&tls);
    let host = reg.host();
    let (file, bytes) = module_file(dir.path(), "tls", 3000, 11);
    let file = file.to_str().unwrap();
    let reference = format!("{host}/tls/m:v1");

    let unknown_ca = xtask(&["push", file, &reference], None);
    assert!(
        !unknown_ca.status.success(),
        "a certificate from an unknown CA was accepted:\n{}",
        unknown_ca.all()
    );
    assert!(
        unknown_ca
            .stderr
            .contains(&format!("TLS with {host} failed"))
            && unknown_ca.stderr.contains("--ca-file"),
        "{}",
        unknown_ca.all()
    );

    let plain = xtask(&["push", file, &reference, "--plain-http"], None);
    assert!(!plain.status.success());
    assert!(
        plain.stderr.contains("drop --plain-http"),
        "{}",
        plain.all()
    );

    let ca = tls.ca.to_str().unwrap();
    push(Path::new(file), &reference, &["--ca-file", ca]);
    let back = dir.path().join("back.wasm");
    pull(&reference, &back, &["--ca-file", ca]);
    assert_eq!(std::fs::read(&back).unwrap(), bytes);

    let http_only = Registry::start();
    let forgot = xtask(
        &["push", file, &format!("{}/x/y:v1", http_only.host())],
        None,
    );
    assert!(!forgot.status.success());
    assert!(
        forgot
            .stderr
            .contains("--plain-http for a registry without TLS"),
        "{}",
        forgot.all()
    );
}

#[test]
fn a_module_envoy_would_refuse_is_not_pushed() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(
        &bad,
        wat::parse_str(
            r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let run = xtask(
        &[
            "push",
            bad.to_str().unwrap(),
            &format!("{}/bad/bad:v1", reg.host()),
            "--plain-http",
        ],
        None,
    );
    assert!(!run.status.success(), "{}", run.all());
    assert!(
        run.stderr.contains("proxy_on_context_create") && run.stderr.contains("nothing was pushed"),
        "{}",
        run.all()
    );
    assert_eq!(reg.upload_requests(), 0, "{}", reg.log_text());
}

#[test]
fn help_shows_examples() {
    for sub in ["push", "pull"] {
        let run = xtask(&[sub, "--help"], None);
        assert!(run.status.success(), "{}", run.all());
        assert!(
            run.stdout.contains("Examples:") && run.stdout.contains(&format!("cargo xtask {sub}")),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("--password-stdin") && run.stdout.contains("--plain-http"),
            "{}",
            run.stdout
        );
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
