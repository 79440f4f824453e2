//! The filter runtime: configuration and per-request dispatch, shared by the
//! wasm glue (proxy-wasm's contexts) and the native test harness.

use std::rc::Rc;

use crate::config::{self, ConfigError};
use crate::filter::{Action, HttpFilter, Request, Response};
use crate::log::{log, Level};

/// One configured plugin: the filter's name and its current configuration.
pub(crate) struct Plugin<F: HttpFilter> {
    pub(crate) name: &'static str,
    config: Option<Rc<F::Config>>,
}

impl<F: HttpFilter> Plugin<F> {
    pub(crate) fn new(name: &'static str) -> Self {
        Plugin { name, config: None }
    }

    /// Parses and checks `bytes`; on success replaces the configuration (requests
    /// already under way keep the one they started with).
    pub(crate) fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let blank = bytes.iter().all(u8::is_ascii_whitespace);
        let config = match F::default_config() {
            Some(default) if blank => default,
            None if blank => {
                return Err(ConfigError::new(
                    "no configuration given, and this filter has no default: pass its JSON configuration",
                ))
            }
            _ => config::parse::<F::Config>(bytes)?,
        };
        F::validate(&config)?;
        self.config = Some(Rc::new(config));
        Ok(())
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    /// `configure`, logging a refusal as one line naming the filter and the problem.
    pub(crate) fn configure_logged(&mut self, bytes: &[u8]) -> bool {
        match self.configure(bytes) {
            Ok(()) => true,
            Err(e) => {
                log(Level::Error, &format!("{}: configuration refused: {e}", self.name));
                false
            }
        }
    }

    pub(crate) fn stream(&self) -> Stream<F> {
        Stream { name: self.name, config: self.config.clone(), filter: F::default() }
    }
}

/// One request through the filter.
pub(crate) struct Stream<F: HttpFilter> {
    name: &'static str,
    config: Option<Rc<F::Config>>,
    filter: F,
}

impl<F: HttpFilter> Stream<F> {
    fn finish(&self, hook: &str, result: crate::Result) -> Action {
        result.unwrap_or_else(|e| {
            log(Level::Warn, &format!("{}: {hook}: {e}", self.name));
            Action::Continue
        })
    }

    pub(crate) fn request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(config) = &self.config else { return Action::Continue };
        let result = self.filter.on_request_headers(&mut Request::new(config, end_of_stream));
        self.finish("on_request_headers", result)
    }

    pub(crate) fn response_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(config) = &self.config else { return Action::Continue };
        let result = self.filter.on_response_headers(&mut Response::new(config, end_of_stream));
        self.finish("on_response_headers", result)
    }
}

/// The proxy-wasm contexts around [`Plugin`] and [`Stream`].
#[cfg(target_arch = "wasm32")]
pub(crate) mod wasm {
    use super::{Plugin, Stream};
    use crate::filter::{Action, HttpFilter};
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{self, ContextType};

    struct Root<F: HttpFilter>(Plugin<F>);

    impl<F: HttpFilter> Context for Root<F> {}

    impl<F: HttpFilter> RootContext for Root<F> {
        fn on_configure(&mut self, size: usize) -> bool {
            self.0.configure_logged(&crate::host::plugin_configuration(size))
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(self.0.stream()))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    fn action(a: Action) -> types::Action {
        match a {
            Action::Continue => types::Action::Continue,
            Action::Pause => types::Action::Pause,
        }
    }

    impl<F: HttpFilter> Context for Stream<F> {}

    impl<F: HttpFilter> HttpContext for Stream<F> {
        fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> types::Action {
            action(self.request_headers(end_of_stream))
        }

        fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> types::Action {
            action(self.response_headers(end_of_stream))
        }
    }

    static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

    fn new_root<F: HttpFilter>(_id: u32) -> Box<dyn RootContext> {
        Box::new(Root::<F>(Plugin::new(NAME.get().copied().unwrap_or("weir"))))
    }

    /// Registers `F` with proxy-wasm and logs any panic with the filter's name.
    pub fn start<F: HttpFilter>(name: &'static str) {
        let _ = NAME.set(name);
        std::panic::set_hook(Box::new(move |info| {
            crate::log::log(crate::log::Level::Critical, &format!("{name}: filter panicked: {info}"));
        }));
        proxy_wasm::set_root_context(new_root::<F>);
    }
}
