//! One repository in a registry over HTTP(S): HEAD before upload, uploads, the tag, verified
//! pulls; transient failures retried, every other failure explained.

use super::artifact::{Blob, Descriptor, MANIFEST_TYPES};
use super::credentials::Resolved;
use super::digest::Digest;
use super::reference::RegistryRef;
use super::retry::Retry;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError as OciError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use std::path::PathBuf;
use std::time::Duration;

/// The largest blob `pull` downloads.
const MAX_BLOB: u64 = 256 << 20;
/// Upload body pieces, so the progress bar moves.
const PIECE: usize = 64 << 10;

/// How to reach the registry (the CLI's transport flags for `push`, `pull` and `deploy --pin`).
#[derive(Debug, Clone)]
pub struct TransportArgs {
    /// Use plain HTTP: for a registry without TLS, such as a local one.
    pub plain_http: bool,
    /// Also trust this PEM CA certificate (a private registry's CA); verification stays on.
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for the registry to answer any one request.
    pub timeout: u64,
    /// Retries of a request that met a 5xx, a 429 or a dropped connection (with backoff).
    pub retries: u32,
}

/// A repository in a registry, with the login to use.
pub struct Registry {
    client: oci_client::Client,
    target: RegistryRef,
    auth: RegistryAuth,
    tried: String,
    retry: Retry,
    timeout: Duration,
    plain_http: bool,
    progress: ProgressBar,
}

/// What kind of failure an error is, for the message and the retry decision.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Unauthorized,
    Denied,
    NotFound,
    Rejected,
    Timeout,
    Connect,
    Tls,
    Server,
    Dropped,
    Digest,
    Other,
}

impl Registry {
    /// Sets up the client for `target` with `login`; nothing is sent yet.
    pub fn new(
        target: RegistryRef,
        transport: &TransportArgs,
        login: &Resolved,
        progress: ProgressBar,
    ) -> Result<Self> {
        let timeout = Duration::from_secs(transport.timeout.max(1));
        let mut config = ClientConfig {
            protocol: if transport.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            read_timeout: Some(timeout),
            connect_timeout: Some(timeout.min(Duration::from_secs(10))),
            use_monolithic_push: true,
            user_agent: concat!("weir-xtask/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        if let Some(ca) = &transport.ca_file {
            let data = std::fs::read(ca)
                .with_context(|| format!("cannot read --ca-file {}", ca.display()))?;
            if !data.windows(11).any(|w| w == b"-----BEGIN ") {
                bail!("--ca-file {} is not a PEM certificate (no -----BEGIN line); convert it with `openssl x509 -inform der -in FILE -out ca.pem`", ca.display());
            }
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        // try_from, not new: `new` silently falls back to a default client, dropping the CA.
        let client = oci_client::Client::try_from(config)
            .map_err(|e| anyhow!("cannot set up the HTTPS client for {}: {e}", target.host))?;
        Ok(Registry {
            client,
            auth: login.registry_auth(),
            tried: login.describe(),
            retry: Retry::new(transport.retries),
            timeout,
            plain_http: transport.plain_http,
            progress,
            target,
        })
    }

    /// The reference this repository was named by.
    pub fn target(&self) -> &RegistryRef {
        &self.target
    }

    /// What credentials are used, without secrets.
    pub fn tried(&self) -> &str {
        &self.tried
    }

    fn tagged(&self, tag: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(
            self.target.host.clone(),
            self.target.repository.clone(),
            tag.to_owned(),
        )
    }

    /// Presents the login (a bearer-token registry hands out its token here).
    pub async fn authenticate(&self, push: bool) -> Result<()> {
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let r = self.target.to_oci();
        let step = "logging in";
        self.retry
            .run(
                || self.client.auth(&r, &self.auth, op),
                transient,
                |n, e, w| self.note_retry(step, n, e, w),
            )
            .await
            .map(|_| ())
            .map_err(|(e, n)| self.fail(step, e, n))
    }

    /// True when the repository already has the blob (one HEAD request).
    pub async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        let r = self.tagged(self.target.tag_or_default());
        let step = format!(
            "checking whether it has the {} {}",
            blob.role,
            blob.digest.short()
        );
        self.retry
            .run(
                || self.client.blob_exists(&r, blob.digest.as_str()),
                transient,
                |n, e, w| self.note_retry(&step, n, e, w),
            )
            .await
            .map_err(|(e, n)| self.fail(&step, e, n))
    }

    /// Uploads a blob (POST, then one PUT with the body), retrying transient failures.
    pub async fn put_blob(&self, blob: &Blob) -> Result<()> {
        let r = self.tagged(self.target.tag_or_default());
        let step = format!("uploading the {} {}", blob.role, blob.digest.short());
        let data = bytes::Bytes::from(blob.bytes.clone());
        let start = self.progress.position();
        self.retry
            .run(
                || {
                    self.progress.set_position(start);
                    let bar = self.progress.clone();
                    let pieces: Vec<_> = (0..data.len())
                        .step_by(PIECE)
                        .map(|i| data.slice(i..data.len().min(i + PIECE)))
                        .collect();
                    let body = futures_util::stream::iter(pieces.into_iter().map(move |p| {
                        bar.inc(p.len() as u64);
                        Ok(p)
                    }));
                    self.client.push_blob_stream(
                        &r,
                        body,
                        blob.digest.as_str(),
                        Some(data.len() as u64),
                    )
                },
                transient,
                |n, e, w| self.note_retry(&step, n, e, w),
            )
            .await
            .map(|_| ())
            .map_err(|(e, n)| self.fail(&step, e, n))
    }

    /// Writes the manifest under `tag`: the step that makes the artifact visible.
    pub async fn put_manifest(&self, tag: &str, manifest: &[u8], media_type: &str) -> Result<()> {
        let r = self.tagged(tag);
        let step = format!("writing tag {tag} (manifest PUT)");
        let body = bytes::Bytes::from(manifest.to_vec());
        self.retry
            .run(
                || async {
                    let content_type = media_type
                        .parse()
                        .map_err(|_| OciError::UnsupportedMediaTypeError(media_type.to_owned()))?;
                    self.client
                        .push_manifest_raw(&r, body.clone(), content_type)
                        .await
                },
                transient,
                |n, e, w| self.note_retry(&step, n, e, w),
            )
            .await
            .map(|_| ())
            .map_err(|(e, n)| {
                // A refusal or an unreachable registry wrote nothing; a PUT whose answer never
                // came (dropped, timed out) may have been stored all the same.
                let lost = matches!(kind(&e), Kind::Dropped | Kind::Timeout | Kind::Other);
                let err = self.fail(&step, e, n);
                if lost {
                    err.context(TagMaybeWritten(tag.to_owned()))
                } else {
                    err
                }
            })
    }

    /// The manifest the reference names, with its digest verified.
    pub async fn get_manifest(&self) -> Result<(Vec<u8>, Digest)> {
        let r = self.target.to_oci();
        let step = format!("reading the manifest of {}", self.target);
        let (bytes, said) = self
            .retry
            .run(
                || {
                    self.client
                        .pull_manifest_raw(&r, &self.auth, MANIFEST_TYPES)
                },
                transient,
                |n, e, w| self.note_retry(&step, n, e, w),
            )
            .await
            .map_err(|(e, n)| self.fail(&step, e, n))?;
        let actual = Digest::of(&bytes);
        if let Some(want) = &self.target.digest {
            want.verify(&bytes, None, &format!("the manifest of {}", self.target))?;
        }
        // oci-client checked its Docker-Content-Digest header already; check again here, where
        // the rule "every digest is verified" lives.
        if said.starts_with("sha256:") && said != actual.as_str() {
            bail!("{} sent a manifest with digest {actual} but said {said}: refusing it (corrupted or tampered content)", self.target.host);
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Downloads a blob the manifest names and verifies its size and digest.
    pub async fn get_blob(&self, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
        let digest = Digest::parse(&desc.digest).with_context(|| {
            format!(
                "the manifest of {} names its {what} by a bad digest",
                self.target
            )
        })?;
        if desc.size > MAX_BLOB {
            bail!(
                "the {what} of {} is {} bytes, more than the {MAX_BLOB} weir downloads",
                self.target,
                desc.size
            );
        }
        let r = self.target.to_oci();
        let step = format!("downloading the {what} {}", digest.short());
        let bytes = self
            .retry
            .run(
                || async {
                    let mut out = Vec::with_capacity(desc.size as usize);
                    self.client
                        .pull_blob(&r, digest.as_str(), &mut out)
                        .await
                        .map(|()| out)
                },
                transient,
                |n, e, w| self.note_retry(&step, n, e, w),
            )
            .await
            .map_err(|(e, n)| self.fail(&step, e, n))?;
        digest.verify(
            &bytes,
            Some(desc.size),
            &format!("the {what} from {}", self.target.repository_url()),
        )?;
        Ok(bytes)
    }

    fn note_retry(&self, step: &str, retry: u32, e: &OciError, wait: Duration) {
        self.progress.suspend(|| {
            eprintln!(
                "weir: {} failed while {step} ({}); retry {retry} of {} in {:.1}s",
                self.target.host,
                cause(e),
                self.retry.attempts - 1,
                wait.as_secs_f64()
            );
        });
    }

    /// The message for a failure: names the registry, the step, and the fix.
    fn fail(&self, step: &str, e: OciError, tries: u32) -> anyhow::Error {
        let host = &self.target.host;
        let repo = self.target.repository_url();
        let tried = &self.tried;
        let after = if tries > 1 {
            format!(" after {tries} tries")
        } else {
            String::new()
        };
        let cause = cause(&e);
        match kind(&e) {
            Kind::Unauthorized => anyhow!(
                "{host} refused the login while {step} (401 unauthorized); tried {tried}; log in with `--username USER --password-stdin`, `--registry-config FILE` or `docker login {host}`"
            ),
            Kind::Denied => anyhow!(
                "{host} denied access to {repo} while {step} (403 forbidden) for {tried}; check that this account may use {repo}"
            ),
            Kind::NotFound if step.starts_with("reading") || step.starts_with("downloading") => anyhow!(
                "{host} has no tag or repository {} while {step} ({cause}); check the reference, or push it first with `cargo xtask push FILTER {}`",
                self.target,
                self.target
            ),
            Kind::NotFound => anyhow!(
                "{host} has no repository {repo} while {step} ({cause}); create it in the registry first (this registry does not create repositories on push), or check the name"
            ),
            // A TLS port answers plain HTTP with a bare 400, not the registry's JSON errors.
            Kind::Rejected if self.plain_http && status(&e) == Some(400) && !has_registry_errors(&e) => anyhow!(
                "{host} answered 400 bad request to plain HTTP while {step}; it probably speaks HTTPS: drop --plain-http"
            ),
            Kind::Rejected => anyhow!(
                "{host} rejected the request while {step} ({cause}); if it names a media type, this registry may not accept custom wasm artifacts: try --format compat"
            ),
            Kind::Timeout => anyhow!(
                "{host} did not answer within {}s while {step}{after}; check the network, or raise --timeout",
                self.timeout.as_secs()
            ),
            Kind::Connect => anyhow!(
                "cannot connect to {host} while {step}{after} ({cause}); check that the registry runs there and the host:port is right"
            ),
            Kind::Tls => anyhow!(
                "TLS with {host} failed while {step} ({cause}); pass --ca-file FILE for a private CA, or --plain-http for a registry without TLS"
            ),
            Kind::Server => anyhow!("{host} failed while {step}{after} ({cause}); the registry is unwell: run the command again later"),
            Kind::Dropped => anyhow!("{host} dropped the connection while {step}{after} ({cause}); run the command again"),
            Kind::Digest => anyhow!("{host} sent content that does not match its digest while {step}{after} ({cause}); refusing it"),
            Kind::Other => anyhow!("{host} failed while {step}{after}: {cause}"),
        }
    }
}

/// Marks a failed manifest PUT whose answer never arrived: the registry may have written the tag.
#[derive(Debug)]
pub struct TagMaybeWritten(pub String);

impl std::fmt::Display for TagMaybeWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tag {} may or may not point at the new manifest (the registry's answer to the manifest PUT never arrived)",
            self.0
        )
    }
}

impl std::error::Error for TagMaybeWritten {}

/// The HTTP status an error carries, if any.
fn status(e: &OciError) -> Option<u16> {
    match e {
        OciError::ServerError { code, .. } => Some(*code),
        OciError::UnauthorizedError { .. } | OciError::AuthenticationFailure(_) => Some(401),
        OciError::RequestError(r) => r.status().map(|s| s.as_u16()),
        OciError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|err| match err.code {
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::NameUnknown
                | OciErrorCode::ManifestUnknown
                | OciErrorCode::BlobUnknown
                | OciErrorCode::NotFound => Some(404),
                OciErrorCode::Toomanyrequests => Some(429),
                _ => None,
            })
        }
        _ => None,
    }
}

/// True when the registry answered with its JSON error envelope (so it did understand us).
fn has_registry_errors(e: &OciError) -> bool {
    match e {
        OciError::RegistryError { .. } => true,
        OciError::ServerError { message, .. } => message.contains("\"errors\""),
        _ => false,
    }
}

fn is_tls(e: &OciError) -> bool {
    let text = chain(e).to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "invalidcontenttype",
        "handshake",
        "unknownissuer",
        "corrupt message",
    ]
    .iter()
    .any(|w| text.contains(w))
}

fn kind(e: &OciError) -> Kind {
    if let OciError::DigestError(_) = e {
        return Kind::Digest;
    }
    match status(e) {
        Some(401) => return Kind::Unauthorized,
        Some(403) => return Kind::Denied,
        Some(404) => return Kind::NotFound,
        Some(s) if s >= 500 || s == 429 || s == 408 => return Kind::Server,
        Some(_) => return Kind::Rejected,
        None => {}
    }
    match e {
        OciError::RegistryError { .. }
        | OciError::UnsupportedMediaTypeError(_)
        | OciError::ManifestParsingError(_)
        | OciError::VersionedParsingError(_) => Kind::Rejected,
        OciError::RequestError(r) if r.is_timeout() => Kind::Timeout,
        OciError::RequestError(_) if is_tls(e) => Kind::Tls,
        OciError::RequestError(r) if r.is_connect() => Kind::Connect,
        OciError::RequestError(r) if r.is_request() || r.is_body() || r.is_decode() => {
            Kind::Dropped
        }
        OciError::IoError(_) => Kind::Dropped,
        _ => Kind::Other,
    }
}

/// Worth another try: the registry or the connection failed in passing.
fn transient(e: &OciError) -> bool {
    matches!(
        kind(e),
        Kind::Server | Kind::Dropped | Kind::Timeout | Kind::Connect | Kind::Digest
    )
}

/// The error and its sources on one line (reqwest hides the useful part in `source`).
fn chain(e: &OciError) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A short cause for messages: the status and the registry's words, or the transport error.
fn cause(e: &OciError) -> String {
    let text = match e {
        OciError::ServerError { code, message, .. } => format!("HTTP {code}: {}", message.trim()),
        OciError::RegistryError { envelope, .. } => {
            let parts: Vec<String> = envelope
                .errors
                .iter()
                .map(|x| format!("{}: {}", serde_json::to_string(&x.code).unwrap_or_default().trim_matches('"'), x.message))
                .collect();
            parts.join("; ")
        }
        _ => chain(e),
    };
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}...", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_kind_and_retry() {
        let server = |code| OciError::ServerError {
            code,
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(kind(&server(503)), Kind::Server);
        assert!(transient(&server(503)) && transient(&server(429)));
        assert_eq!(kind(&server(401)), Kind::Unauthorized);
        assert!(!transient(&server(401)) && !transient(&server(403)) && !transient(&server(404)));
        assert_eq!(kind(&server(415)), Kind::Rejected);
        let env: oci_client::errors::OciEnvelope = serde_json::from_str(r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#).unwrap();
        let e = OciError::RegistryError {
            envelope: env,
            url: "u".into(),
        };
        assert_eq!(kind(&e), Kind::NotFound);
        assert!(
            cause(&e).contains("NAME_UNKNOWN: repository name not known"),
            "{}",
            cause(&e)
        );
    }
}
