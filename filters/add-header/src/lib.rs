//! add-header: sets one response header on every response.
//!
//! Configuration (`config.example.json`): `{"name": "hello", "value": "hello details"}`.
//! With no configuration it sets `resp-header-demo: added by our filter`, the
//! header the Alibaba Cloud ASM walkthrough checks for.

use weir::{Action, HeaderName, HeaderValue, HttpFilter, Response};

/// The header to set. Both fields are checked when Envoy configures the filter:
/// a missing, mistyped or illegal one refuses the configuration.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Header name, lowercase HTTP token.
    pub name: HeaderName,
    /// Header value, any bytes but NUL, CR and LF.
    pub value: HeaderValue,
}

/// Sets `Config::name: Config::value` on every response.
#[derive(Default)]
pub struct AddHeader;

#[weir::filter]
impl HttpFilter for AddHeader {
    type Config = Config;

    fn default_config() -> Option<Config> {
        Some(Config {
            name: HeaderName::new("resp-header-demo").ok()?,
            value: HeaderValue::new("added by our filter").ok()?,
        })
    }

    fn on_response_headers(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
        let config = cx.config();
        cx.headers().set(&config.name, &config.value)?;
        Ok(Action::Continue)
    }
}

weir::export!(AddHeader);
