//! The HTTP/1 server with graceful shutdown: on the shutdown signal it stops
//! accepting, lets in-flight requests finish (up to a drain timeout), then returns.

use crate::app::App;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning on the error.
                        eprintln!("wasmesh-demo: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                conns.spawn(connection(stream, app.clone(), stop_rx.clone()));
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        eprintln!(
            "wasmesh-demo: {} connection(s) still open after {} ms; closing them",
            conns.len(),
            drain.as_millis()
        );
    }
}

async fn connection(stream: tokio::net::TcpStream, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        async move {
            // Every endpoint is a GET: the body is never read.
            let (parts, _body) = req.into_parts();
            Ok::<_, Infallible>(app.handle(&parts).await)
        }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    // The watch guard must not live across an await (it is not Send): map it away.
    let stopped = async { stop.wait_for(|stopped| *stopped).await.map(|_| ()) };
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped => {
            // Finish the request in flight, then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
