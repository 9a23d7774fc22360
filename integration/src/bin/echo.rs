//! `echo --port P --name N`: the rig's echo upstream as a standalone server for demos.

use anyhow::{bail, Context, Result};
use wasmesh_integration::echo::EchoServer;

fn main() -> Result<()> {
    let mut port = 8080u16;
    let mut name = "echo".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().context("--port needs a value")?;
                port = value
                    .parse()
                    .with_context(|| format!("bad port {value:?}"))?;
            }
            "--name" => name = args.next().context("--name needs a value")?,
            "-h" | "--help" => {
                println!("usage: echo [--port P (default 8080, 0 = any)] [--name N]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; try --help"),
        }
    }
    let server = EchoServer::start_on(port, &name)?;
    println!("echo {name:?} listening on {}", server.url());
    server.wait()
}
