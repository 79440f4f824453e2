//! The registry flags `push`, `pull` and `deploy` share, and what they become in the library.

use std::path::PathBuf;

use crate::oci::credentials::CredentialArgs;
use crate::oci::registry::TransportArgs;

/// The credential flags shared by `push`, `pull` and `deploy pull-secret`
/// (`#[command(flatten)]` them).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CredentialFlags {
    /// Log in as this user; the password (or token) is read from standard input.
    #[arg(long, requires = "password_stdin", value_name = "USER")]
    pub username: Option<String>,
    /// Read the password for --username from standard input (never pass it as an argument).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// A docker config.json to take the login from: `{"auths":{HOST:{"username","password"}}}`,
    /// `auth` base64 entries, `credsStore`/`credHelpers`.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
}

impl From<CredentialFlags> for CredentialArgs {
    fn from(f: CredentialFlags) -> Self {
        CredentialArgs {
            username: f.username,
            password_stdin: f.password_stdin,
            registry_config: f.registry_config,
        }
    }
}

/// How to reach the registry (flattened into `push` and `pull`).
#[derive(clap::Args, Debug, Clone)]
pub struct TransportFlags {
    /// Use plain HTTP: for a registry without TLS, such as a local one.
    #[arg(long)]
    pub plain_http: bool,
    /// Also trust this PEM CA certificate (a private registry's CA); verification stays on.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for the registry to answer any one request.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Retries of a request that met a 5xx, a 429 or a dropped connection (with backoff).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub retries: u32,
    /// Seconds the whole transfer may take, retries included, however slowly the registry sends.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub deadline: u64,
}

impl From<TransportFlags> for TransportArgs {
    fn from(f: TransportFlags) -> Self {
        TransportArgs {
            plain_http: f.plain_http,
            ca_file: f.ca_file,
            timeout: f.timeout,
            retries: f.retries,
            deadline: f.deadline,
        }
    }
}
