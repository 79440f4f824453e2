//! The hook bits of the `weir.hooks` custom section: which hooks a filter implements.
//!
//! `#[weir::filter]` writes [`HttpFilter::HOOKS`](crate::HttpFilter::HOOKS) from
//! the methods an impl block defines; [`export!`](crate::export) stores it,
//! little-endian, in a wasm custom section named `weir.hooks`; `cargo xtask build`
//! removes the `proxy_on_*` exports whose bit is clear, so Envoy never enters
//! the VM for a hook the filter does not have. A module without the section
//! keeps every export. A filter whose `BODY_MODE` is `Buffer` and that has a body
//! hook also keeps both headers hooks: weir reads there which bodies are streams
//! it must not hold.

/// `proxy_on_request_headers`: [`on_request_headers`](crate::HttpFilter::on_request_headers).
pub const REQUEST_HEADERS: u32 = 1 << 0;
/// `proxy_on_request_body`: [`on_request_body`](crate::HttpFilter::on_request_body).
pub const REQUEST_BODY: u32 = 1 << 1;
/// `proxy_on_request_trailers`: [`on_request_trailers`](crate::HttpFilter::on_request_trailers).
pub const REQUEST_TRAILERS: u32 = 1 << 2;
/// `proxy_on_response_headers`: [`on_response_headers`](crate::HttpFilter::on_response_headers).
pub const RESPONSE_HEADERS: u32 = 1 << 3;
/// `proxy_on_response_body`: [`on_response_body`](crate::HttpFilter::on_response_body).
pub const RESPONSE_BODY: u32 = 1 << 4;
/// `proxy_on_response_trailers`: [`on_response_trailers`](crate::HttpFilter::on_response_trailers).
pub const RESPONSE_TRAILERS: u32 = 1 << 5;
/// `proxy_on_log`: [`on_log`](crate::HttpFilter::on_log).
pub const LOG: u32 = 1 << 6;
/// `proxy_on_http_call_response`: [`on_callout_response`](crate::HttpFilter::on_callout_response).
pub const HTTP_CALL_RESPONSE: u32 = 1 << 7;
/// `proxy_on_tick`: [`on_tick`](crate::HttpFilter::on_tick).
pub const TICK: u32 = 1 << 8;
/// `proxy_on_queue_ready`: [`on_queue_ready`](crate::HttpFilter::on_queue_ready).
pub const QUEUE_READY: u32 = 1 << 9;
/// [`on_tick_callout_response`](crate::HttpFilter::on_tick_callout_response): no
/// export of its own; a module with it keeps the callout exports ([`exported`]).
pub const TICK_CALLOUT_RESPONSE: u32 = 1 << 10;
/// `proxy_on_grpc_receive` and `proxy_on_grpc_close`, the answers to gRPC callouts:
/// kept with either callout hook ([`exported`]).
pub const GRPC_RESPONSE: u32 = 1 << 11;
/// Every export bit: what a module without the section is treated as.
pub const ALL: u32 = ((1 << 10) - 1) | GRPC_RESPONSE;

/// The custom section's name (`#[link_section]` in [`export!`](crate::export) spells it too).
pub const SECTION: &str = "weir.hooks";

/// Each hook bit with the proxy-wasm export it keeps: the one table the SDK and the
/// toolchain (`cargo xtask build`'s stripping, `cargo xtask new`'s checks) share.
pub const EXPORTS: &[(u32, &str)] = &[
    (REQUEST_HEADERS, "proxy_on_request_headers"),
    (REQUEST_BODY, "proxy_on_request_body"),
    (REQUEST_TRAILERS, "proxy_on_request_trailers"),
    (RESPONSE_HEADERS, "proxy_on_response_headers"),
    (RESPONSE_BODY, "proxy_on_response_body"),
    (RESPONSE_TRAILERS, "proxy_on_response_trailers"),
    (LOG, "proxy_on_log"),
    (HTTP_CALL_RESPONSE, "proxy_on_http_call_response"),
    (TICK, "proxy_on_tick"),
    (QUEUE_READY, "proxy_on_queue_ready"),
    (GRPC_RESPONSE, "proxy_on_grpc_receive"),
    (GRPC_RESPONSE, "proxy_on_grpc_close"),
];

/// The hooks the module must export for a filter implementing `hooks`: a
/// buffered body ends at the trailers when there are some, so a body hook needs
/// the trailers hook of its direction too; a callout hook (a request's or a
/// tick's) needs the answers to HTTP and gRPC callouts.
pub const fn exported(hooks: u32) -> u32 {
    let mut out = hooks & !TICK_CALLOUT_RESPONSE;
    if hooks & (HTTP_CALL_RESPONSE | TICK_CALLOUT_RESPONSE) != 0 {
        out |= HTTP_CALL_RESPONSE | GRPC_RESPONSE;
    }
    if hooks & REQUEST_BODY != 0 {
        out |= REQUEST_TRAILERS;
    }
    if hooks & RESPONSE_BODY != 0 {
        out |= RESPONSE_TRAILERS;
    }
    out
}

/// The section's contents for a filter implementing `hooks`.
#[doc(hidden)]
pub const fn section(hooks: u32) -> [u8; 4] {
    exported(hooks).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_hooks_keep_their_trailers() {
        assert_eq!(exported(REQUEST_HEADERS), REQUEST_HEADERS);
        assert_eq!(exported(REQUEST_BODY), REQUEST_BODY | REQUEST_TRAILERS);
        assert_eq!(
            exported(RESPONSE_BODY | LOG),
            RESPONSE_BODY | RESPONSE_TRAILERS | LOG
        );
        assert_eq!(section(ALL), [0xff, 0x0b, 0, 0]);
        assert_eq!(
            exported(TICK | TICK_CALLOUT_RESPONSE),
            TICK | HTTP_CALL_RESPONSE | GRPC_RESPONSE
        );
        assert_eq!(
            exported(HTTP_CALL_RESPONSE),
            HTTP_CALL_RESPONSE | GRPC_RESPONSE
        );
    }

    #[test]
    fn the_export_table_names_every_bit() {
        let mut seen = 0;
        for (bit, name) in EXPORTS {
            assert_eq!(bit.count_ones(), 1, "{name}");
            let shared = EXPORTS.iter().filter(|(b, _)| b == bit).count();
            assert!(shared == 1 || *bit == GRPC_RESPONSE, "{name} shares a bit");
            assert!(name.starts_with("proxy_on_"), "{name}");
            seen |= bit;
        }
        assert_eq!(seen, ALL);
        assert_eq!(ALL & TICK_CALLOUT_RESPONSE, 0);
    }
}
