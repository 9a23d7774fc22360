//! `echo --port P --name N`: the rig's echo upstream as a standalone server for demos.

use anyhow::Result;
use clap::Parser;
use wasmesh_integration::echo::EchoServer;

/// The rig's echo upstream as a standalone server: answers every request with what it
/// received, under its name.
#[derive(Parser)]
#[command(name = "echo", args_override_self = true)]
struct Echo {
    /// Port to listen on (0 = any free one).
    #[arg(long, value_name = "P", default_value_t = 8080)]
    port: u16,
    /// Name the echo answers with.
    #[arg(long, value_name = "N", default_value = "echo")]
    name: String,
}

fn main() -> Result<()> {
    let args: Echo = wasmesh_cli_args::parse();
    let server = EchoServer::start_on(args.port, &args.name)?;
    println!("echo {:?} listening on {}", args.name, server.url());
    server.wait()
}
