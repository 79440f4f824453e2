//! `deploy pull-secret`: the `kubernetes.io/dockerconfigjson` Secret a mesh pulls the
//! filter's image with (ASM's `asmwasm-cache` in `istio-system`, seed 000), from the
//! same credential sources as `push`. Its output holds a password, and it says so.

use super::{check, yaml, Labels, Metadata};
use crate::oci::credentials::{self, CredentialArgs, Login};
use anyhow::{bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

/// The input of `cargo xtask deploy pull-secret` (its flags, checked by [`render`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// metadata.name of the Secret (ASM requires asmwasm-cache).
    pub name: String,
    /// metadata.namespace (ASM requires istio-system).
    pub namespace: String,
    /// The registry host (and :port) the secret logs in to.
    pub registry: Option<String>,
    /// Take the registry host from this image reference.
    pub image: Option<String>,
    pub credentials: CredentialArgs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Secret {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    r#type: &'static str,
    data: Labels,
}

/// docker's config.json for one registry: what the kubelet (and ASM's controller) read.
fn dockerconfigjson(host: &str, login: &Login) -> Result<String> {
    let entry = match login {
        Login::Basic { username, password } => serde_json::json!({
            "username": username,
            "password": password.expose(),
            "auth": STANDARD.encode(format!("{username}:{}", password.expose())),
        }),
        Login::Bearer(token) => serde_json::json!({"registrytoken": token.expose()}),
        Login::Anonymous => bail!(
            "no login found for {host}: pass --username USER --password-stdin, or --registry-config FILE, or `docker login {host}` first"
        ),
    };
    Ok(serde_json::json!({"auths": {host: entry}}).to_string())
}

/// Checks `a` and writes the resources as one YAML stream.
pub fn render(a: &Options) -> Result<String> {
    check::resource_name("--name", &a.name)?;
    check::namespace("--namespace", &a.namespace)?;
    let host = match (&a.registry, &a.image) {
        (Some(r), _) => {
            check::registry_host("--registry", r)?;
            r.clone()
        }
        (None, Some(i)) => check::image("--image", i)?.registry_host().to_owned(),
        (None, None) => bail!("one of --registry or --image is required"),
    };
    let resolved = credentials::resolve(&a.credentials, &host)?;
    let config = dockerconfigjson(&host, &resolved.login)?;
    eprintln!(
        "note: this output holds a registry secret ({} for {host}): apply it, don't commit it",
        resolved.describe()
    );
    let secret = Secret {
        api_version: "v1",
        kind: "Secret",
        metadata: Metadata {
            name: a.name.clone(),
            namespace: a.namespace.clone(),
        },
        r#type: "kubernetes.io/dockerconfigjson",
        data: Labels(vec![(".dockerconfigjson".into(), STANDARD.encode(config))]),
    };
    yaml(&secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::credentials::Secret;

    #[test]
    fn dockerconfigjson_matches_docker_login() {
        let login = Login::Basic {
            username: "u".into(),
            password: Secret::new("p"),
        };
        let json: serde_json::Value =
            serde_json::from_str(&dockerconfigjson("reg.io", &login).unwrap()).unwrap();
        assert_eq!(json["auths"]["reg.io"]["auth"], "dTpw");
        assert_eq!(json["auths"]["reg.io"]["password"], "p");
        let e = dockerconfigjson("reg.io", &Login::Anonymous)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no login found for reg.io"), "{e}");
    }
}
