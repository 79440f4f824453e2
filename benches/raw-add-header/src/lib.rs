//! add-header hand-written on proxy-wasm 0.2: the baseline `cargo xtask bench`
//! compares weir against. Written the way the proxy-wasm examples are (including
//! their `String` header API); it is a benchmark subject, not a filter to deploy.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

#[derive(serde::Deserialize)]
struct Config {
    name: String,
    value: String,
}

struct Root {
    config: Rc<Config>,
}

struct Stream {
    config: Rc<Config>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            config: Rc::new(Config { name: "resp-header-demo".into(), value: "added by our filter".into() }),
        })
    });
}}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.get_plugin_configuration() {
            None => true,
            Some(bytes) => match serde_json::from_slice::<Config>(&bytes) {
                Ok(c) => {
                    self.config = Rc::new(c);
                    true
                }
                Err(e) => {
                    log::error!("raw-add-header: bad configuration: {e}");
                    false
                }
            },
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: self.config.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.set_http_response_header(&self.config.name, Some(&self.config.value));
        Action::Continue
    }
}
