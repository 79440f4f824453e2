//! Registry credentials: which login a push or pull uses, found the way docker finds it, never printed.
//!
//! Order: `--username` with `--password-stdin`; `--registry-config FILE`; the docker
//! config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) with its
//! `credHelpers`, `credsStore` and `auths`; anonymous. Secrets live in [`Secret`],
//! whose `Debug` and `Display` print `<redacted>`, so no log line, error or `--json`
//! output can carry one by accident.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which login `push`, `pull` and `deploy pull-secret` use (the CLI's credential flags).
#[derive(Debug, Clone, Default)]
pub struct CredentialArgs {
    /// Log in as this user; the password (or token) is read from standard input.
    pub username: Option<String>,
    /// Read the password for `username` from standard input.
    pub password_stdin: bool,
    /// A docker config.json to take the login from.
    pub registry_config: Option<PathBuf>,
}

/// A password or token. `Debug` and `Display` print `<redacted>`; [`Secret::expose`] is
/// the one way to the value, for the code that must send or store it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: for an `Authorization` header or a pull secret, never for output.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to authenticate to a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// No credentials.
    Anonymous,
    /// A user name and password (basic auth, or exchanged for a bearer token).
    Basic {
        /// The user name (not secret: error messages may name it).
        username: String,
        /// The password.
        password: Secret,
    },
    /// A registry token sent as `Authorization: Bearer` (docker's `registrytoken`).
    Bearer(Secret),
}

/// Where a [`Login`] came from, for messages such as "tried user `ci` from --registry-config".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--username` with `--password-stdin`.
    Flags,
    /// An `auths` entry of the `--registry-config` file.
    RegistryConfig(PathBuf),
    /// An `auths` entry of the user's docker config.
    DockerConfig(PathBuf),
    /// `docker-credential-<helper> get`, named by `credHelpers` or `credsStore` in `config`.
    CredentialHelper {
        /// The helper's name (`pass`, `secretservice`, ...).
        helper: String,
        /// The docker config file that names it.
        config: PathBuf,
    },
    /// Nothing was configured for the registry.
    Anonymous,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flags => f.write_str("--username with --password-stdin"),
            Source::RegistryConfig(p) => write!(f, "--registry-config {}", p.display()),
            Source::DockerConfig(p) => write!(f, "docker config {}", p.display()),
            Source::CredentialHelper { helper, config } => {
                write!(
                    f,
                    "docker-credential-{} (named in {})",
                    crate::display::escape(helper),
                    config.display()
                )
            }
            Source::Anonymous => f.write_str("no credentials (anonymous)"),
        }
    }
}

/// The login chosen for one registry, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Which source supplied the login.
    pub source: Source,
    /// The login itself.
    pub login: Login,
}

impl Resolved {
    /// No credentials.
    pub fn anonymous() -> Self {
        Resolved {
            source: Source::Anonymous,
            login: Login::Anonymous,
        }
    }

    /// One line naming what was tried, without any secret: `user `ci` from --registry-config F`.
    pub fn describe(&self) -> String {
        match &self.login {
            Login::Anonymous => "no credentials (anonymous)".to_owned(),
            // The name may come from a helper or a config file: printed escaped and bounded.
            Login::Basic { username, .. } => {
                format!(
                    "user `{}` from {}",
                    crate::display::quote(username, 100),
                    self.source
                )
            }
            Login::Bearer(_) => format!("a registry token from {}", self.source),
        }
    }

    /// The same login as oci-client's value (whose `Debug` redacts it too).
    pub fn registry_auth(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match &self.login {
            Login::Anonymous => RegistryAuth::Anonymous,
            Login::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.expose().to_owned())
            }
            Login::Bearer(token) => RegistryAuth::Bearer(token.expose().to_owned()),
        }
    }
}

/// Where to look besides the flags: the process environment, or a test's stand-in for it.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// The user's docker config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// `PATH` for finding `docker-credential-*` helpers; `None` keeps the process's own.
    pub helper_path: Option<OsString>,
}

impl Environment {
    /// The real environment: `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn from_process() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        Environment {
            docker_config: dir.map(|d| d.join("config.json")),
            helper_path: None,
        }
    }
}

/// The login for `registry_host` (`host[:port]`), from the flags, the files and the helpers
/// in the documented order; the password for `--password-stdin` is read from standard input.
pub fn resolve(args: &CredentialArgs, registry_host: &str) -> Result<Resolved> {
    resolve_with(
        args,
        registry_host,
        &Environment::from_process(),
        &mut std::io::stdin().lock(),
    )
}

/// [`resolve`] with the environment and standard input given, so tests need not touch the
/// process's own.
pub fn resolve_with(
    args: &CredentialArgs,
    registry_host: &str,
    env: &Environment,
    stdin: &mut dyn Read,
) -> Result<Resolved> {
    if let Some(username) = &args.username {
        if !args.password_stdin {
            bail!("--username {username} needs the password on standard input: add --password-stdin (e.g. `echo \"$TOKEN\" | cargo xtask push ... --username {username} --password-stdin`)");
        }
        let password = read_password(stdin)?;
        return Ok(Resolved {
            source: Source::Flags,
            login: Login::Basic {
                username: username.clone(),
                password,
            },
        });
    }
    if args.password_stdin {
        bail!("--password-stdin needs --username USER");
    }
    if let Some(path) = &args.registry_config {
        let config = DockerConfig::load(path)?;
        return match config.lookup(registry_host, path, env, Source::RegistryConfig(path.clone()))? {
            Some(found) => Ok(found),
            None => bail!(
                "--registry-config {} has no login for {registry_host} (it has: {}); add an \"auths\" entry for \"{registry_host}\"",
                path.display(),
                config.hosts().join(", ")
            ),
        };
    }
    if let Some(path) = env.docker_config.as_deref().filter(|p| p.is_file()) {
        let config = DockerConfig::load(path)?;
        if let Some(found) = config.lookup(
            registry_host,
            path,
            env,
            Source::DockerConfig(path.to_owned()),
        )? {
            return Ok(found);
        }
    }
    Ok(Resolved::anonymous())
}

fn read_password(stdin: &mut dyn Read) -> Result<Secret> {
    let mut raw = String::new();
    stdin
        .read_to_string(&mut raw)
        .context("cannot read the password from standard input (--password-stdin): pipe it in, e.g. `echo \"$TOKEN\" | cargo xtask push ...`")?;
    let password = raw.strip_suffix('\n').unwrap_or(&raw);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("--password-stdin read an empty password: pipe the password in, e.g. `echo \"$TOKEN\" | cargo xtask push ...`");
    }
    Ok(Secret::new(password))
}

/// The parts of a docker `config.json` that hold logins.
#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// What `docker-credential-<helper> get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl DockerConfig {
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read registry config {}", path.display()))?;
        // serde_json's message can quote the offending value, which may be a password:
        // report only where and what kind of error it is.
        serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "registry config {} is not a docker config.json ({:?} error at line {} column {}); expected {{\"auths\":{{\"HOST\":{{\"username\":\"...\",\"password\":\"...\"}}}}}}",
                path.display(),
                e.classify(),
                e.line(),
                e.column()
            )
        })
    }

    fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .auths
            .keys()
            .chain(self.cred_helpers.keys())
            .map(|k| normalize_host(k))
            .collect();
        hosts.sort();
        hosts.dedup();
        if hosts.is_empty() {
            hosts.push("none".to_owned());
        }
        hosts
    }

    /// docker's order: the host's `credHelpers` entry, then `credsStore`, then the inline
    /// `auths` entry. A helper that knows nothing of the host falls through.
    fn lookup(
        &self,
        host: &str,
        path: &Path,
        env: &Environment,
        inline: Source,
    ) -> Result<Option<Resolved>> {
        let want = normalize_host(host);
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_host(k) == want)
            .map(|(_, v)| v)
            .or(self.creds_store.as_ref());
        if let Some(helper) = helper.filter(|h| !h.is_empty()) {
            if let Some(login) = run_helper(helper, host, path, env)? {
                let source = Source::CredentialHelper {
                    helper: helper.clone(),
                    config: path.to_owned(),
                };
                return Ok(Some(Resolved { source, login }));
            }
        }
        let Some((key, entry)) = self.auths.iter().find(|(k, _)| normalize_host(k) == want) else {
            return Ok(None);
        };
        let where_ = || format!("the \"{key}\" entry of {}", path.display());
        if let Some(token) = entry.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Resolved {
                source: inline,
                login: Login::Bearer(Secret::new(token)),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            if !u.is_empty() && !p.is_empty() {
                let login = Login::Basic {
                    username: u.clone(),
                    password: Secret::new(p.as_str()),
                };
                return Ok(Some(Resolved {
                    source: inline,
                    login,
                }));
            }
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| anyhow!("the \"auth\" field of {} is not base64 of `user:password`; log in again or write \"username\" and \"password\"", where_()))?;
            let Some((u, p)) = decoded.split_once(':') else {
                bail!("the \"auth\" field of {} does not decode to `user:password`; log in again or write \"username\" and \"password\"", where_());
            };
            let login = Login::Basic {
                username: u.to_owned(),
                password: Secret::new(p),
            };
            return Ok(Some(Resolved {
                source: inline,
                login,
            }));
        }
        if entry
            .identitytoken
            .as_deref()
            .is_some_and(|t| !t.is_empty())
        {
            bail!("{} holds an OAuth identity token, which weir cannot exchange; pass a username and password (--username USER --password-stdin) or a `registrytoken`", where_());
        }
        Ok(None)
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `Localhost:5000/` → `localhost:5000`;
/// Docker Hub's aliases all become `docker.io`.
fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

/// The server URL a helper is asked about: Docker Hub's historical one, else the host.
fn helper_server_url(host: &str) -> String {
    if normalize_host(host) == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        host.to_owned()
    }
}

/// Runs `docker-credential-<helper> get` with the server on stdin (never in the arguments).
/// `Ok(None)` when the helper has nothing for this server.
fn run_helper(helper: &str, host: &str, config: &Path, env: &Environment) -> Result<Option<Login>> {
    let program = format!("docker-credential-{helper}");
    let mut cmd = Command::new(&program);
    cmd.arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = &env.helper_path {
        cmd.env("PATH", path);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} names the credential helper `{helper}`, but {program} is not on PATH; install it, or pass --username USER --password-stdin",
            config.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run {program}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(helper_server_url(host).as_bytes())
            .with_context(|| format!("cannot ask {program} for {host}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        // A failing helper prints its reason, never a secret: quote its first line.
        let said = [&out.stdout, &out.stderr]
            .iter()
            .find_map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(|l| crate::display::quote(l, crate::display::QUOTE_LIMIT))
            })
            .unwrap_or_default();
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        bail!("{program} get failed for {host} ({}: {said}); log in again with your helper, or pass --username USER --password-stdin", out.status);
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow!("{program} get printed something that is not its JSON answer ({:?} error at line {} column {})", e.classify(), e.line(), e.column())
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    if answer.username == "<token>" {
        bail!("{program} holds an OAuth identity token for {host}, which weir cannot exchange; pass --username USER --password-stdin");
    }
    Ok(Some(Login::Basic {
        username: answer.username,
        password: Secret::new(answer.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr3t-Pa55";

    fn env_with(config: Option<PathBuf>) -> Environment {
        Environment {
            docker_config: config,
            helper_path: Some(OsString::new()),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn secret_never_prints() {
        let r = Resolved {
            source: Source::Flags,
            login: Login::Basic {
                username: "ci".into(),
                password: Secret::new(PASSWORD),
            },
        };
        for shown in [
            format!("{r:?}"),
            format!("{r:#?}"),
            r.describe(),
            format!("{}", Secret::new(PASSWORD)),
            format!("{:?}", r.registry_auth()),
        ] {
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
        assert!(
            r.describe()
                .contains("user `ci` from --username with --password-stdin"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn flags_read_the_password_from_stdin_and_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "c.json",
            r#"{"auths":{"r.example":{"username":"other","password":"x"}}}"#,
        );
        let args = CredentialArgs {
            username: Some("ci".into()),
            password_stdin: true,
            registry_config: Some(cfg),
        };
        let r = resolve_with(
            &args,
            "r.example",
            &env_with(None),
            &mut format!("{PASSWORD}\r\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.source, Source::Flags);
        assert_eq!(
            r.login,
            Login::Basic {
                username: "ci".into(),
                password: Secret::new(PASSWORD)
            }
        );
    }

    #[test]
    fn empty_stdin_password_is_an_error() {
        let args = CredentialArgs {
            username: Some("ci".into()),
            password_stdin: true,
            registry_config: None,
        };
        let e =
            resolve_with(&args, "r.example", &env_with(None), &mut "\n".as_bytes()).unwrap_err();
        assert!(e.to_string().contains("empty password"), "{e}");
    }

    #[test]
    fn the_seeds_myconfig_and_base64_auth_entries_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("bob:{PASSWORD}"));
        let cfg = write(
            dir.path(),
            "myconfig.json",
            &format!(
                r#"{{"auths":{{"acree-1.cr.example.com":{{"username":"alice","password":"{PASSWORD}"}},"https://localhost:5000/v1/":{{"auth":"{auth}"}}}}}}"#
            ),
        );
        let args = CredentialArgs {
            registry_config: Some(cfg.clone()),
            ..Default::default()
        };
        let a = resolve_with(
            &args,
            "acree-1.cr.example.com",
            &env_with(None),
            &mut "".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            a.login,
            Login::Basic {
                username: "alice".into(),
                password: Secret::new(PASSWORD)
            }
        );
        assert_eq!(a.source, Source::RegistryConfig(cfg.clone()));
        let b = resolve_with(&args, "localhost:5000", &env_with(None), &mut "".as_bytes()).unwrap();
        assert_eq!(
            b.login,
            Login::Basic {
                username: "bob".into(),
                password: Secret::new(PASSWORD)
            }
        );
        let e = resolve_with(
            &args,
            "elsewhere.example",
            &env_with(None),
            &mut "".as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("has no login for elsewhere.example")
                && e.contains("acree-1.cr.example.com"),
            "{e}"
        );
        assert!(!e.contains(PASSWORD), "{e}");
    }

    #[test]
    fn a_malformed_config_does_not_quote_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "c.json",
            &format!(r#"{{"auths":{{"h":"{PASSWORD}"}}}}"#),
        );
        let args = CredentialArgs {
            registry_config: Some(cfg),
            ..Default::default()
        };
        let e = format!(
            "{:#}",
            resolve_with(&args, "h", &env_with(None), &mut "".as_bytes()).unwrap_err()
        );
        assert!(
            e.contains("is not a docker config.json") && !e.contains(PASSWORD),
            "{e}"
        );
    }

    #[test]
    fn docker_config_is_used_then_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "config.json",
            &format!(r#"{{"auths":{{"r.example":{{"registrytoken":"{PASSWORD}"}}}}}}"#),
        );
        let args = CredentialArgs::default();
        let r = resolve_with(
            &args,
            "r.example",
            &env_with(Some(cfg.clone())),
            &mut "".as_bytes(),
        )
        .unwrap();
        assert_eq!(r.login, Login::Bearer(Secret::new(PASSWORD)));
        assert_eq!(r.source, Source::DockerConfig(cfg.clone()));
        let anon = resolve_with(
            &args,
            "other.example",
            &env_with(Some(cfg)),
            &mut "".as_bytes(),
        )
        .unwrap();
        assert_eq!(anon, Resolved::anonymous());
        let missing = resolve_with(
            &args,
            "r.example",
            &env_with(Some(dir.path().join("nope.json"))),
            &mut "".as_bytes(),
        )
        .unwrap();
        assert_eq!(missing, Resolved::anonymous());
    }

    /// A credential helper speaking docker's protocol: reads the server on stdin, knows one.
    fn helper(dir: &Path, name: &str) {
        use std::os::unix::fs::PermissionsExt;
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\nif [ \"$server\" = r.example ]; then\n  printf '{{\"ServerURL\":\"r.example\",\"Username\":\"helped\",\"Secret\":\"{PASSWORD}\"}}'\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
        );
        let p = write(dir, &format!("docker-credential-{name}"), &script);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn cred_helpers_then_creds_store_then_inline_auths() {
        let dir = tempfile::tempdir().unwrap();
        helper(dir.path(), "fake");
        let cfg = write(
            dir.path(),
            "config.json",
            r#"{"credHelpers":{"r.example":"fake"},"credsStore":"fake","auths":{"inline.example":{"username":"u","password":"p"}}}"#,
        );
        let env = Environment {
            docker_config: Some(cfg.clone()),
            helper_path: Some(dir.path().as_os_str().to_owned()),
        };
        let args = CredentialArgs::default();
        let r = resolve_with(&args, "r.example", &env, &mut "".as_bytes()).unwrap();
        assert_eq!(
            r.login,
            Login::Basic {
                username: "helped".into(),
                password: Secret::new(PASSWORD)
            }
        );
        assert_eq!(
            r.source,
            Source::CredentialHelper {
                helper: "fake".into(),
                config: cfg.clone()
            }
        );
        assert!(!format!("{r:?}").contains(PASSWORD));
        // The store knows nothing of inline.example: the inline entry answers.
        let i = resolve_with(&args, "inline.example", &env, &mut "".as_bytes()).unwrap();
        assert_eq!(
            i.login,
            Login::Basic {
                username: "u".into(),
                password: Secret::new("p")
            }
        );
        // A helper that is not installed says so and how to get past it.
        let cfg2 = write(dir.path(), "c2.json", r#"{"credsStore":"absent"}"#);
        let env2 = Environment {
            docker_config: Some(cfg2),
            helper_path: Some(dir.path().as_os_str().to_owned()),
        };
        let e = resolve_with(&args, "r.example", &env2, &mut "".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker-credential-absent is not on PATH"), "{e}");
    }

    /// A helper's words reach the terminal escaped: its failure line, and a user name it hands out.
    #[test]
    fn helper_output_is_escaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = "#!/bin/sh\nread -r server\nif [ \"$server\" = r.example ]; then\n  printf '%s' '{\"Username\":\"u\\u001b[2J\",\"Secret\":\"s\"}'\nelse\n  printf 'broken \\033]0;pwned\\007 \\033[2J'; exit 1\nfi\n";
        let p = write(dir.path(), "docker-credential-evil", script);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = write(dir.path(), "config.json", r#"{"credsStore":"evil"}"#);
        let env = Environment {
            docker_config: Some(cfg),
            helper_path: Some(dir.path().as_os_str().to_owned()),
        };
        let args = CredentialArgs::default();
        let e = format!(
            "{:#}",
            resolve_with(&args, "other.example", &env, &mut "".as_bytes()).unwrap_err()
        );
        assert!(!e.contains('\u{1b}') && !e.contains('\u{7}'), "{e:?}");
        assert!(e.contains("broken \\x1b]0;pwned\\x07 \\x1b[2J"), "{e}");
        let r = resolve_with(&args, "r.example", &env, &mut "".as_bytes()).unwrap();
        assert!(!r.describe().contains('\u{1b}'), "{:?}", r.describe());
        assert!(
            r.describe().contains("user `u\\x1b[2J`"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn hosts_are_matched_like_docker_does() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(
            normalize_host("http://Localhost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(
            helper_server_url("docker.io"),
            "https://index.docker.io/v1/"
        );
    }
}
