//! One repository in a registry over HTTP(S): HEAD before upload, uploads, the tag, verified
//! pulls; transient failures retried, every other failure explained.
//!
//! Every answer is read with a bound: a manifest up to [`MAX_MANIFEST`], a blob up to the size
//! its descriptor declares (stopping at the first byte past it), an error or token answer up to
//! [`MAX_ANSWER`]; and a whole push or pull ends at `--deadline`. So a registry that lies about
//! sizes or drips bytes costs at most a bounded amount of memory and time. Content that does not
//! match its digest or size is refused at once, never retried. The HTTP is weir's own (reqwest)
//! rather than oci-client's, which reads every body whole.

use super::artifact::{Blob, Descriptor, MANIFEST_TYPES};
use super::credentials::{Login, Resolved};
use super::digest::Digest;
use super::reference::RegistryRef;
use super::retry::Retry;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use oci_client::errors::{OciDistributionError as OciError, OciEnvelope, OciErrorCode};
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode, Url};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The largest blob `pull` downloads.
const MAX_BLOB: u64 = 256 << 20;
/// The largest manifest read (containerd and oras stop at 4 MiB too).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The most of an error answer read (its first [`crate::display::QUOTE_LIMIT`] characters are quoted).
const MAX_ANSWER: u64 = 64 << 10;
/// The largest token-server answer read (a JWT with its certificate chain is a few KiB).
const MAX_TOKEN: u64 = 1 << 20;
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
    /// Seconds the whole transfer may take, retries included, however slowly the registry sends.
    pub deadline: u64,
}

/// A repository in a registry, with the login to use.
pub struct Registry {
    http: reqwest::Client,
    target: RegistryRef,
    login: Login,
    /// The `Authorization` value `authenticate` settled on (marked sensitive; never printed).
    authorization: Mutex<Option<HeaderValue>>,
    tried: String,
    retry: Retry,
    timeout: Duration,
    deadline: Duration,
    deadline_at: tokio::time::Instant,
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
    /// Sets up the client for `target` with `login`; nothing is sent yet. The `--deadline`
    /// clock starts here.
    pub fn new(
        target: RegistryRef,
        transport: &TransportArgs,
        login: &Resolved,
        progress: ProgressBar,
    ) -> Result<Self> {
        let timeout = Duration::from_secs(transport.timeout.max(1));
        let deadline = Duration::from_secs(transport.deadline.max(1));
        let mut builder = reqwest::Client::builder()
            .read_timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("weir-xtask/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &transport.ca_file {
            let data = std::fs::read(ca)
                .with_context(|| format!("cannot read --ca-file {}", ca.display()))?;
            if !data.windows(11).any(|w| w == b"-----BEGIN ") {
                bail!("--ca-file {} is not a PEM certificate (no -----BEGIN line); convert it with `openssl x509 -inform der -in FILE -out ca.pem`", ca.display());
            }
            let cert = reqwest::Certificate::from_pem(&data).map_err(|e| {
                anyhow!("--ca-file {} is not a PEM certificate ({e})", ca.display())
            })?;
            builder = builder.tls_certs_merge([cert]);
        }
        let http = builder
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTPS client for {}: {e}", target.host))?;
        Ok(Registry {
            http,
            login: login.login.clone(),
            authorization: Mutex::new(None),
            tried: login.describe(),
            retry: Retry::new(transport.retries),
            timeout,
            deadline,
            deadline_at: tokio::time::Instant::now() + deadline,
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

    /// `scheme://host`: Docker Hub's API lives on index.docker.io, as oci-client resolves it.
    fn origin(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        let host = if self.target.host == "docker.io" {
            "index.docker.io"
        } else {
            &self.target.host
        };
        format!("{scheme}://{host}")
    }

    /// `scheme://host/v2/REPO/TAIL`.
    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.origin(), self.target.repository)
    }

    /// Sends `req` with the login `authenticate` chose, when it goes to the registry itself
    /// (never to another host an upload `Location` names).
    async fn send(&self, req: reqwest::RequestBuilder, url: &Url) -> Result<Response, OciError> {
        let same_origin = Url::parse(&self.origin()).is_ok_and(|o| o.origin() == url.origin());
        let auth = self.authorization.lock().ok().and_then(|a| a.clone());
        let req = match auth {
            Some(value) if same_origin => req.header(AUTHORIZATION, value),
            _ => req,
        };
        req.send().await.map_err(request_error)
    }

    /// Runs the retried `work` under the overall `--deadline`.
    async fn in_time<T>(
        &self,
        step: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout_at(self.deadline_at, work).await {
            Ok(done) => done,
            Err(_) => Err(DeadlinePassed(format!(
                "{} did not finish while {step} within the --deadline of {}s (retries included); the registry or the network is too slow: run the command again, or raise --deadline",
                self.target.host,
                self.deadline.as_secs()
            ))
            .into()),
        }
    }

    /// Presents the login: asks `/v2/` which scheme the registry wants, and for a bearer-token
    /// registry exchanges the login for a token at the realm it names.
    pub async fn authenticate(&self, push: bool) -> Result<()> {
        let step = "logging in";
        self.in_time(step, async {
            self.retry
                .run(
                    || self.login_once(push),
                    transient,
                    |n, e, w| self.note_retry(step, n, e, w),
                )
                .await
                .map_err(|(e, n)| self.fail(step, e, n))
        })
        .await
    }

    async fn login_once(&self, push: bool) -> Result<(), OciError> {
        let value = match &self.login {
            Login::Bearer(token) => Some(format!("Bearer {}", token.expose())),
            _ => {
                let url = parse_url(&format!("{}/v2/", self.origin()))?;
                let res = self
                    .http
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(request_error)?;
                let challenge = res
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match (res.status(), challenge) {
                    (StatusCode::UNAUTHORIZED, Some(c))
                        if c.trim_start().to_ascii_lowercase().starts_with("bearer") =>
                    {
                        drop(res);
                        Some(format!("Bearer {}", self.token(&c, push).await?))
                    }
                    // No bearer challenge: basic auth if there is a login. Any other answer
                    // (a 404, a 5xx) is left for the real request to meet and explain.
                    _ => {
                        drop(res);
                        self.basic()
                    }
                }
            }
        };
        let value = match value {
            Some(v) => {
                let mut v = HeaderValue::from_str(&v).map_err(|_| {
                    OciError::AuthenticationFailure(
                        "the login holds a character HTTP headers cannot carry".into(),
                    )
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        if let Ok(mut a) = self.authorization.lock() {
            *a = value;
        }
        Ok(())
    }

    /// `Basic base64(user:password)` for a basic login.
    fn basic(&self) -> Option<String> {
        use base64::Engine;
        match &self.login {
            Login::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            )),
            _ => None,
        }
    }

    /// [`Self::basic`] as a header value marked sensitive.
    fn basic_header(&self) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&self.basic()?).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// A bearer token from the realm of `challenge` (`Bearer realm="…",service="…"`), for pull
    /// (and push) on this repository; the login goes to the realm as basic auth.
    async fn token(&self, challenge: &str, push: bool) -> Result<String, OciError> {
        let params = challenge_params(challenge);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                OciError::AuthenticationFailure(
                    "the registry asked for a bearer token but named no realm".into(),
                )
            })?;
        let mut url = parse_url(&realm)?;
        // An HTTPS registry may not send the login to a plain-HTTP realm.
        if url.scheme() != "https" && !self.plain_http {
            return Err(OciError::AuthenticationFailure(format!(
                "the registry names a token realm that is not HTTPS ({}); the login is not sent there",
                crate::display::quote(&bare(&realm), 200)
            )));
        }
        let actions = if push { "pull,push" } else { "pull" };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "scope",
                &format!("repository:{}:{actions}", self.target.repository),
            );
            if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                q.append_pair("service", service);
            }
        }
        let mut req = self.http.get(url);
        if let Some(basic) = self.basic_header() {
            req = req.header(AUTHORIZATION, basic);
        }
        let res = req.send().await.map_err(request_error)?;
        if !res.status().is_success() {
            let status = res.status();
            let body = read_prefix(res, MAX_ANSWER).await;
            let said = crate::display::quote(
                String::from_utf8_lossy(&body).trim(),
                crate::display::QUOTE_LIMIT,
            );
            return Err(match status.as_u16() {
                401 | 403 => OciError::AuthenticationFailure(format!(
                    "the token server answered {status}: {said}"
                )),
                code => OciError::ServerError {
                    code,
                    url: bare(&realm),
                    message: said,
                },
            });
        }
        let body = read_bounded(res, MAX_TOKEN, "the token server's answer").await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            OciError::RegistryTokenDecodeError(format!(
                "not JSON ({:?} error at line {})",
                e.classify(),
                e.line()
            ))
        })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                OciError::RegistryTokenDecodeError(
                    "the token server's answer holds no token".into(),
                )
            })
    }

    /// True when the repository already has the blob (one HEAD request).
    pub async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        let step = format!(
            "checking whether it has the {} {}",
            blob.role,
            blob.digest.short()
        );
        let url = self.url(&format!("blobs/{}", blob.digest));
        self.in_time(&step, async {
            self.retry
                .run(
                    || async {
                        let url = parse_url(&url)?;
                        let res = self.send(self.http.head(url.clone()), &url).await?;
                        match res.status() {
                            s if s.is_success() => Ok(true),
                            StatusCode::NOT_FOUND => Ok(false),
                            _ => Err(error_of(res).await),
                        }
                    },
                    transient,
                    |n, e, w| self.note_retry(&step, n, e, w),
                )
                .await
                .map_err(|(e, n)| self.fail(&step, e, n))
        })
        .await
    }

    /// Uploads a blob (POST, then one PUT with the body), retrying transient failures.
    pub async fn put_blob(&self, blob: &Blob) -> Result<()> {
        let step = format!("uploading the {} {}", blob.role, blob.digest.short());
        let data = bytes::Bytes::from(blob.bytes.clone());
        let start = self.progress.position();
        self.in_time(&step, async {
            self.retry
                .run(
                    || async {
                        self.progress.set_position(start);
                        let post = parse_url(&self.url("blobs/uploads/"))?;
                        let res = self
                            .send(
                                self.http.post(post.clone()).header(CONTENT_LENGTH, 0),
                                &post,
                            )
                            .await?;
                        if res.status() != StatusCode::ACCEPTED {
                            return Err(error_of(res).await);
                        }
                        let location = res
                            .headers()
                            .get(LOCATION)
                            .and_then(|l| l.to_str().ok())
                            .ok_or(OciError::RegistryNoLocationError)?;
                        let mut put = res.url().join(location).map_err(|_| {
                            OciError::UrlParseError("the upload Location header".into())
                        })?;
                        drop(res);
                        put.query_pairs_mut()
                            .append_pair("digest", blob.digest.as_str());
                        let bar = self.progress.clone();
                        let pieces: Vec<_> = (0..data.len())
                            .step_by(PIECE)
                            .map(|i| data.slice(i..data.len().min(i + PIECE)))
                            .collect();
                        let body = futures_util::stream::iter(pieces.into_iter().map(move |p| {
                            bar.inc(p.len() as u64);
                            Ok::<_, std::io::Error>(p)
                        }));
                        let req = self
                            .http
                            .put(put.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, data.len())
                            .body(reqwest::Body::wrap_stream(body));
                        let res = self.send(req, &put).await?;
                        if !res.status().is_success() {
                            return Err(error_of(res).await);
                        }
                        Ok(())
                    },
                    transient,
                    |n, e, w| self.note_retry(&step, n, e, w),
                )
                .await
                .map_err(|(e, n)| self.fail(&step, e, n))
        })
        .await
    }

    /// Writes the manifest under `tag`: the step that makes the artifact visible.
    pub async fn put_manifest(&self, tag: &str, manifest: &[u8], media_type: &str) -> Result<()> {
        let step = format!("writing tag {tag} (manifest PUT)");
        let body = bytes::Bytes::from(manifest.to_vec());
        let url = self.url(&format!("manifests/{tag}"));
        let done = self
            .in_time(&step, async {
                self.retry
                    .run(
                        || async {
                            let url = parse_url(&url)?;
                            let req = self
                                .http
                                .put(url.clone())
                                .header(CONTENT_TYPE, media_type)
                                .body(body.clone());
                            let res = self.send(req, &url).await?;
                            if !res.status().is_success() {
                                return Err(error_of(res).await);
                            }
                            Ok(())
                        },
                        transient,
                        |n, e, w| self.note_retry(&step, n, e, w),
                    )
                    .await
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
            })
            .await;
        // The deadline may have cut the PUT short after the registry stored it.
        done.map_err(|e| match e.downcast_ref::<DeadlinePassed>() {
            Some(_) => e.context(TagMaybeWritten(tag.to_owned())),
            None => e,
        })
    }

    /// The manifest the reference names (at most [`MAX_MANIFEST`] bytes), with its digest verified.
    pub async fn get_manifest(&self) -> Result<(Vec<u8>, Digest)> {
        let step = format!("reading the manifest of {}", self.target);
        let reference = match &self.target.digest {
            Some(d) => d.to_string(),
            None => self.target.tag_or_default().to_owned(),
        };
        let url = self.url(&format!("manifests/{reference}"));
        let (bytes, said) = self
            .in_time(&step, async {
                self.retry
                    .run(
                        || async {
                            let url = parse_url(&url)?;
                            let req = self
                                .http
                                .get(url.clone())
                                .header(ACCEPT, MANIFEST_TYPES.join(", "));
                            let res = self.send(req, &url).await?;
                            if res.status() != StatusCode::OK {
                                return Err(error_of(res).await);
                            }
                            let said = res
                                .headers()
                                .get("docker-content-digest")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                                .unwrap_or_default();
                            let body = read_bounded(res, MAX_MANIFEST, "the manifest").await?;
                            Ok((body, said))
                        },
                        transient,
                        |n, e, w| self.note_retry(&step, n, e, w),
                    )
                    .await
                    .map_err(|(e, n)| self.fail(&step, e, n))
            })
            .await?;
        let actual = Digest::of(&bytes);
        if let Some(want) = &self.target.digest {
            want.verify(&bytes, None, &format!("the manifest of {}", self.target))?;
        }
        // The registry's Docker-Content-Digest header must agree with what it sent.
        if said.starts_with("sha256:") && said != actual.as_str() {
            bail!(
                "{} sent a manifest with digest {actual} but said {}: refusing it (corrupted or tampered content)",
                self.target.host,
                crate::display::quote(&said, 80)
            );
        }
        Ok((bytes, actual))
    }

    /// Downloads a blob the manifest names, reading no byte past the size it declares, and
    /// verifies its size and digest.
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
        let step = format!("downloading the {what} {}", digest.short());
        let url = self.url(&format!("blobs/{digest}"));
        let bytes = self
            .in_time(&step, async {
                self.retry
                    .run(
                        || async {
                            let url = parse_url(&url)?;
                            let res = self.send(self.http.get(url.clone()), &url).await?;
                            if res.status() != StatusCode::OK {
                                return Err(error_of(res).await);
                            }
                            read_verified(res, &digest, desc.size, what).await
                        },
                        transient,
                        |n, e, w| self.note_retry(&step, n, e, w),
                    )
                    .await
                    .map_err(|(e, n)| self.fail(&step, e, n))
            })
            .await?;
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
            // The token exchange failed, or was refused by weir: its reason is worth printing.
            Kind::Unauthorized if matches!(e, OciError::AuthenticationFailure(_)) => anyhow!(
                "{host} refused the login while {step} ({cause}); tried {tried}; log in with `--username USER --password-stdin`, `--registry-config FILE` or `docker login {host}`"
            ),
            Kind::Unauthorized => anyhow!(
                "{host} refused the login while {step} (401 unauthorized); tried {tried}; log in with `--username USER --password-stdin`, `--registry-config FILE` or `docker login {host}`"
            ),
            Kind::Denied => anyhow!(
                "{host} denied access to {repo} while {step} (403 forbidden) for {tried}; check that this account may use {repo}"
            ),
            Kind::NotFound if step.starts_with("reading") || step.starts_with("downloading") => anyhow!(
                "{host} has no tag or repository {} while {step} ({}); check the reference, or push it first with `cargo xtask push FILTER {}`",
                not_found(&cause),
                self.target,
                self.target
            ),
            Kind::NotFound => anyhow!(
                "{host} has no repository {repo} while {step} ({}); create it in the registry first (this registry does not create repositories on push), or check the name",
                not_found(&cause)
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
            Kind::Digest => anyhow!("{host} sent content that does not match its digest or declared size while {step}{after} ({cause}); refusing it, without retrying"),
            Kind::Other => anyhow!("{host} failed while {step}{after}: {cause}"),
        }
    }
}

/// A 404's cause with its status, which a registry's JSON error (`NAME_UNKNOWN: …`) leaves out.
fn not_found(cause: &str) -> String {
    if cause.starts_with("HTTP 404") {
        cause.to_owned()
    } else {
        format!("404 not found: {cause}")
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
        // Content that is not what was declared: a lie or corruption, the same on a second try.
        OciError::SpecViolationError(_) => Kind::Digest,
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
        Kind::Server | Kind::Dropped | Kind::Timeout | Kind::Connect
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
                .map(|x| {
                    format!(
                        "{}: {}",
                        serde_json::to_string(&x.code)
                            .unwrap_or_default()
                            .trim_matches('"'),
                        x.message
                    )
                })
                .collect();
            parts.join("; ")
        }
        _ => chain(e),
    };
    // The registry's words: one line, bounded, with no control character left to reach a terminal.
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::display::quote(&one_line, crate::display::QUOTE_LIMIT)
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

    #[test]
    fn content_that_lies_is_never_retried() {
        let digest = OciError::from(oci_client::errors::DigestError::VerificationError {
            expected: "sha256:aa".into(),
            actual: "sha256:bb".into(),
        });
        let size = OciError::SpecViolationError("the registry sent more".into());
        for e in [digest, size] {
            assert_eq!(kind(&e), Kind::Digest);
            assert!(!transient(&e), "{e}");
        }
    }

    #[test]
    fn causes_are_escaped_and_bounded() {
        let e = OciError::ServerError {
            code: 500,
            url: "u".into(),
            message: format!("no\u{1b}]0;t\u{7}\u{1b}[2J{}", "y".repeat(100_000)),
        };
        let c = cause(&e);
        assert!(!c.chars().any(crate::display::is_unsafe), "{c:?}");
        assert!(
            c.starts_with("HTTP 500: no\\x1b]0;t\\x07\\x1b[2J") && c.len() < 400,
            "{c}"
        );
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        let p = challenge_params(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".to_owned(), "https://auth.example/token".to_owned()),
                ("service".to_owned(), "registry.example".to_owned()),
                ("scope".to_owned(), "repository:a/b:pull,push".to_owned()),
            ]
        );
        assert_eq!(
            challenge_params("Bearer realm=https://a/t, service=s")[1],
            ("service".to_owned(), "s".to_owned())
        );
        assert!(challenge_params("Bearer").is_empty());
    }
}

/// A transfer stopped by the overall `--deadline` (as opposed to one request's `--timeout`).
#[derive(Debug)]
pub struct DeadlinePassed(String);

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeadlinePassed {}

/// reqwest's error without its URL (a redirect's URL may carry a pre-signed query).
fn request_error(e: reqwest::Error) -> OciError {
    OciError::RequestError(e.without_url())
}

fn parse_url(text: &str) -> Result<Url, OciError> {
    Url::parse(text).map_err(|_| OciError::UrlParseError(crate::display::quote(&bare(text), 200)))
}

/// A URL without its query (which may hold a signature or upload state), for messages.
fn bare(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_owned()
}

/// The body of `res`, refused as soon as it goes past `limit` bytes (announced or sent).
async fn read_bounded(mut res: Response, limit: u64, what: &str) -> Result<Vec<u8>, OciError> {
    let too_large = || {
        OciError::SpecViolationError(format!(
            "{what} is larger than the {limit} bytes weir reads"
        ))
    };
    if res.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(request_error)? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// At most the first `limit` bytes of the body (the rest is never read), for error answers.
async fn read_prefix(mut res: Response, limit: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = (limit as usize).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() as u64 >= limit {
            break;
        }
    }
    out
}

/// A blob's body: exactly `size` bytes hashing to `digest`, read piece by piece, refused at the
/// first byte past `size`; neither a lie about the size nor a wrong digest is worth a retry.
async fn read_verified(
    mut res: Response,
    digest: &Digest,
    size: u64,
    what: &str,
) -> Result<Vec<u8>, OciError> {
    use sha2::Digest as _;
    let lie = |got: String| {
        OciError::SpecViolationError(format!(
            "the manifest says the {what} is {size} bytes, the registry sent {got}"
        ))
    };
    if let Some(n) = res.content_length().filter(|&n| n != size) {
        return Err(lie(format!("a Content-Length of {n}")));
    }
    let mut hasher = sha2::Sha256::new();
    let mut out = Vec::with_capacity(size.min(1 << 20) as usize);
    while let Some(chunk) = res.chunk().await.map_err(request_error)? {
        if (out.len() + chunk.len()) as u64 > size {
            return Err(lie("more".into()));
        }
        hasher.update(&chunk);
        out.extend_from_slice(&chunk);
    }
    if out.len() as u64 != size {
        return Err(lie(format!("{} bytes", out.len())));
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest.as_str() {
        return Err(oci_client::errors::DigestError::VerificationError {
            expected: digest.to_string(),
            actual,
        }
        .into());
    }
    Ok(out)
}

/// The error an unsuccessful answer stands for; at most [`MAX_ANSWER`] bytes of it are read.
async fn error_of(res: Response) -> OciError {
    let status = res.status();
    let url = bare(res.url().as_str());
    let body = read_prefix(res, MAX_ANSWER).await;
    if status == StatusCode::UNAUTHORIZED {
        return OciError::UnauthorizedError { url };
    }
    if status.is_client_error() {
        if let Ok(envelope) = serde_json::from_slice::<OciEnvelope>(&body) {
            return OciError::RegistryError { envelope, url };
        }
    }
    OciError::ServerError {
        code: status.as_u16(),
        url,
        message: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `key="value"` pairs of a `WWW-Authenticate: Bearer …` challenge.
fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let rest = challenge.trim_start();
    let rest = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r);
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_owned()
        };
        out.push((key.trim().to_ascii_lowercase(), value));
    }
    out
}
