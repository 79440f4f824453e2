//! `#[weir::filter]`: records which [`HttpFilter`] hooks an impl block overrides.
//!
//! The attribute scans the `fn` items of `impl HttpFilter for X { .. }` and adds
//! `const HOOKS: u32 = ..;`, one bit per hook (the bit layout is `weir::hooks`).
//! weir writes that mask into the module's `weir.hooks` custom section, and
//! `cargo xtask build` removes the exports of hooks whose bit is clear, so Envoy
//! never enters the VM for them. It uses no `syn`: a filter's build stays fast.
//!
//! It also adds `const METRICS` (unless the impl writes its own): the list that a
//! `weir::metrics! { .. }` in the same module declared, or an empty one. The
//! fallback is a glob import of `weir::metrics::__no_metrics::*`, which the
//! `__WEIR_METRICS` item `weir::metrics!` defines shadows, as any item shadows a
//! glob import.
//!
//! [`HttpFilter`]: https://docs.rs/weir/latest/weir/trait.HttpFilter.html
#![deny(missing_docs)]

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Each hook method and its bit in the `weir.hooks` mask.
const HOOKS: [(&str, u32); 11] = [
    ("on_request_headers", 1 << 0),
    ("on_request_body", 1 << 1),
    ("on_request_trailers", 1 << 2),
    ("on_response_headers", 1 << 3),
    ("on_response_body", 1 << 4),
    ("on_response_trailers", 1 << 5),
    ("on_log", 1 << 6),
    ("on_callout_response", 1 << 7),
    ("on_tick", 1 << 8),
    ("on_queue_ready", 1 << 9),
    ("on_tick_callout_response", 1 << 10),
];

/// Put on `impl weir::HttpFilter for YourFilter { .. }`: records which hooks the
/// filter implements so the build can drop the others.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error("#[weir::filter] takes no arguments", Span::call_site());
    }
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let has_ident = |name: &str| {
        tokens
            .iter()
            .any(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == name))
    };
    let is_filter_impl = has_ident("impl") && has_ident("HttpFilter");
    let body = match tokens.last() {
        Some(TokenTree::Group(g)) if is_filter_impl && g.delimiter() == Delimiter::Brace => {
            g.clone()
        }
        _ => {
            return error(
                "#[weir::filter] goes on `impl weir::HttpFilter for YourFilter { .. }`",
                Span::call_site(),
            )
        }
    };
    let items: Vec<TokenTree> = body.stream().into_iter().collect();
    let mut mask = 0u32;
    let mut has_metrics = false;
    for pair in items.windows(2) {
        if let [TokenTree::Ident(kw), TokenTree::Ident(name)] = pair {
            has_metrics |= kw.to_string() == "const" && name.to_string() == "METRICS";
        }
        if let [TokenTree::Ident(kw), TokenTree::Ident(name)] = pair {
            if kw.to_string() == "fn" {
                let name = name.to_string();
                mask |= HOOKS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, bit)| *bit);
            }
        }
        if let [TokenTree::Ident(kw), TokenTree::Ident(name)] = pair {
            if kw.to_string() == "const" && name.to_string() == "HOOKS" {
                return error(
                    "#[weir::filter] writes `HOOKS` itself: remove it",
                    name.span(),
                );
            }
        }
    }
    // `const HOOKS: u32 = <mask>;` prepended to the impl's items.
    let mut inner: Vec<TokenTree> = vec![
        Ident::new("const", Span::call_site()).into(),
        Ident::new("HOOKS", Span::call_site()).into(),
        Punct::new(':', Spacing::Alone).into(),
        Ident::new("u32", Span::call_site()).into(),
        Punct::new('=', Spacing::Alone).into(),
        Literal::u32_suffixed(mask).into(),
        Punct::new(';', Spacing::Alone).into(),
    ];
    // The package's name, which the module's log lines carry (`export!` names the VM
    // after it): the native harness tags lines with it too.
    inner.extend(parse(
        "const PACKAGE: &'static str = ::core::env!(\"CARGO_PKG_NAME\");",
    ));
    if !has_metrics {
        inner.extend(parse(
            "const METRICS: &'static [&'static ::weir::metrics::Metric] = __WEIR_METRICS;",
        ));
    }
    inner.extend(items);
    let mut group = Group::new(Delimiter::Brace, inner.into_iter().collect());
    group.set_span(body.span());
    if let Some(last) = tokens.last_mut() {
        *last = group.into();
    }
    let mut out = TokenStream::new();
    if !has_metrics {
        out.extend(parse(
            "#[allow(unused_imports)] use ::weir::metrics::__no_metrics::*;",
        ));
    }
    out.extend(tokens);
    out
}

/// Tokens from source text this crate writes (always valid Rust).
fn parse(source: &str) -> TokenStream {
    source.parse().unwrap_or_default()
}

fn error(message: &str, span: Span) -> TokenStream {
    let mut lit = Literal::string(message);
    lit.set_span(span);
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    let mut args = Group::new(Delimiter::Parenthesis, TokenTree::from(lit).into());
    args.set_span(span);
    let mut semi = Punct::new(';', Spacing::Alone);
    semi.set_span(span);
    [
        TokenTree::from(Ident::new("compile_error", span)),
        bang.into(),
        args.into(),
        semi.into(),
    ]
    .into_iter()
    .collect()
}
