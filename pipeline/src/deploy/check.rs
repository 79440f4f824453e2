//! The rules `deploy` checks before it writes anything: Kubernetes names, label keys
//! and values, OCI image references, digests and URLs. Each error names the option,
//! the value and the rule, so the message alone says what to fix.

use anyhow::{bail, Result};

const SUBDOMAIN_RULE: &str = "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters";
const LABEL_RULE: &str = "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns_label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

fn dns_subdomain_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label_ok)
}

/// A resource name (`metadata.name` of a Secret, ConfigMap or custom resource):
/// a DNS-1123 subdomain.
pub fn resource_name(option: &str, value: &str) -> Result<()> {
    if !dns_subdomain_ok(value) {
        bail!("{option} `{value}` {SUBDOMAIN_RULE}");
    }
    Ok(())
}

/// A namespace: a DNS-1123 label.
pub fn namespace(option: &str, value: &str) -> Result<()> {
    if !dns_label_ok(value) {
        bail!("{option} `{value}` {LABEL_RULE}");
    }
    Ok(())
}

/// The name part of a label key, and a label value when not empty: at most 63
/// characters, letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
fn label_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// One `KEY=VALUE` label selector, checked by Kubernetes' rules for label keys
/// (`[prefix/]name`) and values.
pub fn label(option: &str, arg: &str) -> Result<(String, String)> {
    let Some((key, value)) = arg.split_once('=') else {
        bail!("{option} `{arg}` must be KEY=VALUE (e.g. {option} app=details)");
    };
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if !dns_subdomain_ok(prefix) {
                bail!("{option} `{arg}`: label key prefix `{prefix}` {SUBDOMAIN_RULE}");
            }
            name
        }
        None => key,
    };
    if !label_name_ok(name) {
        bail!("{option} `{arg}`: label key `{name}` must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit (an optional DNS-1123 prefix may come before a '/')");
    }
    if !value.is_empty() && !label_name_ok(value) {
        bail!("{option} `{arg}`: label value `{value}` must be empty or at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit");
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// A set of `KEY=VALUE` selectors, each checked, no key twice.
pub fn labels(option: &str, args: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for arg in args {
        let (key, value) = label(option, arg)?;
        if out.iter().any(|(k, _)| *k == key) {
            bail!("{option} `{arg}`: label key `{key}` is given twice; a selector matches one value per key");
        }
        out.push((key, value));
    }
    Ok(out)
}

/// A hex sha256 as Istio and Envoy want it: 64 lowercase hex digits, no prefix.
pub fn sha256_hex(option: &str, value: &str) -> Result<()> {
    if !crate::oci::digest::is_sha256_hex(value) {
        bail!("{option} `{value}` must be a sha256: 64 lowercase hex digits, without the `sha256:` prefix");
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host (what Envoy's `http_uri` and
/// object-storage sources fetch).
pub fn http_url(option: &str, value: &str) -> Result<Url> {
    let (scheme, rest) = if let Some(r) = value.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = value.strip_prefix("http://") {
        ("http", r)
    } else {
        bail!("{option} `{value}` must be an http:// or https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        bail!("{option} `{value}` must not carry credentials in the URL");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port: u16 = match p.parse() {
                Ok(n) if n > 0 => n,
                _ => bail!("{option} `{value}` has an invalid port `{p}`: it must be 1-65535"),
            };
            (h, port)
        }
        _ => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '[' | ']' | ':'));
    if !host_ok {
        bail!("{option} `{value}` has no valid host: hosts are letters, digits, '-' and '.'");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{option} `{value}` must not contain spaces or control characters");
    }
    Ok(Url {
        host: host.to_owned(),
        port,
    })
}

/// The parts of a URL that `deploy` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The host, without port.
    pub host: String,
    /// The port, or the scheme's default.
    pub port: u16,
}

/// An OCI image reference, parsed by the grammar of the distribution project
/// (`[registry[:port]/]path[:tag][@algorithm:hex]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `registry[:port]`, when the reference names one.
    pub registry: Option<String>,
    /// The repository path (`asm/asm-test`).
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:<hex>`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The reference as written, without a scheme.
    pub fn to_reference(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.registry {
            s.push_str(r);
            s.push('/');
        }
        s.push_str(&self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The registry host as credentials are keyed (docker's default when none is named).
    pub fn registry_host(&self) -> &str {
        self.registry.as_deref().unwrap_or("docker.io")
    }

    /// The hex of a `sha256:` digest, when the reference has one.
    pub fn sha256(&self) -> Option<&str> {
        self.digest
            .as_deref()
            .and_then(|d| d.strip_prefix("sha256:"))
    }

    /// The warning a tag-only reference gets: a tag can be moved to another module.
    pub fn tag_warning(&self, option: &str) -> Option<String> {
        if self.digest.is_some() {
            return None;
        }
        let repo = match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        };
        Some(format!(
            "warning: {option} `{}` names a tag, which can later point at another module: pin it by digest: add --pin, or write `{repo}@sha256:...` with the digest `cargo xtask push` printed",
            self.to_reference()
        ))
    }
}

fn registry_ok(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !r.starts_with('[') || h.ends_with(']') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':');
    }
    !host.is_empty()
        && host.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A registry host with an optional port (`registry.example.com:5000`), as pull secrets key it.
pub fn registry_host(option: &str, value: &str) -> Result<()> {
    if !registry_ok(value) {
        bail!("{option} `{value}` must be a registry host name or IP address with an optional :port (e.g. registry.example.com:5000)");
    }
    Ok(())
}

/// Parses and checks an image reference; an `oci://` scheme in front is accepted and dropped.
pub fn image(option: &str, value: &str) -> Result<ImageRef> {
    let rule = |why: &str| -> anyhow::Error {
        anyhow::anyhow!("{option} `{value}` is not a valid OCI image reference: {why} (form: [registry[:port]/]repository[:tag][@sha256:<64 hex>])")
    };
    let s = value.strip_prefix("oci://").unwrap_or(value);
    if s.is_empty() {
        return Err(rule("it is empty"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(rule("it contains spaces or control characters"));
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return Err(rule(&format!("digest `{d}` must be algorithm:hex")));
        };
        if alg != "sha256" {
            return Err(rule(&format!(
                "digest algorithm `{alg}` is not sha256, the one meshes verify"
            )));
        }
        if !crate::oci::digest::is_sha256_hex(hex) {
            return Err(rule(&format!(
                "digest `{d}` must be sha256: followed by 64 lowercase hex digits"
            )));
        }
    }
    // A tag follows the last ':' that comes after the last '/'.
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if last_slash.is_none_or(|s| i > s) => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(rule(&format!(
                "tag `{t}` must be 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )));
        }
    }
    if name.len() > 255 {
        return Err(rule("the name is longer than 255 characters"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    let has_registry = parts.len() > 1
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase()));
    let registry = if has_registry {
        if !registry_ok(first) {
            return Err(rule(&format!(
                "registry `{first}` must be a host name or IP address with an optional :port"
            )));
        }
        parts.remove(0);
        Some(first.to_owned())
    } else {
        None
    };
    for p in &parts {
        if !crate::oci::reference::repository_ok(p) {
            return Err(rule(&format!(
                "repository path component `{p}` must be lowercase letters and digits, separated by '.', '_', '__' or dashes"
            )));
        }
    }
    if tag.is_none() && digest.is_none() {
        return Err(rule("it names neither a tag nor a digest; meshes need one of them (e.g. `:v0.1` or `@sha256:...`)"));
    }
    Ok(ImageRef {
        registry,
        repository: parts.join("/"),
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// push/pull (`oci::reference::Target::parse`) and deploy (`image`) read one grammar:
    /// every reference here gets the same verdict from both.
    #[test]
    fn push_and_deploy_agree_on_references() {
        use crate::oci::reference::Target;
        let hex = "a".repeat(64);
        let table: &[(&str, bool)] = &[
            ("localhost:5000/a..b:v1", false),
            ("localhost:5000/a.b:v1", true),
            ("localhost:5000/a__b/c--d:v1", true),
            ("localhost:5000/a___b:v1", false),
            ("localhost:5000/a._b:v1", false),
            ("localhost:5000/-a:v1", false),
            ("localhost:5000/a-:v1", false),
            ("localhost:5000/A:v1", false),
            ("localhost:5000/a//b:v1", false),
            ("registry.example.com/team/add-header:v1", true),
            ("registry.example.com/team/add-header:.v1", false),
            ("registry.example.com:5000/x@sha256:abc", false),
            ("registry.example.com:5000/x@sha512:abc", false),
        ];
        let pinned = format!("registry.example.com:5000/x@sha256:{hex}");
        let upper = format!("registry.example.com:5000/x@sha256:{}", "A".repeat(64));
        let rows = table
            .iter()
            .map(|&(r, ok)| (r.to_owned(), ok))
            .chain([(pinned, true), (upper, false)]);
        for (reference, ok) in rows {
            let push = Target::parse(&reference).is_ok();
            let deploy = image("--image", &reference).is_ok();
            assert_eq!(
                (push, deploy),
                (ok, ok),
                "{reference}: push {push}, deploy {deploy}, expected {ok}"
            );
        }
    }

    #[test]
    fn names_follow_dns_1123() {
        assert!(resource_name("--name", "details-v1-wasmfiltersample").is_ok());
        assert!(resource_name("--name", "a.b-c").is_ok());
        for bad in ["", "Details", "-a", "a-", "a_b", "a..b", &"a".repeat(254)] {
            let e = resource_name("--name", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("--name `") && e.contains("DNS-1123 subdomain"),
                "{e}"
            );
        }
        assert!(namespace("--namespace", "istio-system").is_ok());
        let e = namespace("--namespace", "a.b").unwrap_err().to_string();
        assert!(e.contains("DNS-1123 label"), "{e}");
        assert!(namespace("--namespace", &"a".repeat(64)).is_err());
    }

    #[test]
    fn labels_follow_kubernetes_rules() {
        assert_eq!(
            label("--selector", "app=details").unwrap(),
            ("app".into(), "details".into())
        );
        assert!(label("--selector", "app.kubernetes.io/name=Details_1").is_ok());
        assert!(label("--selector", "app=").is_ok());
        for (bad, what) in [
            ("app", "KEY=VALUE"),
            ("=x", "label key"),
            ("-app=x", "label key"),
            ("Bad_Prefix/app=x", "prefix"),
            ("app=has space", "label value"),
            ("app=-x", "label value"),
        ] {
            let e = label("--selector", bad).unwrap_err().to_string();
            assert!(e.contains(what), "{bad}: {e}");
        }
        let long = format!("app={}", "v".repeat(64));
        assert!(label("--selector", &long).is_err());
        let e = labels("--selector", &["app=a".into(), "app=b".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn image_references_parse_like_the_distribution_grammar() {
        let r = image(
            "--image",
            "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
        )
        .unwrap();
        assert_eq!(
            r.registry.as_deref(),
            Some("acree-1-registry.cn-hangzhou.cr.aliyuncs.com")
        );
        assert_eq!(r.repository, "asm/asm-test");
        assert_eq!(r.tag.as_deref(), Some("v0.1"));
        assert!(r.tag_warning("--image").is_some());
        let d = format!("localhost:5000/weir/add-header@sha256:{}", "a".repeat(64));
        let r = image("--image", &format!("oci://{d}")).unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.sha256(), Some(&*"a".repeat(64)));
        assert_eq!(r.to_reference(), d);
        assert!(r.tag_warning("--image").is_none());
        assert_eq!(image("--image", "library/envoy:v1").unwrap().registry, None);
        for (bad, what) in [
            ("", "empty"),
            ("reg.io/Asm/x:v1", "path component"),
            ("reg.io/asm/x", "neither a tag nor a digest"),
            ("reg.io/asm/x:", "tag"),
            ("reg.io/asm/x:-v1", "tag"),
            ("reg.io/asm/x@sha256:abc", "64 lowercase hex"),
            ("reg.io/asm/x@md5:abc", "algorithm"),
            ("reg.io:port/x:v1", "registry"),
            ("reg.io/a--b_/x:v1", "path component"),
            ("reg.io/a b:v1", "spaces"),
        ] {
            let e = image("--image", bad).unwrap_err().to_string();
            assert!(e.starts_with("--image `") && e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_and_digests() {
        let u = http_url("--wasm-url", "http://wasmer.istio-system:8081/wasm/x").unwrap();
        assert_eq!(
            u,
            Url {
                host: "wasmer.istio-system".into(),
                port: 8081
            }
        );
        assert_eq!(http_url("--wasm-url", "https://a.com/b").unwrap().port, 443);
        assert!(http_url("--wasm-url", "ftp://a.com/b")
            .unwrap_err()
            .to_string()
            .contains("http://"));
        assert!(http_url("--wasm-url", "http://a.com:0/b")
            .unwrap_err()
            .to_string()
            .contains("port"));
        assert!(http_url("--wasm-url", "http://u:p@a.com/b")
            .unwrap_err()
            .to_string()
            .contains("credentials"));
        assert!(sha256_hex("--sha256", &"0".repeat(64)).is_ok());
        assert!(sha256_hex("--sha256", &"A".repeat(64)).is_err());
        assert!(registry_host("--registry", "reg.example.com:5000").is_ok());
        let e = registry_host("--registry", "reg.example.com/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a registry host"), "{e}");
    }
}
