//! Helpers for `/admin/diagnose`: the report (the last one or a new one), a run of the checks,
//! and one backend's entry.

use serde_json::Value;

use super::proxy::Proxy;
use super::reload;

/// `GET /admin/diagnose`: the last report if it is fresh, else a new one.
pub async fn report(proxy: &Proxy) -> Value {
    let a = proxy.admin_get("/admin/diagnose").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    a.json()
}

/// `POST /admin/diagnose`: the checks run now.
pub async fn run(proxy: &Proxy) -> Value {
    let (status, doc) = reload::post(proxy, "/admin/diagnose", "", None).await;
    assert_eq!(status, 200, "{doc:#}");
    doc
}

/// The entry of backend `name` in `doc`.
pub fn backend<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["name"] == name))
        .unwrap_or_else(|| panic!("no backend {name} in {doc:#}"))
}
