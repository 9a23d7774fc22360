//! Compiled modules and the process-wide cache.
//!
//! Compiling a 100-200 KB filter takes a noticeable fraction of a second (seconds with a
//! debug-built Cranelift), instantiating it takes microseconds. So a `Module` is compiled
//! once per process per file (keyed by path, length and mtime, so a rebuilt file is picked
//! up), linked once against the host functions into an `InstancePre`, and every `Host`
//! instantiates from that. The cache and the shared `Engine` are the only global state.

use crate::abi;
use crate::error::LoadError;
use crate::state::VmState;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;
use wasmtime::{Engine, ExternType, InstancePre, Linker};

/// ABI version a module declares through its `proxy_abi_version_*` export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiVersion {
    V0_2_0,
    V0_2_1,
}

/// Which export the host calls to allocate guest memory it hands data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    ProxyOnMemoryAllocate,
    Malloc,
}

/// A compiled and linked Proxy-Wasm module; cheap to clone.
#[derive(Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
    /// What a host's plugin config passes through before the guest sees it
    /// ([`Module::wrap_plugin_config`]); none hands it over as given.
    wrap: Option<ConfigWrap>,
}

/// A function from the plugin config a test gives to the one the guest gets.
type ConfigWrap = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

pub(crate) struct ModuleInner {
    pub name: String,
    pub pre: InstancePre<VmState>,
    pub abi: AbiVersion,
    pub allocator: Allocator,
    pub start: Option<&'static str>,
    pub imports: Vec<(String, String)>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.inner.name)
            .field("abi", &self.inner.abi)
            .field("allocator", &self.inner.allocator)
            .finish()
    }
}

/// The engine every module is compiled with; one per process so modules can be shared.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(new_engine)
}

/// With the `perfmap` feature and `WASMESH_PERFMAP=1`, wasmtime writes
/// `/tmp/perf-PID.map`, so `perf record` names the guest's functions.
#[cfg(feature = "perfmap")]
fn new_engine() -> Engine {
    let mut config = wasmtime::Config::new();
    if std::env::var_os("WASMESH_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).unwrap_or_else(|_| Engine::default())
}

#[cfg(not(feature = "perfmap"))]
fn new_engine() -> Engine {
    Engine::default()
}

type CacheKey = (PathBuf, u64, Option<SystemTime>);
type Slot = Arc<OnceLock<Result<Module, LoadError>>>;

fn cache() -> &'static Mutex<HashMap<CacheKey, Slot>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Slot>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl Module {
    /// Loads a `.wasm` file, compiling it at most once per process (per content version).
    /// Concurrent callers for the same file wait for one compilation.
    pub fn load(path: impl AsRef<Path>) -> Result<Module, LoadError> {
        let path = path.as_ref();
        let read_err = |e: std::io::Error| LoadError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        let slot = {
            // Only a panic inside this block could poison the lock; recover the map.
            let mut map = cache().lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key).or_default().clone()
        };
        slot.get_or_init(|| {
            let bytes = std::fs::read(path).map_err(read_err)?;
            Module::compile(&path.display().to_string(), &bytes)
        })
        .clone()
    }

    /// Compiles a module from bytes (binary or WAT text). Not cached: meant for small
    /// hand-written modules.
    pub fn from_bytes(bytes: impl AsRef<[u8]>) -> Result<Module, LoadError> {
        Module::compile("<bytes>", bytes.as_ref())
    }

    fn compile(name: &str, bytes: &[u8]) -> Result<Module, LoadError> {
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            name: name.to_string(),
            message: format!("{e:#}"),
        };
        let module = wasmtime::Module::new(engine(), bytes).map_err(compile_err)?;
        let name = name.to_string();
        let exports: HashSet<&str> = module.exports().map(|e| e.name()).collect();
        let abi = if exports.contains("proxy_abi_version_0_2_1") {
            AbiVersion::V0_2_1
        } else if exports.contains("proxy_abi_version_0_2_0") {
            AbiVersion::V0_2_0
        } else {
            return Err(LoadError::UnknownAbi { name });
        };
        // Envoy looks for malloc first; the SDK's documented allocator is preferred here, and
        // both behave the same for the guests that export both.
        let allocator = if exports.contains("proxy_on_memory_allocate") {
            Allocator::ProxyOnMemoryAllocate
        } else if exports.contains("malloc") {
            Allocator::Malloc
        } else {
            return Err(LoadError::NoAllocator { name });
        };
        if !module
            .exports()
            .any(|e| e.name() == "memory" && matches!(e.ty(), ExternType::Memory(_)))
        {
            return Err(LoadError::NoMemory { name });
        }
        let start = if exports.contains("_initialize") {
            Some("_initialize")
        } else if exports.contains("_start") {
            Some("_start")
        } else {
            None
        };

        let mut linker = Linker::new(engine());
        let mut defs = abi::Defs {
            linker: &mut linker,
            names: HashSet::new(),
        };
        abi::define_all(&mut defs).map_err(|e| LoadError::Link {
            name: name.clone(),
            message: format!("{e:#}"),
        })?;
        let names = defs.names;
        let imports: Vec<(String, String)> = module
            .imports()
            .map(|i| (i.module().to_string(), i.name().to_string()))
            .collect();
        // Decision: an import the host does not provide fails the load, naming every such
        // import. Envoy does the same ("missing import"), so a module that loads here
        // links in Envoy too, and the error shows up at load rather than mid-test.
        let unsupported: Vec<String> = imports
            .iter()
            .filter(|i| !names.contains(*i))
            .map(|(m, n)| format!("{m}.{n}"))
            .collect();
        if !unsupported.is_empty() {
            return Err(LoadError::UnsupportedImports {
                name,
                imports: unsupported,
            });
        }
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Link {
                name: name.clone(),
                message: format!("{e:#}"),
            })?;
        Ok(Module {
            wrap: None,
            inner: Arc::new(ModuleInner {
                name,
                pre,
                abi,
                allocator,
                start,
                imports,
            }),
        })
    }

    /// This module with every host's plugin config passed through `wrap` before the
    /// guest gets it. For a bundle (one module running several filters as stages of
    /// one config), a test written against one filter's config can then address that
    /// filter's stage: `wrap` puts the test's config in the stage's place.
    pub fn wrap_plugin_config(
        mut self,
        wrap: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Module {
        self.wrap = Some(Arc::new(wrap));
        self
    }

    /// The plugin config the guest gets for `config`: itself, or what
    /// [`Module::wrap_plugin_config`] made of it.
    pub(crate) fn plugin_config(&self, config: Vec<u8>) -> Vec<u8> {
        match &self.wrap {
            Some(wrap) => wrap(&config),
            None => config,
        }
    }

    pub fn abi_version(&self) -> AbiVersion {
        self.inner.abi
    }

    pub fn allocator(&self) -> Allocator {
        self.inner.allocator
    }

    /// The module's imports as (module, name), e.g. ("env", "proxy_log").
    pub fn imports(&self) -> &[(String, String)] {
        &self.inner.imports
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }
}
