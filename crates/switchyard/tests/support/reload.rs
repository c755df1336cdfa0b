//! Helpers for the config API (`/admin/config`): the config in force, and POSTs to it.

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use switchyard_config::Config;

use super::body::full;
use super::client::{self, Client};
use super::proxy::Proxy;

/// The config in force (restart-only settings at their running values).
pub fn running(proxy: &Proxy) -> Config {
    (*proxy.handle().shared().routing().config).clone()
}

/// `running(proxy)` changed by `f`, as INI text.
pub fn edited(proxy: &Proxy, f: impl FnOnce(&mut Config)) -> String {
    let mut c = running(proxy);
    f(&mut c);
    c.to_ini()
}

/// POSTs `body` to `path` on the admin listener, with `token` as the bearer token; the
/// status and the JSON answer (`Null` if it is not JSON).
pub async fn post(
    proxy: &Proxy,
    path: &str,
    body: impl Into<Bytes>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut c = Client::connect(proxy.admin_addr()).await;
    let mut req = client::request(Method::POST, path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let a = c.request(req.body(full(body.into())).unwrap()).await;
    let doc = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    (a.status.as_u16(), doc)
}

/// POSTs a whole config (INI) to `/admin/config` and expects it applied; the answer.
pub async fn apply(proxy: &Proxy, ini: String) -> Value {
    let (status, doc) = post(proxy, "/admin/config", ini, None).await;
    assert_eq!(status, 200, "{doc:#}");
    doc
}

/// The backend names answering `n` requests for `path`, each on a new connection.
pub async fn answers(proxy: &Proxy, path: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client::get(proxy.addr(), path).await.text());
    }
    out
}
