//! Request-side inputs: header maps (names the filters read, non-UTF-8 values, huge
//! values, duplicate or missing pseudo-headers, 10k headers), bodies, trailers, JWTs
//! (the minted valid and attack tokens, cut, corrupted or inflated), responses, and
//! callout replies (any status text, junk headers and bodies, JWKS-shaped junk).

use super::rng::Rng;
use crate::mint;
use std::sync::OnceLock;

pub type Headers = Vec<(String, Vec<u8>)>;

/// One request scenario: what the client sends and the upstream answers.
pub struct Request {
    pub headers: Headers,
    pub body: Option<Vec<u8>>,
    pub trailers: Option<Headers>,
    pub response: Headers,
    pub response_body: Option<Vec<u8>>,
}

/// Header names some filter reads: the generator sends them far more often than chance would.
const NAMES: &[&str] = &[
    "authorization",
    "x-forwarded-for",
    "x-envoy-fault-abort-request",
    "x-envoy-fault-abort-request-percentage",
    "x-envoy-fault-delay-request",
    "x-envoy-fault-delay-request-percentage",
    "x-jwt-payload",
    "x-user",
    "x-tenant",
    "x-wasmesh-peer",
    "x-api-key",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "b3",
    "x-request-id",
    "cookie",
    "content-type",
    "content-length",
    "te",
    "grpc-timeout",
    "x-old",
    "x-remove",
    "x-set",
    "x-envoy-original-path",
    "x-envoy-peer-metadata",
    "x-envoy-peer-metadata-id",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
];

/// Tokens made once per process: signing is slow, mutating is cheap.
fn tokens() -> &'static Vec<String> {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let now = super::EPOCH_S;
        let mut all: Vec<String> = ["RS256", "RS384", "PS256", "ES256", "ES384", "EdDSA"]
            .iter()
            .map(|alg| mint::token(alg, now))
            .collect();
        all.extend(mint::attack_tokens(now).into_iter().map(|(_, t)| t));
        all
    })
}

pub fn jwt(rng: &mut Rng) -> Vec<u8> {
    let base = rng.pick_ref(tokens()).clone();
    let token = match rng.below(8) {
        0 | 1 => base,
        2 => base[..rng.below(base.len() + 1)].to_string(),
        3 => {
            let mut b = base.into_bytes();
            for _ in 0..=rng.below(3) {
                let at = rng.below(b.len());
                b[at] = rng.pick(b"A_-.=+/!\0\xff");
            }
            return with_scheme(rng, b);
        }
        4 => format!("{base}{}", "A".repeat(rng.size(1, &[65_536, 300_000]))),
        5 => {
            let parts: Vec<&str> = base.split('.').collect();
            let dup = rng.below(20) + 1;
            let mut out = parts.join(".");
            for _ in 0..dup {
                out.push('.');
                out.push_str(parts[rng.below(parts.len())]);
            }
            out
        }
        6 => format!(
            "{}.{}.{}",
            mint::b64(&rng.bytes(64)),
            mint::b64(&rng.bytes(512)),
            mint::b64(&rng.bytes(300))
        ),
        _ => format!(
            "{}.{}.",
            mint::b64(
                rng.pick(&[
                    r#"{"alg":"none"}"#,
                    r#"{"alg":"HS256","kid":"rsa-1"}"#,
                    r#"{"alg":["RS256"]}"#,
                    r#"{"alg":"RS256","kid":null,"crit":["x"]}"#
                ])
                .as_bytes()
            ),
            mint::b64(
                rng.pick(&[
                    r#"{"iss":"https://issuer.example","sub":"x","exp":1e308}"#,
                    r#"{"exp":-1,"nbf":"soon","aud":[[]]}"#,
                    r#"{"sub":{"a":[1,{"b":null}]}}"#
                ])
                .as_bytes()
            )
        ),
    };
    with_scheme(rng, token.into_bytes())
}

fn with_scheme(rng: &mut Rng, token: Vec<u8>) -> Vec<u8> {
    let scheme: &[u8] = rng.pick(&[
        &b"Bearer "[..],
        b"Bearer ",
        b"bearer  ",
        b"Basic ",
        b"",
        b"Bearer\t",
    ]);
    [scheme, &token].concat()
}

fn header_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(15) {
        0..=3 => rng.ascii(40).into_bytes(),
        4 => rng.bytes(64),                                    // non-UTF-8
        5 => [b"ok".as_slice(), &[0x80, 0xff, 0xc3]].concat(), // obs-text
        6 => rng.below(1_000_000_000).to_string().into_bytes(),
        7 => rng
            .pick(&[
                "-1",
                "0",
                "100",
                "101",
                "1e9",
                "NaN",
                "18446744073709551616",
                "0x10",
            ])
            .as_bytes()
            .to_vec(),
        8 => jwt(rng),
        9 => rng
            .pick(&[
                "10.0.0.1",
                "10.1.2.3, 192.168.0.1, 10.0.0.7",
                "::1",
                "[::1]:80",
                "999.1.1.1",
                ",,,",
                "10.1.0.5,",
            ])
            .as_bytes()
            .to_vec(),
        10 => "w=client;n=default;".repeat(rng.below(50) + 1).into_bytes(),
        11 => "x".repeat(rng.size(8192, &[65_536, 1 << 20])).into_bytes(), // huge
        12 => mint::b64(&rng.bytes(200)).into_bytes(),
        13 => origin(rng),
        _ => Vec::new(),
    }
}

/// Origins that look allowed and are not: look-alike hosts, case, paths, lists, null.
fn origin(rng: &mut Rng) -> Vec<u8> {
    let base = rng.pick(&[
        "https://shop.example",
        "https://shop.example.evil.com",
        "https://SHOP.example",
        "https://app.shop.example:8443",
        "null",
        "https://shop.example/",
        "https://user@shop.example",
        "https://shop.example, https://evil.example",
        "https://[::1]:443",
        "*",
    ]);
    match rng.below(4) {
        0 => [base.as_bytes(), &rng.bytes(4)].concat(),
        1 => format!("{base}{}", "a".repeat(rng.size(1, &[2048, 70_000]))).into_bytes(),
        _ => base.as_bytes().to_vec(),
    }
}

fn header_name(rng: &mut Rng) -> String {
    if rng.chance(60) {
        return rng.pick(NAMES).to_string();
    }
    let len = rng.below(24) + 1;
    (0..len)
        .map(|_| char::from(rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~")))
        .collect()
}

fn path(rng: &mut Rng) -> Vec<u8> {
    match rng.below(12) {
        0..=2 => rng
            .pick(&[
                "/",
                "/api/items",
                "/admin",
                "/a/b/c",
                "/users/42?debug=1",
                "/public/x",
                "/b/x/y/z",
            ])
            .as_bytes()
            .to_vec(),
        3 => rng
            .pick(&[
                "//admin",
                "/a/../admin",
                "/api/%2e%2e/admin",
                "/api%2F..%2Fadmin",
                "/%zz",
                "/admin%00",
                "/api\\..\\admin",
                "*",
                "",
                "http://evil/x",
                "/;x=1/admin",
                "/%c0%ae%c0%ae/admin",
            ])
            .as_bytes()
            .to_vec(),
        4 => format!("/{}", rng.ascii(80)).into_bytes(),
        5 => [b"/".as_slice(), &rng.bytes(40)].concat(),
        6 => format!("/{}", "a/".repeat(rng.up_to(50, &[20_000]))).into_bytes(),
        7 => format!("/x?{}", "k=v&".repeat(rng.up_to(50, &[5000]))).into_bytes(),
        8 => format!("/{}", "%".repeat(rng.below(100) + 1)).into_bytes(),
        9 => format!("/users/{}", "%2e%2e/".repeat(rng.below(50))).into_bytes(),
        _ => format!("/a/{}/b", rng.below(1000)).into_bytes(),
    }
}

fn pseudo(rng: &mut Rng) -> Headers {
    let method = rng.pick(&[
        "GET", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "get", "", "G\u{e9}T",
    ]);
    let authority: Vec<u8> = match rng.below(6) {
        0..=2 => b"shop.example.com".to_vec(),
        3 => rng
            .pick(&[&b"x.internal:99999"[..], b"[::1]:80", b"", b"a..b", b":"])
            .to_vec(),
        4 => rng.bytes(30),
        _ => "h".repeat(rng.up_to(300, &[70_000])).into_bytes(),
    };
    let mut h = vec![
        (":authority".to_string(), authority),
        (":path".to_string(), path(rng)),
        (":method".to_string(), method.as_bytes().to_vec()),
        (":scheme".to_string(), b"http".to_vec()),
    ];
    if rng.chance(8) {
        // A pseudo-header twice, or one missing.
        let i = rng.below(h.len());
        if rng.chance(50) {
            let extra = (h[i].0.clone(), path(rng));
            h.push(extra);
        } else {
            h.remove(i);
        }
    }
    h
}

fn extra_headers(rng: &mut Rng) -> Headers {
    // 10k headers take about a second through a debug-built host (Envoy's default
    // limit is 100), so about one input in a thousand has them.
    let count = if rng.huge && rng.chance(3) {
        10_000
    } else {
        rng.below(10)
    };
    (0..count)
        .map(|_| (header_name(rng), header_value(rng)))
        .collect()
}

fn body(rng: &mut Rng) -> Option<Vec<u8>> {
    match rng.below(8) {
        0..=3 => None,
        4 => Some(rng.bytes(256)),
        5 => Some(json_body(rng)),
        6 => Some(vec![b'z'; rng.size(4096, &[65_536, 1 << 20])]),
        _ => Some(Vec::new()),
    }
}

/// JSON-ish bodies for the body stage's rewrites: valid, cut short, deeply nested
/// (past serde_json's depth limit), escaped keys, huge.
fn json_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(7) {
        0 => br#"{"user":"alice","items":[1,2,3]}"#.to_vec(),
        1 => {
            br#"{"user_name":"ann","password":"x","debug":{"a":[1,{"b":null}]},"a":[0,1]}"#.to_vec()
        }
        2 => br#"{"a/b":1,"~":2,"a":{"x":"#.to_vec(),
        3 => {
            let depth = rng.size(200, &[10_000, 100_000]);
            [b"[".repeat(depth), b"]".repeat(depth)].concat()
        }
        4 => {
            let n = rng.size(1000, &[50_000]);
            let items = vec!["{\"k\":\"v\",\"n\":1.5e300}"; n].join(",");
            format!("{{\"internal\":true,\"list\":[{items}]}}").into_bytes()
        }
        5 => br#"[1,2,3] trailing"#.to_vec(),
        _ => rng.ascii(64).into_bytes(),
    }
}

/// A JSON content type (the body stage rewrites only those), sometimes.
fn json_type(rng: &mut Rng) -> Option<(String, Vec<u8>)> {
    let value = match rng.below(6) {
        0 => "application/json",
        1 => "application/problem+json; charset=utf-8",
        2 => "APPLICATION/JSON",
        _ => return None,
    };
    Some(("content-type".to_string(), value.as_bytes().to_vec()))
}

pub fn request(rng: &mut Rng) -> Request {
    rng.huge = rng.chance(3);
    let mut headers = pseudo(rng);
    headers.extend(extra_headers(rng));
    headers.extend(json_type(rng));
    let status = rng
        .pick(&["200", "404", "503", "0", "999", "abc", "", "200 OK"])
        .to_string();
    let mut response = vec![(":status".to_string(), status.into_bytes())];
    response.extend(json_type(rng));
    if rng.chance(30) {
        response.extend(extra_headers(rng));
    }
    Request {
        headers,
        body: body(rng),
        trailers: rng.chance(10).then(|| extra_headers(rng)),
        response,
        response_body: body(rng),
    }
}

/// How the upstream of a callout (JWKS, ext authz) answers.
pub enum Reply {
    Respond(Headers, Vec<u8>),
    Fail,
    TimeOut,
}

pub fn reply(rng: &mut Rng) -> Reply {
    match rng.below(10) {
        0 => Reply::Fail,
        1 => Reply::TimeOut,
        _ => {
            let status = rng.pick(&["200", "200", "401", "403", "500", "302", "0", "-1", "x", ""]);
            let mut headers = vec![(":status".to_string(), status.as_bytes().to_vec())];
            if rng.chance(50) {
                headers.extend(extra_headers(rng));
            }
            if rng.chance(30) {
                headers.push(("x-authz-user".to_string(), header_value(rng)));
            }
            let body = match rng.below(6) {
                0 => crate::mint::public_jwks().to_string().into_bytes(),
                1 => {
                    let mut j = crate::mint::jwks_with_an_off_curve_key().to_string().into_bytes();
                    let at = rng.below(j.len());
                    j.truncate(at);
                    j
                }
                2 => br#"{"keys":[{"kty":"RSA","n":"","e":""},{"kty":"EC","crv":"P-521"},{"kty":"oct"},null,1]}"#.to_vec(),
                3 => rng.bytes(512),
                4 => format!("{{\"keys\":[{}]}}", "{}, ".repeat(rng.up_to(20, &[5000])) + "{}").into_bytes(),
                _ => Vec::new(),
            };
            Reply::Respond(headers, body)
        }
    }
}

/// How the rate limit service (a unary gRPC call) answers.
pub enum GrpcReply {
    /// Status OK with these bytes as the response message.
    Respond(Vec<u8>),
    /// Closed with this non-OK gRPC status.
    Fail(u32),
    /// Never answered: the call's deadline passes.
    TimeOut,
}

/// A reply to a `ShouldRateLimit` call: mostly well-formed `RateLimitResponse`s with
/// extreme numbers (codes, limits, units, resets) and a status count that may not match
/// the descriptors sent; hostile bytes (random, truncated, corrupted, lengths past the
/// end, deep nesting, wrong wire types); gRPC errors; timeouts.
pub fn grpc_reply(rng: &mut Rng) -> GrpcReply {
    match rng.below(20) {
        0..=2 => GrpcReply::Fail(rng.pick(&[1, 2, 4, 8, 13, 14, 14, 16, 99])),
        3 | 4 => GrpcReply::TimeOut,
        5..=12 => GrpcReply::Respond(rls_response(rng)),
        _ => GrpcReply::Respond(hostile_message(rng)),
    }
}

/// A `RateLimitResponse` in protobuf wire format (the fields the filter reads and some
/// it must skip).
fn rls_response(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.chance(90) {
        put_varint_field(&mut out, 1, rng.pick(&[0, 1, 1, 2, 2, 3, 99, u64::MAX]));
    }
    for _ in 0..rng.up_to(4, &[300]) {
        let mut st = Vec::new();
        put_varint_field(&mut st, 1, rng.pick(&[0, 1, 2, 2, 7, u64::MAX]));
        if rng.chance(80) {
            let mut limit = Vec::new();
            let per_unit = rng.pick(&[0, 1, 5, 100, u64::from(u32::MAX), u64::MAX]);
            put_varint_field(&mut limit, 1, per_unit);
            put_varint_field(&mut limit, 2, rng.pick(&[0, 1, 2, 3, 4, 5, 6, 7, 99]));
            if rng.chance(30) {
                put_bytes_field(&mut limit, 3, rng.ascii(20).as_bytes());
            }
            put_bytes_field(&mut st, 2, &limit);
        }
        put_varint_field(
            &mut st,
            3,
            rng.pick(&[0, 1, 4, u64::from(u32::MAX), u64::MAX]),
        );
        if rng.chance(80) {
            let mut reset = Vec::new();
            // Seconds as an int64 varint: negative ones are ten bytes long.
            let secs: i64 = rng.pick(&[0, 1, 59, 3600, -1, i64::MAX, i64::MIN]);
            put_varint_field(&mut reset, 1, secs as u64);
            put_varint_field(&mut reset, 2, rng.pick(&[0, 1, 999_999_999, u64::MAX]));
            put_bytes_field(&mut st, 4, &reset);
        }
        put_bytes_field(&mut out, 2, &st);
    }
    if rng.chance(20) {
        // Fields the filter ignores: response_headers_to_add, raw_body, a fixed64.
        let mut header = Vec::new();
        put_bytes_field(&mut header, 1, b"x-from-rls");
        put_bytes_field(&mut header, 2, &header_value(rng));
        put_bytes_field(&mut out, 3, &header);
        put_bytes_field(&mut out, 5, &rng.bytes(64));
        put_varint(&mut out, 9 << 3 | 1);
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}

/// Bytes no service should send: damaged replies and messages of the wrong shape.
fn hostile_message(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => rng.bytes(256),
        1 => {
            let mut m = rls_response(rng);
            m.truncate(rng.below(m.len() + 1));
            m
        }
        2 => {
            let mut m = rls_response(rng);
            for _ in 0..=rng.below(3) {
                let at = rng.below(m.len().max(1));
                if let Some(b) = m.get_mut(at) {
                    *b = rng.next_u64() as u8;
                }
            }
            m
        }
        3 => {
            // A length far past the end of the message.
            let mut m = Vec::new();
            put_varint(&mut m, 2 << 3 | 2);
            put_varint(&mut m, rng.pick(&[64, 1 << 31, u64::MAX]));
            m.extend_from_slice(&rng.bytes(16));
            m
        }
        4 => {
            // Statuses nested in statuses, thousands deep.
            let mut m = Vec::new();
            for _ in 0..rng.up_to(50, &[5000]) {
                let mut outer = Vec::new();
                put_bytes_field(&mut outer, 2, &m);
                m = outer;
            }
            m
        }
        5 => {
            // Known fields with the wrong wire types, and field number 0.
            let mut m = Vec::new();
            put_bytes_field(&mut m, 1, b"OK");
            put_varint_field(&mut m, 2, 1);
            if rng.chance(50) {
                put_varint_field(&mut m, 0, 1);
            }
            m
        }
        6 => {
            // Wire types 3, 4, 6 and 7 (groups and invalid ones), and a varint that
            // never ends.
            let mut m = vec![rng.pick(&[0x0b, 0x0c, 0x0e, 0x0f, 0x13])];
            m.extend(std::iter::repeat_n(0xff, rng.below(20)));
            m
        }
        _ => Vec::new(),
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
