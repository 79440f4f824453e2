//! `deploy pull-secret`: the `kubernetes.io/dockerconfigjson` Secret a mesh pulls the
//! filter's image with (ASM's `asmwasm-cache` in `istio-system`, seed 000), from the
//! same credential sources as `push`. Its output holds a password, and it says so.

use super::{check, yaml, Labels, Metadata, OutputArgs};
use crate::oci::credentials::{self, CredentialArgs, Login};
use anyhow::{bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

/// Options of `cargo xtask deploy pull-secret`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  # ASM's asmwasm-cache secret, from your docker login for the image's registry
  cargo xtask deploy pull-secret --image acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1 \\
      | kubectl apply -f -
  echo \"$TOKEN\" | cargo xtask deploy pull-secret --registry ccr.ccs.tencentyun.com \\
      --username ci --password-stdin --name test --namespace default -o secret.yaml

Credentials are found as `cargo xtask push` finds them: --username with --password-stdin,
--registry-config FILE, then your docker config (credHelpers, credsStore, auths).
The output holds the password (base64 is not encryption): keep it out of version control.")]
pub struct Args {
    /// metadata.name of the Secret (ASM requires asmwasm-cache).
    #[arg(long, default_value = "asmwasm-cache")]
    name: String,
    /// metadata.namespace (ASM requires istio-system).
    #[arg(long, default_value = "istio-system")]
    namespace: String,
    /// The registry host (and :port) the secret logs in to.
    #[arg(
        long,
        value_name = "HOST",
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    registry: Option<String>,
    /// Take the registry host from this image reference.
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    #[command(flatten)]
    credentials: CredentialArgs,
    #[command(flatten)]
    pub(super) output: OutputArgs,
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

pub(super) fn render(a: &Args) -> Result<String> {
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
