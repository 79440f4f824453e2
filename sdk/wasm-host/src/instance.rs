//! One module instantiated in the interpreter, with its host: call its exports,
//! count what they cost.

use wasmi::{Config, Engine, Extern, Linker, Module, Store, Val};

use crate::imports::{self, Host};
use crate::{Error, Proxy};

/// Instructions one call into the module may run before it is stopped: a weir
/// filter's hook needs well under 1% of it, a looping one is an error, not a hang.
const FUEL_PER_CALL: u64 = 2_000_000_000;

/// A proxy-wasm module instantiated over a [`Proxy`].
pub struct Instance<P: Proxy + 'static> {
    store: Store<Host<P>>,
    instance: wasmi::Instance,
    instructions: u64,
}

impl<P: Proxy + 'static> Instance<P> {
    /// Compiles and instantiates `wasm` (running its start function, not `_initialize`)
    /// with `proxy` answering its host calls. Fails when the bytes are not a wasm
    /// module, the module is not proxy-wasm (no `proxy_abi_version_*` export), or
    /// instantiation traps.
    pub fn new(wasm: &[u8], proxy: P) -> Result<Self, Error> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm)
            .map_err(|e| Error::new(format!("not a valid wasm module: {e}")))?;
        if !module
            .exports()
            .any(|e| e.name().starts_with("proxy_abi_version_"))
        {
            return Err(Error::new(
                "not a proxy-wasm module: it exports no proxy_abi_version_* function",
            ));
        }
        let mut linker = Linker::<Host<P>>::new(&engine);
        imports::link(&mut linker, &module)
            .map_err(|e| Error::new(format!("cannot provide the module's imports: {e}")))?;
        let mut store = Store::new(&engine, Host { proxy, calls: 0 });
        store
            .set_fuel(FUEL_PER_CALL)
            .map_err(|e| Error::new(e.to_string()))?;
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| Error::new(format!("cannot instantiate the module: {e}")))?;
        Ok(Instance {
            store,
            instance,
            instructions: 0,
        })
    }

    /// True when the module exports a function called `name`.
    pub fn exports(&self, name: &str) -> bool {
        self.instance.get_func(&self.store, name).is_some()
    }

    /// Calls the export `name` with i32 arguments; its first result as an i32
    /// (`Some(0)` when it returns nothing), `None` when the module does not export it.
    /// A trap, or running out of fuel, is an error naming the export.
    pub fn call(&mut self, name: &str, args: &[i32]) -> Result<Option<i32>, Error> {
        let Some(func) = self.instance.get_func(&self.store, name) else {
            return Ok(None);
        };
        let ty = func.ty(&self.store);
        let args: Vec<Val> = ty
            .params()
            .iter()
            .zip(args.iter().copied().chain(std::iter::repeat(0)))
            .map(|(t, a)| match t {
                wasmi::ValType::I64 => Val::I64(a.into()),
                _ => Val::I32(a),
            })
            .collect();
        let mut out = vec![Val::I32(0); ty.results().len()];
        self.store
            .set_fuel(FUEL_PER_CALL)
            .map_err(|e| Error::new(e.to_string()))?;
        let result = func.call(&mut self.store, &args, &mut out);
        self.instructions += FUEL_PER_CALL.saturating_sub(self.store.get_fuel().unwrap_or(0));
        result.map_err(|e| Error::new(format!("{name} trapped: {e}")))?;
        Ok(Some(out.first().and_then(Val::i32).unwrap_or(0)))
    }

    /// The proxy.
    pub fn proxy(&self) -> &P {
        &self.store.data().proxy
    }

    /// The proxy, to change what the host holds between calls.
    pub fn proxy_mut(&mut self) -> &mut P {
        &mut self.store.data_mut().proxy
    }

    /// proxy-wasm host calls the module made so far (WASI calls not counted).
    pub fn host_calls(&self) -> u64 {
        self.store.data().calls
    }

    /// Wasm instructions the module ran so far (wasmi fuel).
    pub fn instructions(&self) -> u64 {
        self.instructions
    }

    /// The module's linear memory, in 64 KiB pages.
    pub fn memory_pages(&self) -> u64 {
        match self.instance.get_export(&self.store, "memory") {
            Some(Extern::Memory(m)) => m.size(&self.store),
            _ => 0,
        }
    }
}
