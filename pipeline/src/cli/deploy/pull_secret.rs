//! The flags of `cargo xtask deploy pull-secret`, turned into [`crate::deploy::pull_secret::Options`].

use super::super::oci::CredentialFlags;
use super::OutputFlags;
use crate::deploy::pull_secret;

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
    pub name: String,
    /// metadata.namespace (ASM requires istio-system).
    #[arg(long, default_value = "istio-system")]
    pub namespace: String,
    /// The registry host (and :port) the secret logs in to.
    #[arg(
        long,
        value_name = "HOST",
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    pub registry: Option<String>,
    /// Take the registry host from this image reference.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    #[command(flatten)]
    pub credentials: CredentialFlags,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl From<Args> for pull_secret::Options {
    fn from(a: Args) -> Self {
        pull_secret::Options {
            name: a.name,
            namespace: a.namespace,
            registry: a.registry,
            image: a.image,
            credentials: a.credentials.into(),
        }
    }
}
