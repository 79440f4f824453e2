//! Every subcommand under bad input, from the table in tests/fixtures/cli/bad-input.json:
//! each case runs the real binary and must exit with its code, print a message that
//! names the problem on stderr, print nothing on stdout, and leave no file behind.
//!
//! Placeholders in arguments: `{tmp}` (the case's own empty directory), `{text}`,
//! `{truncated}`, `{bindgen}`, `{wrong_abi}` (bad modules), `{module}` (a module that
//! fits the ABI), `{layout}` (an OCI layout holding it as `:v1`), `{bad_json}`, `{down}` (a port nothing listens on), `{r401}` `{r403}`
//! `{r404}` `{r500}` (a registry that answers only that status), `{slow}` (one that never answers).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    args: Vec<String>,
    exit: i32,
    stderr: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A registry stand-in that answers every request with `status` (or never, when `None`).
fn fault_server(status: Option<u16>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = stream.read(&mut buf);
                let Some(status) = status else {
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                };
                let (code, reason) = match status {
                    401 => ("UNAUTHORIZED", "Unauthorized"),
                    403 => ("DENIED", "Forbidden"),
                    404 => ("NAME_UNKNOWN", "Not Found"),
                    _ => ("UNKNOWN", "Internal Server Error"),
                };
                let body = format!(
                    r#"{{"errors":[{{"code":"{code}","message":"fault injected by the test"}}]}}"#
                );
                let auth = if status == 401 {
                    "WWW-Authenticate: Basic realm=\"test\"\r\n"
                } else {
                    ""
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} {reason}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

fn listing(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in walk(dir) {
        out.insert(entry.strip_prefix(dir).unwrap().display().to_string());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn every_bad_input_gets_a_clear_message_a_nonzero_exit_and_leaves_nothing() {
    let table = std::fs::read_to_string(fixtures().join("cli/bad-input.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&table).unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let put = |name: &str, bytes: &[u8]| {
        let p = inputs.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let wat = |name: &str| wat::parse_file(fixtures().join("validate").join(name)).unwrap();
    let valid = wat("valid.wat");
    let text = put("notes.wasm", b"this is text, not a module\n");
    let truncated = put("truncated.wasm", &valid[..valid.len() / 2]);
    let bindgen = put("bindgen.wasm", &wat("wasm-bindgen.wat"));
    let wrong_abi = put("wrong-abi.wasm", &wat("wrong-abi-version.wat"));
    let module = put("valid.wasm", &valid);
    let bad_json = put("config.json", b"{\"auths\": not json");
    // A real OCI layout holding the valid module, for pull cases.
    let layout = inputs.path().join("layout").display().to_string();
    let pushed = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["push", &module, &format!("oci:{layout}:v1")])
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let servers = [
        ("{r401}", fault_server(Some(401))),
        ("{r403}", fault_server(Some(403))),
        ("{r404}", fault_server(Some(404))),
        ("{r500}", fault_server(Some(500))),
        ("{slow}", fault_server(None)),
        ("{down}", closed_port()),
    ];

    let mut failures = Vec::new();
    for case in &cases {
        let tmp = tempfile::tempdir().unwrap();
        let before = listing(tmp.path());
        let fill = |a: &str| {
            let mut a = a
                .replace("{tmp}", &tmp.path().display().to_string())
                .replace("{layout}", &layout)
                .replace("{text}", &text)
                .replace("{truncated}", &truncated)
                .replace("{bindgen}", &bindgen)
                .replace("{wrong_abi}", &wrong_abi)
                .replace("{module}", &module)
                .replace("{bad_json}", &bad_json);
            for (k, v) in &servers {
                a = a.replace(k, v);
            }
            a
        };
        let args: Vec<String> = case.args.iter().map(|a| fill(a)).collect();
        let expected = fill(&case.stderr);
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .env("DOCKER_CONFIG", tmp.path().join("no-docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let code = out.status.code().unwrap_or(-1);
        let mut problems = Vec::new();
        if code != case.exit {
            problems.push(format!("exit {code}, expected {}", case.exit));
        }
        if !stderr.to_lowercase().contains(&expected.to_lowercase()) {
            problems.push(format!("stderr lacks {expected:?}"));
        }
        if !stdout.trim().is_empty() {
            problems.push(format!("stdout not empty: {stdout:?}"));
        }
        let after = listing(tmp.path());
        if after != before {
            problems.push(format!(
                "left files behind: {:?}",
                after.difference(&before).collect::<Vec<_>>()
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}):\n  {}\n  stderr: {}",
                case.name,
                args.join(" "),
                problems.join("\n  "),
                stderr.trim()
            ));
        }
    }
    assert!(
        cases.len() >= 30,
        "the table has only {} cases",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
