//! Where an artifact goes or comes from: `host[:port]/repo[:tag|@digest]` or `oci:DIR[:TAG]`.

use super::digest::Digest;
use anyhow::{bail, Result};
use std::fmt;
use std::path::PathBuf;

/// The tag used when a reference names none (as docker and oras do).
pub const DEFAULT_TAG: &str = "latest";

/// A parsed `REF` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A repository in a registry.
    Registry(RegistryRef),
    /// An OCI image layout directory on disk.
    Layout(LayoutRef),
}

/// `host[:port]/repo[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`, as written.
    pub host: String,
    /// The repository path (`team/add-header`).
    pub repository: String,
    /// The tag, if written.
    pub tag: Option<String>,
    /// The manifest digest, if written.
    pub digest: Option<Digest>,
}

/// `oci:DIR[:TAG]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutRef {
    /// The layout directory.
    pub dir: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`), if written.
    pub tag: Option<String>,
}

impl Target {
    /// Parses a `REF` argument.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("oci:") {
            return parse_layout(rest).map(Target::Layout);
        }
        parse_registry(text).map(Target::Registry)
    }
}

impl RegistryRef {
    /// The tag to push to or pull from: the written one, else `latest`.
    pub fn tag_or_default(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// `host/repo`.
    pub fn repository_url(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }

    /// `host/repo@sha256:...`: the pinned form meshes should deploy.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.repository_url())
    }

    /// The same reference for oci-client (digest wins over tag, as registries resolve it).
    pub fn to_oci(&self) -> oci_client::Reference {
        match &self.digest {
            Some(d) => oci_client::Reference::with_digest(
                self.host.clone(),
                self.repository.clone(),
                d.to_string(),
            ),
            None => oci_client::Reference::with_tag(
                self.host.clone(),
                self.repository.clone(),
                self.tag_or_default().to_owned(),
            ),
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository_url())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl LayoutRef {
    /// The tag to write or read: the written one, else `latest`.
    pub fn tag_or_default(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for LayoutRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci:{}", self.dir.display())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

const HELP: &str = "write HOST[:PORT]/REPO[:TAG] (e.g. localhost:5000/add-header:v1) or oci:DIR[:TAG] for a directory";

fn parse_layout(rest: &str) -> Result<LayoutRef> {
    // The last `:` starts a tag only if what follows looks like one and holds no `/`.
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, Some(tag)),
        _ => (rest, None),
    };
    if dir.is_empty() {
        bail!("`oci:{rest}` names no directory; {HELP}");
    }
    if let Some(tag) = tag {
        check_tag(tag, &format!("oci:{rest}"))?;
    }
    Ok(LayoutRef {
        dir: PathBuf::from(dir),
        tag: tag.map(str::to_owned),
    })
}

fn parse_registry(text: &str) -> Result<RegistryRef> {
    let Some((host, path)) = text.split_once('/') else {
        bail!("`{text}` names no registry host; {HELP}");
    };
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        bail!("`{text}` names no registry host (`{host}` has no dot, port or `localhost`); {HELP}");
    }
    if host.contains(|c: char| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    }) {
        bail!("`{host}` in `{text}` is not a host[:port]; {HELP}");
    }
    let (path, digest) = match path.split_once('@') {
        Some((p, d)) => (p, Some(Digest::parse(d)?)),
        None => (path, None),
    };
    let (repository, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (path, None),
    };
    check_repository(repository, text)?;
    if let Some(tag) = tag {
        check_tag(tag, text)?;
    }
    Ok(RegistryRef {
        host: host.to_owned(),
        repository: repository.to_owned(),
        tag: tag.map(str::to_owned),
        digest,
    })
}

/// The distribution spec's repository grammar, the one weir checks everywhere (`push`,
/// `pull`, every `deploy --image`): `/`-separated components, each
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, so `a..b`, `a._b` and `-a` are refused.
pub fn repository_ok(repo: &str) -> bool {
    !repo.is_empty() && repo.split('/').all(component_ok)
}

fn component_ok(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn check_repository(repo: &str, text: &str) -> Result<()> {
    if !repository_ok(repo) {
        bail!("`{repo}` in `{text}` is not a repository name: use lowercase letters, digits and . _ - separated by /");
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str, text: &str) -> Result<()> {
    let ok = (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        bail!("`{tag}` in `{text}` is not a tag: up to 128 of A-Z a-z 0-9 . _ -, not starting with . or -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(text: &str) -> RegistryRef {
        match Target::parse(text).unwrap() {
            Target::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registry_references() {
        let r = reg("localhost:5000/team/add-header:v1");
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "team/add-header", Some("v1"))
        );
        assert_eq!(r.to_string(), "localhost:5000/team/add-header:v1");
        let r = reg("acree-1.cr.example.com/asm/asm-test");
        assert_eq!((r.tag_or_default(), r.digest.as_ref()), ("latest", None));
        let d = Digest::of(b"x");
        let r = reg(&format!("127.0.0.1:5000/f@{d}"));
        assert_eq!(r.digest, Some(d.clone()));
        assert_eq!(r.to_oci().digest(), Some(d.as_str()));
        assert_eq!(r.pinned(&d), format!("127.0.0.1:5000/f@{d}"));
    }

    #[test]
    fn layout_references() {
        assert_eq!(
            Target::parse("oci:out/layout:v1").unwrap(),
            Target::Layout(LayoutRef {
                dir: "out/layout".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(
            Target::parse("oci:/tmp/x").unwrap(),
            Target::Layout(LayoutRef {
                dir: "/tmp/x".into(),
                tag: None
            })
        );
    }

    #[test]
    fn bad_references_say_what_to_write() {
        for (text, want) in [
            ("add-header:v1", "names no registry host"),
            ("docker/add-header", "names no registry host"),
            ("localhost:5000/Add-Header", "not a repository name"),
            ("localhost:5000/a:-x", "not a tag"),
            ("localhost:5000/a@sha256:zz", "not a digest"),
            ("oci:", "names no directory"),
        ] {
            let e = Target::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
