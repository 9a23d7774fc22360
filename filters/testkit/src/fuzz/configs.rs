//! Plugin configs for the fuzz run: the corpus's valid configs, and mutations of them.
//! Most mutations keep the JSON well-formed and change one node (a wrong type, an
//! extreme number, a weird string, a dropped key, a copied array element), so they reach
//! the filters' validation and, when it lets them through, the request path with a
//! config nobody wrote by hand; a few cut or corrupt the bytes, for the parser.

use super::rng::Rng;
use serde_json::{json, Map, Value};

/// A config from the corpus with `$JWKS` replaced by the fixture keys' JWKS, so JWT
/// configs can verify the tokens the generator mints.
pub fn expand(text: &str) -> String {
    text.replace(
        "\"$JWKS\"",
        &Value::String(crate::mint::public_jwks().to_string()).to_string(),
    )
}

/// The config one host is built with: the seed as it is, or mutated.
pub fn mutate(rng: &mut Rng, seed: &str) -> Vec<u8> {
    match rng.below(10) {
        0..=3 => seed.as_bytes().to_vec(),
        4 => mutate_bytes(rng, seed.as_bytes()),
        _ => match serde_json::from_str::<Value>(seed) {
            Ok(mut doc) => {
                for _ in 0..=rng.below(2) {
                    mutate_node(rng, &mut doc);
                }
                doc.to_string().into_bytes()
            }
            Err(_) => mutate_bytes(rng, seed.as_bytes()),
        },
    }
}

fn mutate_bytes(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.below(4) {
        0 => out.truncate(rng.below(out.len() + 1)),
        1 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(out.len().max(1));
                if let Some(b) = out.get_mut(at) {
                    *b = rng.next_u64() as u8;
                }
            }
        }
        2 => {
            let at = rng.below(out.len() + 1);
            let junk = rng.pick(&[
                &b"\xff\xfe"[..],
                b"\0",
                b"{{{{",
                b"]]",
                b"\\u0000",
                b"1e999",
            ]);
            out.splice(at..at, junk.iter().copied());
        }
        _ => out = b"{\"a\":".repeat(rng.below(2000) + 1),
    }
    out
}

/// Replaces, removes or grows one node somewhere in the document.
fn mutate_node(rng: &mut Rng, doc: &mut Value) {
    // Walk down a random path, stopping early now and then.
    let mut node = doc;
    loop {
        let descend = rng.chance(70);
        let next_is_container = match node {
            Value::Object(m) => !m.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => false,
        };
        if !descend || !next_is_container {
            break;
        }
        node = match node {
            Value::Object(m) => {
                let key = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .unwrap_or_default();
                if rng.chance(15) {
                    m.remove(&key);
                    return;
                }
                match m.get_mut(&key) {
                    Some(child) => child,
                    None => return,
                }
            }
            Value::Array(a) => {
                let i = rng.below(a.len());
                if rng.chance(15) {
                    let copy = a[i].clone();
                    // Many copies only of a small element: a config of hundreds of
                    // megabytes tests the allocator, not the filter.
                    let small = copy.to_string().len() < 512;
                    let times = if small && rng.chance(10) { 2000 } else { 1 };
                    a.extend(std::iter::repeat_n(copy, times));
                    return;
                }
                &mut a[i]
            }
            _ => return,
        };
    }
    *node = random_value(rng, node);
}

/// A value in place of `old`: usually of a confusing kind for what was there.
fn random_value(rng: &mut Rng, old: &Value) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.pick(&[0i64, -1, 1, i64::MAX, i64::MIN, 4_294_967_296, 101, 65536])),
        3 => json!(rng.pick(&[0.5f64, -0.0, 1e300, 1e-300, 99.999])),
        4 => json!(rng.ascii(40)),
        5 => json!(weird_string(rng)),
        6 => json!([]),
        7 => json!({}),
        8 => json!([old.clone(), old.clone()]),
        9 => {
            let mut m = Map::new();
            m.insert(weird_string(rng), old.clone());
            Value::Object(m)
        }
        10 => match old {
            Value::String(s) => json!(format!("{s}{}", weird_string(rng))),
            other => json!(other.to_string()),
        },
        _ => {
            let max = if rng.chance(10) { 200_000 } else { 200 };
            json!("x".repeat(rng.below(max)))
        }
    }
}

/// Strings that have broken parsers of durations, paths, regexes, CIDRs and templates.
fn weird_string(rng: &mut Rng) -> String {
    rng.pick(&[
        "",
        "0s",
        "-1s",
        "1h1s",
        "99999999999999999999s",
        "1.5.5ms",
        "NaN",
        "/{**}/{**}",
        "/{",
        "/a/{x}/{x}",
        "(((((((((",
        "[z-a]",
        "\\",
        "a{99999}",
        "300.1.1.1/33",
        "::/129",
        "10.0.0.0/-1",
        "%REQ(%",
        "%REQ(x)%%",
        "*",
        "**",
        ":path",
        "\u{0}",
        "\u{10FFFF}",
        "ü/ü",
        "x-\r\nevil: 1",
    ])
    .to_string()
}
