//! `cargo xtask push`: runs [`push::push`] under an upload bar and prints its report.

use anyhow::Result;
use std::io::IsTerminal;

use super::oci::{CredentialFlags, TransportFlags};
use crate::oci::artifact::Format;
use crate::oci::transfer::PushReport;
use crate::push;

const EXAMPLES: &str = "Examples:
  cargo xtask push add-header oci:target/oci:v1
      build add-header and write it to an OCI layout (`skopeo inspect oci:target/oci:v1`)
  cargo xtask push add-header localhost:5000/add-header:v1 --plain-http
      push to a local registry without TLS
  echo \"$TOKEN\" | cargo xtask push add-header registry.example.com/team/add-header:v1 \\
      --username ci --password-stdin --format asm
      the seed's ORAS layout, for ASM
  cargo xtask push my.wasm registry.example.com/team/my:v1 --registry-config myconfig.json --json

Formats:
  universal  two layers (runtime config + module): Istio, Envoy Gateway, Higress [default]
  asm        the seed's `oras push` layout: wasm config + one module layer
  compat     an OCI image whose tar+gzip layer holds plugin.wasm (annotated variant=compat)

Credentials, first found wins: --username with --password-stdin; --registry-config FILE;
$DOCKER_CONFIG/config.json or ~/.docker/config.json (credHelpers, credsStore, auths); anonymous.";

/// Options of `cargo xtask push`.
#[derive(clap::Args, Debug)]
#[command(about = "Push a filter's module to an OCI registry or layout", after_help = EXAMPLES)]
pub struct Args {
    /// A filter under filters/ (built first), or a .wasm file.
    #[arg(value_name = "FILTER|FILE.wasm")]
    pub input: String,
    /// Where to: HOST[:PORT]/REPO[:TAG], or oci:DIR[:TAG] for an OCI image layout directory.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// How to pack the module.
    #[arg(long, value_enum, default_value_t = Format::Universal)]
    pub format: Format,
    /// Root ids for the runtime config (repeatable); default: the filter's, or the file's stem.
    #[arg(long = "root-id", value_name = "ID")]
    pub root_ids: Vec<String>,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub credentials: CredentialFlags,
    #[command(flatten)]
    pub transport: TransportFlags,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let progress = progress_bar(self.json);
        let options = push::Options {
            input: self.input,
            reference: self.reference,
            format: self.format,
            root_ids: self.root_ids,
            credentials: self.credentials.into(),
            transport: self.transport.into(),
        };
        let report = push::push(&options, &progress);
        progress.finish_and_clear();
        let report = report?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_summary(&report);
        }
        Ok(())
    }
}

fn progress_bar(json: bool) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes}")
    {
        bar.set_style(style);
    }
    bar
}

fn print_summary(r: &PushReport) {
    let size = |n: u64| crate::build::human_bytes(n);
    let (done, sent) = if r.reference.starts_with("oci:") {
        ("written", "wrote")
    } else {
        ("uploaded", "sent")
    };
    println!(
        "pushed {} ({}, module {})",
        r.reference,
        r.format,
        size(r.module_size)
    );
    println!("  pinned    {}", r.pinned);
    for b in &r.blobs {
        let what = if b.uploaded { done } else { "already there" };
        println!(
            "  {:<14} {} {:>9}  {what}",
            b.role,
            &b.digest[..b.digest.len().min(19)],
            size(b.size)
        );
    }
    println!("  manifest  {} (tag written last)", size(r.manifest_size));
    println!(
        "  {sent} {} of blobs, skipped {}",
        size(r.uploaded_bytes),
        size(r.skipped_bytes)
    );
    if let Some(c) = &r.credentials {
        println!("  as        {c}");
    }
}
