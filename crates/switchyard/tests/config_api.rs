//! The config-as-code API: `GET /admin/config` shows the config in force (INI or JSON,
//! secrets redacted), `POST /admin/config` validates a whole config and applies it atomically
//! or changes nothing, `dry_run` applies nothing, rollback goes back, restart-only settings
//! are reported and not applied, and every change or refusal is audited.

mod support;

use http::StatusCode;
use serde_json::Value;
use support::client;
use support::reload::{answers, apply, edited, post, running};
use support::{proxy, server, wait_for, DEADLINE};

async fn two_backends() -> (server::Backend, server::Backend) {
    (server::fixed("one").await, server::fixed("two").await)
}

fn base(one: &server::Backend, two: &server::Backend) -> proxy::Builder {
    proxy::new()
        .backend("one", one.addr())
        .backend("two", two.addr())
        .route("chat", "/", &["one"], "round_robin")
}

/// The config with route `chat` sent to `backend`.
fn to(p: &proxy::Proxy, backend: &str) -> String {
    edited(p, |c| c.routes[0].backends = vec![backend.to_string()])
}

#[tokio::test]
async fn an_invalid_config_gets_every_error_and_changes_nothing() {
    let (one, two) = two_backends().await;
    let p = base(&one, &two).start();
    let before = p.admin_get("/admin/config").await.text();
    let bad =
        "[server]\nlisten = 127.0.0.1:0\nthreads = lots\n\n[backend one]\naddress = 127.0.0.1:1\n\
               weight = heavy\n\n[route chat]\nbackends = nowhere\n";
    let (status, doc) = post(&p, "/admin/config", bad, None).await;
    assert_eq!(status, 400, "{doc:#}");
    let errors = doc["errors"].as_array().unwrap();
    assert!(errors.len() >= 3, "{doc:#}");
    for key in ["threads", "weight", "backends"] {
        let e = errors
            .iter()
            .find(|e| e["key"] == key)
            .unwrap_or_else(|| panic!("no error for {key}: {doc:#}"));
        assert!(e["line"].as_u64().unwrap() > 0, "{e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(p.admin_get("/admin/config").await.text(), before);
    assert!(answers(&p, "/", 3).await.iter().all(|a| a == "one"));
    let stats = p.stats().await;
    assert_eq!(stats["config"]["version"], 0);
    assert_eq!(stats["config"]["reload_failures"], 1);
    // Not JSON, or too large: refused too.
    let (status, _) = post(&p, "/admin/config?format=json", "[server]", None).await;
    assert_eq!(status, 400);
    let (status, _) = post(&p, "/admin/config", vec![b';'; (1 << 20) + 1], None).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn a_valid_config_applies_dry_run_does_not_and_rollback_goes_back() {
    let (one, two) = two_backends().await;
    let p = base(&one, &two).start();
    // Dry run: the answer says what would change; nothing does.
    let (status, doc) = post(&p, "/admin/config?dry_run=1", to(&p, "two"), None).await;
    assert_eq!(status, 200, "{doc:#}");
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["version"], 0);
    assert!(
        doc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("chat")),
        "{doc:#}"
    );
    assert!(answers(&p, "/", 3).await.iter().all(|a| a == "one"));
    // Applied.
    let doc = apply(&p, to(&p, "two")).await;
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["dry_run"], false);
    assert_eq!(doc["restart_required"], Value::Array(vec![]));
    assert!(answers(&p, "/", 3).await.iter().all(|a| a == "two"));
    assert!(p
        .admin_get("/admin/config")
        .await
        .text()
        .contains("backends = two"));
    let stats = p.stats().await;
    assert_eq!(stats["config"]["version"], 1);
    assert_eq!(stats["config"]["reloads"], 1);
    assert!(stats["config"]["last_reload_unix"].as_u64().unwrap() > 0);
    // Rollback: back to `one`; then nothing is left to roll back to.
    let (status, doc) = post(&p, "/admin/config/rollback", "", None).await;
    assert_eq!(status, 200, "{doc:#}");
    assert_eq!(doc["version"], 2);
    assert!(answers(&p, "/", 3).await.iter().all(|a| a == "one"));
    let (status, _) = post(&p, "/admin/config/rollback", "", None).await;
    assert_eq!(status, 409);
    // Without a config file, a re-read is refused.
    let (status, _) = post(&p, "/admin/config/reload", "", None).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn restart_only_changes_are_reported_and_not_applied() {
    let (one, two) = two_backends().await;
    let p = base(&one, &two).start();
    let ini = edited(&p, |c| {
        c.server.threads = 3;
        c.server.upstream_keepalive = 7;
        c.server.retries = 2;
        c.routes[0].backends = vec!["two".into()];
    });
    let doc = apply(&p, ini).await;
    let pending: Vec<&str> = doc["restart_required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(pending, ["[server] threads", "[server] upstream_keepalive"]);
    let now = running(&p);
    assert_eq!(now.server.threads, 1);
    assert_eq!(
        now.server.upstream_keepalive,
        p.handle().shared().config.server.upstream_keepalive
    );
    assert_eq!(now.server.retries, 2, "a reloadable [server] key applies");
    let text = p.admin_get("/admin/config").await.text();
    assert!(
        text.contains("threads = 1") && text.contains("retries = 2"),
        "{text}"
    );
    assert!(answers(&p, "/", 2).await.iter().all(|a| a == "two"));
}

#[tokio::test]
async fn json_format_round_trips() {
    let (one, two) = two_backends().await;
    let p = base(&one, &two).start();
    let a = p.admin_get("/admin/config?format=json").await;
    assert_eq!(a.status, StatusCode::OK);
    let mut doc = a.json();
    let sections = doc["sections"].as_array_mut().unwrap();
    assert_eq!(sections[0]["section"], "server");
    let chat = sections
        .iter_mut()
        .find(|s| s["section"] == "route chat")
        .unwrap();
    chat["keys"]["backends"] = "two".into();
    let (status, answer) = post(&p, "/admin/config?format=json", doc.to_string(), None).await;
    assert_eq!(status, 200, "{answer:#}");
    assert!(answers(&p, "/", 2).await.iter().all(|a| a == "two"));
}

#[tokio::test]
async fn changes_and_refusals_are_audited_without_secrets_and_need_the_token() {
    const TOKEN: &str = "adm-7f3e-config-secret";
    let audit = proxy::temp_path("audit.log");
    let (one, two) = two_backends().await;
    let p = base(&one, &two)
        .admin_token(TOKEN)
        .server(|s| s.audit.log = Some(audit.clone()))
        .start();
    let ini = to(&p, "two");
    let (status, _) = post(&p, "/admin/config", ini.clone(), None).await;
    assert_eq!(status, 401, "the config API needs the admin token");
    let (status, doc) = post(&p, "/admin/config", ini.clone(), Some(TOKEN)).await;
    assert_eq!(status, 200, "{doc:#}");
    let (status, _) = post(
        &p,
        "/admin/config",
        "[route x]\nbalancer = nope\n",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400);
    let lines = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["type"] == "control" && l["action"] != "admin_auth_failed")
            .collect::<Vec<_>>()
    };
    wait_for(DEADLINE, "2 config control lines", || async {
        lines().len() >= 2
    })
    .await;
    let lines = lines();
    assert_eq!(lines[0]["action"], "config_changed");
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(
        lines[0]["detail"]["changes"], doc["changes"],
        "the audit line says what the answer said"
    );
    assert_eq!(lines[1]["action"], "config_rejected");
    assert!(lines[1]["detail"]["errors"].as_u64().unwrap() >= 1);
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(TOKEN));
    let shown = client::get_authorized(p.admin_addr(), "/admin/config", Some(TOKEN)).await;
    assert!(!shown.text().contains(TOKEN));
}

#[tokio::test]
async fn config_history_bounds_the_rollbacks() {
    let (one, two) = two_backends().await;
    let p = base(&one, &two).start();
    let ini = |backend: &str| {
        edited(&p, |c| {
            c.server.config_history = 1;
            c.routes[0].backends = vec![backend.to_string()];
        })
    };
    apply(&p, ini("two")).await;
    apply(&p, ini("one")).await;
    apply(&p, ini("two")).await;
    // Only the config before the last reload is kept.
    let (status, _) = post(&p, "/admin/config/rollback", "", None).await;
    assert_eq!(status, 200);
    assert!(answers(&p, "/", 2).await.iter().all(|a| a == "one"));
    let (status, doc) = post(&p, "/admin/config/rollback", "", None).await;
    assert_eq!(status, 409, "{doc:#}");
    assert!(answers(&p, "/", 2).await.iter().all(|a| a == "one"));
}
