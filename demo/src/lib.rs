//! Bookinfo-shaped demo services for the local mesh: one binary plays productpage,
//! details, reviews (v1/v2/v3) or ratings, chosen by the `SERVICE` and `VERSION`
//! environment variables (see demo/README.md for the whole contract).

pub mod app;
pub mod catalog;
pub mod check;
pub mod config;
pub mod page;
pub mod productpage;
pub mod propagate;
pub mod reply;
pub mod server;
pub mod upstream;

pub use app::App;
pub use config::Config;
