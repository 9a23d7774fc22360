//! Unary gRPC calls over the dynamic-module ABI's HTTP callout.
//!
//! The ABI has no gRPC client, but a unary gRPC call is one HTTP/2 POST: the request
//! is a single length-prefixed message, the reply a single message followed by
//! trailers carrying `grpc-status`. These pure functions build that POST from the
//! SDK's [`GrpcCall`] and read the callout's result back as a [`GrpcResult`].

use std::time::Duration;
use wasmesh_sdk::{Callout, CalloutResult, GrpcCall, GrpcResult};

/// gRPC status codes this module produces itself.
pub const UNKNOWN: u32 = 2;
pub const DEADLINE_EXCEEDED: u32 = 4;
pub const INTERNAL: u32 = 13;
pub const UNAVAILABLE: u32 = 14;

/// The `grpc-message` of Envoy's router's local reply to an upstream timeout.
const ENVOY_TIMEOUT: &str = "upstream request timeout";

/// Bytes before each message: a compression flag and a big-endian length.
const FRAME_HEADER: usize = 5;

/// The HTTP callout that carries `call`. The cluster must speak HTTP/2 (gRPC clusters
/// do: the generator's and the tests' set `http2_protocol_options`).
pub fn callout_for(call: &GrpcCall) -> Callout {
    let headers = [
        (":method", "POST".to_string()),
        (":path", format!("/{}/{}", call.service, call.method)),
        (":authority", call.cluster.clone()),
        ("content-type", "application/grpc".to_string()),
        ("te", "trailers".to_string()),
        ("grpc-timeout", grpc_timeout(call.timeout)),
    ];
    Callout {
        cluster: call.cluster.clone(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        body: Some(frame(&call.message)),
        timeout: call.timeout,
    }
}

/// `message` as one uncompressed gRPC frame.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(FRAME_HEADER + message.len());
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The message of a body that is exactly one uncompressed frame; None for anything
/// else (short, over-long, trailing bytes, a second message, or compressed: we never
/// offer an encoding, so a compressed reply is a broken server).
pub fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (head, message) = body.split_at_checked(FRAME_HEADER)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    (head[0] == 0 && usize::try_from(len).ok()? == message.len()).then_some(message)
}

/// The gRPC `grpc-timeout` header for `timeout`, in milliseconds (at most 8 digits).
fn grpc_timeout(timeout: Duration) -> String {
    let ms = timeout.as_millis().clamp(1, 99_999_999);
    format!("{ms}m")
}

/// The gRPC status for an HTTP status that is not 200, as gRPC's own clients map it
/// (grpc/doc/http-grpc-status-mapping.md).
pub fn status_of_http(status: u16) -> u32 {
    match status {
        400 => INTERNAL,
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        404 => 12, // UNIMPLEMENTED
        429 | 502 | 503 => UNAVAILABLE,
        // gRPC's table says UNAVAILABLE; but a 504 is how Envoy's router answers a
        // callout that ran out of time, and a timeout is DEADLINE_EXCEEDED.
        504 => DEADLINE_EXCEEDED,
        _ => UNKNOWN,
    }
}

/// How the call carried by a callout ended.
///
/// The ABI's callout-done hook hands over the response headers and body but not its
/// trailers, where a normal reply puts `grpc-status`. So: a `grpc-status` in the
/// headers (a trailers-only reply, how servers and Envoy answer errors) is believed;
/// otherwise a 200 carrying exactly one well-formed frame is taken as status OK (a
/// server that sends a message and then a non-OK status in the trailers is misread
/// as success: none of the services we call do that for a unary method). A 200 with
/// no message is a non-OK status we cannot read: INTERNAL.
pub fn result_of(result: CalloutResult) -> GrpcResult {
    let CalloutResult::Response {
        status,
        headers,
        body,
    } = result
    else {
        // Reset, over-long reply. (A timeout or no healthy upstream is a reply from
        // Envoy's router, read below.)
        return GrpcResult::Failed(UNAVAILABLE);
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let grpc_status = header("grpc-status").map(|v| v.parse::<u32>().unwrap_or(UNKNOWN));
    // Envoy's router answers a callout past its timeout with its local 504, which it
    // turns (the request being gRPC) into a trailers-only UNAVAILABLE carrying the
    // 504's details: that one is the call's deadline, as Envoy's gRPC client says.
    if grpc_status == Some(UNAVAILABLE) && header("grpc-message") == Some(ENVOY_TIMEOUT) {
        return GrpcResult::Failed(DEADLINE_EXCEEDED);
    }
    match grpc_status {
        Some(0) | None if status == 200 => match unframe(&body) {
            Some(message) => GrpcResult::Message(message.to_vec()),
            None => GrpcResult::Failed(INTERNAL),
        },
        Some(code) if code != 0 => GrpcResult::Failed(code),
        _ => GrpcResult::Failed(status_of_http(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> CalloutResult {
        CalloutResult::Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_call_is_an_http2_post_of_one_frame() {
        let call = GrpcCall {
            cluster: "rls".into(),
            service: "envoy.service.ratelimit.v3.RateLimitService".into(),
            method: "ShouldRateLimit".into(),
            message: b"abc".to_vec(),
            timeout: Duration::from_millis(250),
        };
        let callout = callout_for(&call);
        assert_eq!(callout.cluster, "rls");
        assert_eq!(callout.timeout, Duration::from_millis(250));
        assert_eq!(
            callout.body.as_deref(),
            Some(&[0, 0, 0, 0, 3, b'a', b'b', b'c'][..])
        );
        let header = |name: &str| {
            callout
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(":method"), Some("POST"));
        assert_eq!(
            header(":path"),
            Some("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")
        );
        assert_eq!(header(":authority"), Some("rls"));
        assert_eq!(header("content-type"), Some("application/grpc"));
        assert_eq!(header("te"), Some("trailers"));
        assert_eq!(header("grpc-timeout"), Some("250m"));
    }

    #[test]
    fn frames_round_trip_and_length_is_big_endian() {
        let message = vec![7u8; 300];
        let framed = frame(&message);
        assert_eq!(&framed[..5], &[0, 0, 0, 1, 44]);
        assert_eq!(unframe(&framed), Some(&message[..]));
        assert_eq!(unframe(&frame(b"")), Some(&b""[..]));
    }

    #[test]
    fn garbled_frames_are_refused() {
        let good = frame(b"hello");
        assert_eq!(unframe(&good[..4]), None, "short header");
        assert_eq!(unframe(&good[..good.len() - 1]), None, "short message");
        let mut long = good.clone();
        long.push(0);
        assert_eq!(unframe(&long), None, "trailing bytes");
        let mut two = good.clone();
        two.extend_from_slice(&good);
        assert_eq!(unframe(&two), None, "two messages");
        let mut compressed = good.clone();
        compressed[0] = 1;
        assert_eq!(unframe(&compressed), None, "compressed");
        assert_eq!(unframe(b""), None);
    }

    #[test]
    fn a_200_with_one_frame_is_the_message() {
        let ok = reply(200, &[("content-type", "application/grpc")], &frame(b"m"));
        assert_eq!(result_of(ok), GrpcResult::Message(b"m".to_vec()));
        let explicit_ok = reply(200, &[("grpc-status", "0")], &frame(b"m"));
        assert_eq!(result_of(explicit_ok), GrpcResult::Message(b"m".to_vec()));
    }

    #[test]
    fn a_trailers_only_status_is_the_result() {
        let denied = reply(200, &[("grpc-status", "8"), ("grpc-message", "no")], b"");
        assert_eq!(result_of(denied), GrpcResult::Failed(8));
        let garbled = reply(200, &[("grpc-status", "x")], b"");
        assert_eq!(result_of(garbled), GrpcResult::Failed(UNKNOWN));
        // Envoy's own local replies to gRPC requests carry their status.
        let no_upstream = reply(200, &[("grpc-status", "14")], b"");
        assert_eq!(result_of(no_upstream), GrpcResult::Failed(UNAVAILABLE));
    }

    #[test]
    fn envoys_timeout_reply_is_deadline_exceeded() {
        // What Envoy 1.40 hands the callout-done hook for a callout past its timeout.
        let timeout = reply(
            200,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "14"),
                ("grpc-message", "upstream request timeout"),
            ],
            b"",
        );
        assert_eq!(result_of(timeout), GrpcResult::Failed(DEADLINE_EXCEEDED));
        let other = reply(
            200,
            &[
                ("grpc-status", "14"),
                ("grpc-message", "no healthy upstream"),
            ],
            b"",
        );
        assert_eq!(result_of(other), GrpcResult::Failed(UNAVAILABLE));
    }

    #[test]
    fn broken_replies_are_internal_errors() {
        let compressed = {
            let mut f = frame(b"m");
            f[0] = 1;
            f
        };
        assert_eq!(
            result_of(reply(200, &[], &compressed)),
            GrpcResult::Failed(INTERNAL)
        );
        assert_eq!(
            result_of(reply(200, &[], b"")),
            GrpcResult::Failed(INTERNAL),
            "no message and no readable status"
        );
    }

    #[test]
    fn http_errors_map_as_grpc_clients_map_them() {
        assert_eq!(
            result_of(reply(503, &[], b"")),
            GrpcResult::Failed(UNAVAILABLE)
        );
        assert_eq!(
            result_of(reply(504, &[], b"upstream request timeout")),
            GrpcResult::Failed(DEADLINE_EXCEEDED)
        );
        assert_eq!(result_of(reply(404, &[], b"")), GrpcResult::Failed(12));
        assert_eq!(result_of(reply(500, &[], b"")), GrpcResult::Failed(UNKNOWN));
        assert_eq!(
            result_of(CalloutResult::Failed),
            GrpcResult::Failed(UNAVAILABLE)
        );
    }
}
