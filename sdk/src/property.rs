//! Properties: typed getters for the request attributes Envoy knows (path, source address, route…).

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::header::Value;
use crate::host;
use crate::path::{self, PathError};

/// The request's attributes, read from the host on each call (one host call each).
///
/// The method, path and authority are read here and only here:
/// [`method`](Self::method), [`path`](Self::path) (canonical) and
/// [`authority`](Self::authority) (canonical), with [`raw_path`](Self::raw_path)
/// and [`raw_authority`](Self::raw_authority) for the bytes as sent.
///
/// Every getter returns `None` when the host has no such attribute; text comes
/// back as a [`Value`] (bytes with a UTF-8 view), never as a panic.
#[derive(Clone, Copy, Debug)]
pub struct Properties(());

impl Properties {
    pub(crate) fn new() -> Self {
        Properties(())
    }

    /// Any attribute by its path, e.g. `&["connection", "mtls"]`, as the host's bytes.
    pub fn get(&self, path: &[&str]) -> Option<Value> {
        host::property(path).map(Value)
    }

    /// The request path in its canonical form, without the query: the one a
    /// filter matches on, as `_rules_` do (see [`crate::path`]): `/a/./b/../c`,
    /// `/a//c` and `/%61/c` are all `/a/c`. `Err` when the request has no path
    /// or a path with no canonical form (an encoded `/`, a NUL, `..` above the
    /// root); a security decision should then refuse the request (400).
    /// Allocates nothing beyond the host's answer when the path is already canonical.
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// let props = cx.properties();
    /// let (Some(method), Ok(path), Some(host)) = (props.method(), props.path(), props.authority()) else {
    ///     return cx.reply(weir::LocalReply::new(400));
    /// };
    /// if method == "DELETE" && path.as_bytes().starts_with(b"/admin/") && host == "api.example.com" {
    ///     return cx.reply(weir::LocalReply::new(403));
    /// }
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn path(&self) -> Result<Value, PathError> {
        let mut raw = host::property(&["request", "path"]).ok_or(PathError::Missing)?;
        let canonical = match path::canonicalize(&raw)? {
            Cow::Borrowed(b) => Err(b.len()),
            Cow::Owned(v) => Ok(v),
        };
        match canonical {
            Ok(owned) => Ok(Value(owned)),
            Err(len) => {
                raw.truncate(len);
                Ok(Value(raw))
            }
        }
    }

    /// The path as the client sent it, with its query (`request.path`): for
    /// logging or forwarding, never for a decision (match on [`path`](Self::path)).
    pub fn raw_path(&self) -> Option<Value> {
        self.get(&["request", "path"])
    }

    /// The request method (`request.method`), e.g. `GET`.
    pub fn method(&self) -> Option<Value> {
        self.get(&["request", "method"])
    }

    /// The host the request is for, in its canonical form: lowercase, without
    /// the port and one trailing `.` (see [`crate::path::canonical_host`]), as
    /// `_match_domain_` compares it.
    pub fn authority(&self) -> Option<Value> {
        let raw = host::property(&["request", "host"])?;
        Some(Value(path::canonical_host(&raw).into_owned()))
    }

    /// The host as the client sent it, with any port (`request.host`).
    pub fn raw_authority(&self) -> Option<Value> {
        self.get(&["request", "host"])
    }

    /// `http` or `https` (`request.scheme`).
    pub fn scheme(&self) -> Option<Value> {
        self.get(&["request", "scheme"])
    }

    /// The downstream peer's address (`source.address`), when it is an IP socket.
    pub fn source_address(&self) -> Option<SocketAddr> {
        self.get(&["source", "address"])?.to_str()?.parse().ok()
    }

    /// The name of the route the request matched (`xds.route_name`).
    pub fn route_name(&self) -> Option<Value> {
        self.get(&["xds", "route_name"])
    }

    /// The plugin's configured name (`plugin_name`).
    pub fn plugin_name(&self) -> Option<Value> {
        self.get(&["plugin_name"])
    }

    /// The plugin's root id (`plugin_root_id`).
    pub fn root_id(&self) -> Option<Value> {
        self.get(&["plugin_root_id"])
    }
}
