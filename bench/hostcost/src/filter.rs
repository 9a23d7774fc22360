//! The filter itself: the plan a configuration makes and the calls each request makes.
//! Built only for wasm32; natively the crate is the list of kinds the rig reads.

use crate::{Kind, BATCH, BATCH_PLAIN};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;
use wasmesh_sdk::host::{verify_signature, Verdict};

/// The six headers [`Kind::SetHeader6`] and [`Kind::MapReplace6`] write.
const SIX: [(&str, &str); 6] = [
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
    ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("x-b3-spanid", "00f067aa0ba902b7"),
    ("x-b3-parentspanid", "0000000000000000"),
    ("x-b3-sampled", "1"),
];

struct Plan {
    kind: Kind,
    calls: u32,
    metric: u32,
    /// `expr-6`'s compiled expression.
    token: Vec<u8>,
    es256: Es256,
    rsa: rsa::RsaPublicKey,
}

/// The authz tests' 2048-bit RSA key, and its RS256 signature over [`SIGNED`] (made
/// with `openssl dgst -sha256 -sign filters/authz/tests/keys/rsa.pem`).
const RSA_KEY_DER: &[u8] = include_bytes!("../fixtures/rsa-pub.der");
const RS256_SIGNATURE: &[u8] = include_bytes!("../fixtures/rs256.sig");

/// A JWS signing input, signed once with a fixed P-256 key: what the ES256 kinds check.
struct Es256 {
    key: p256::ecdsa::VerifyingKey,
    signature: p256::ecdsa::Signature,
    /// The key as DER SubjectPublicKeyInfo and the signature as DER, for Envoy.
    key_der: Vec<u8>,
    signature_der: Vec<u8>,
}

const SIGNED: &[u8] = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0";

impl Es256 {
    fn new() -> Option<Es256> {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::EncodePublicKey;
        let signing = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).ok()?;
        let signature: p256::ecdsa::Signature = signing.sign(SIGNED);
        let key = *signing.verifying_key();
        Some(Es256 {
            key_der: key.to_public_key_der().ok()?.as_bytes().to_vec(),
            signature_der: signature.to_der().as_bytes().to_vec(),
            key,
            signature,
        })
    }
}

#[derive(Default)]
struct Root {
    plan: Option<Rc<Plan>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        let Some((name, calls)) = config.split_once(',') else {
            let _ = hostcalls::log(LogLevel::Error, "configuration: expected KIND,N");
            return false;
        };
        let Some(kind) = Kind::ALL
            .iter()
            .find(|(n, _)| *n == name.trim())
            .map(|k| k.1)
        else {
            let _ = hostcalls::log(
                LogLevel::Error,
                &format!("configuration: unknown kind {name}"),
            );
            return false;
        };
        let Ok(calls) = calls.trim().parse() else {
            let _ = hostcalls::log(LogLevel::Error, "configuration: N is not a number");
            return false;
        };
        let metric_type = if kind == Kind::Histogram {
            MetricType::Histogram
        } else {
            MetricType::Counter
        };
        let metric = hostcalls::define_metric(metric_type, "wasmesh_hostcost").unwrap_or(0);
        let _ = hostcalls::set_shared_data("wasmesh.hostcost", Some(b"0123456789abcdef"), None);
        let mut token = Vec::new();
        let expression = match kind {
            Kind::Expr6 => Some(BATCH),
            Kind::Expr6Plain => Some(BATCH_PLAIN),
            Kind::Expr1 => Some("[has(source.address) ? [source.address] : []]"),
            _ => None,
        };
        if let Some(expression) = expression {
            match hostcalls::call_foreign_function("expr_create", Some(expression.as_bytes())) {
                Ok(Some(t)) => token = t,
                _ => {
                    let _ = hostcalls::log(LogLevel::Error, "expr_create refused the batch");
                    return false;
                }
            }
        }
        let Some(es256) = Es256::new() else {
            let _ = hostcalls::log(LogLevel::Error, "could not make the ES256 signature");
            return false;
        };
        let Ok(rsa) =
            <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(RSA_KEY_DER)
        else {
            let _ = hostcalls::log(LogLevel::Error, "could not read the RSA key");
            return false;
        };
        self.plan = Some(Rc::new(Plan {
            kind,
            calls,
            metric,
            token,
            es256,
            rsa,
        }));
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream(self.plan.clone()?)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream(Rc<Plan>);

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
        let plan = &self.0;
        // The map as the request arrived, with the six added: what `map-replace-6`
        // writes (an SDK that batched its writes would hold the map already).
        let replaced: Vec<(String, String)> = if plan.kind == Kind::MapReplace6 {
            let mut map = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
            map.extend(SIX.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            map
        } else {
            Vec::new()
        };
        for _ in 0..plan.calls {
            // Results are ignored: only the call's cost is of interest.
            let _ = match plan.kind {
                Kind::Property => hostcalls::get_property(vec!["source", "address"]).map(drop),
                Kind::HeaderValue => {
                    hostcalls::get_map_value(MapType::HttpRequestHeaders, ":path").map(drop)
                }
                Kind::HeaderMap => hostcalls::get_map(MapType::HttpRequestHeaders).map(drop),
                Kind::SharedGet => hostcalls::get_shared_data("wasmesh.hostcost").map(drop),
                Kind::SetHeader => {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-cost", Some("1"))
                }
                Kind::Counter => hostcalls::increment_metric(plan.metric, 1),
                Kind::Histogram => hostcalls::record_metric(plan.metric, 5),
                Kind::LogLevel => hostcalls::get_log_level().map(drop),
                Kind::Expr6 | Kind::Expr6Plain | Kind::Expr1 => {
                    hostcalls::call_foreign_function("expr_evaluate", Some(&plan.token)).map(drop)
                }
                Kind::ClearRoute => {
                    hostcalls::call_foreign_function("clear_route_cache", None).map(drop)
                }
                Kind::VerifyEs256 => {
                    let e = &plan.es256;
                    let verdict = verify_signature("sha256", &e.key_der, &e.signature_der, SIGNED);
                    if verdict != Ok(Verdict::Valid) {
                        let _ = hostcalls::log(LogLevel::Error, "verify-es256: not valid");
                    }
                    Ok(())
                }
                Kind::VerifyRs256 => {
                    let verdict = verify_signature("sha256", RSA_KEY_DER, RS256_SIGNATURE, SIGNED);
                    if verdict != Ok(Verdict::Valid) {
                        let _ = hostcalls::log(LogLevel::Error, "verify-rs256: not valid");
                    }
                    Ok(())
                }
                Kind::Rs256InWasm => {
                    use sha2::Digest;
                    let digest = sha2::Sha256::digest(SIGNED);
                    let scheme = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
                    if plan.rsa.verify(scheme, &digest, RS256_SIGNATURE).is_err() {
                        let _ = hostcalls::log(LogLevel::Error, "rs256-in-wasm: not valid");
                    }
                    Ok(())
                }
                Kind::SetHeader6 => SIX.iter().try_for_each(|(k, v)| {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, k, Some(v))
                }),
                Kind::MapReplace6 => {
                    let pairs: Vec<(&str, &str)> = replaced
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    hostcalls::set_map(MapType::HttpRequestHeaders, pairs)
                }
                Kind::Es256InWasm => {
                    use p256::ecdsa::signature::Verifier;
                    let e = &plan.es256;
                    if e.key.verify(SIGNED, &e.signature).is_err() {
                        let _ = hostcalls::log(LogLevel::Error, "es256-in-wasm: not valid");
                    }
                    Ok(())
                }
            };
        }
        Action::Continue
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}
