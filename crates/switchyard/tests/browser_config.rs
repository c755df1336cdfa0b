//! The web config UI in a real browser (headless Chromium): signing in with the admin token,
//! a bad edit shown with its line and nothing applied, a good edit that moves a route to
//! another backend applied and taking effect, and a rollback. Screenshots are saved as test
//! artefacts. Skipped, with a message, where Chromium is not installed.

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::Duration;

use browser::Browser;
use fantoccini::Locator;
use support::{client, proxy, server};

const TOKEN: &str = "adm-browser-2b7e151628aed2a6";
const WAIT: Duration = Duration::from_secs(20);

/// Puts `text` in the editor as if typed.
async fn edit(b: &Browser, text: &str) {
    let script = format!(
        "const e = document.getElementById('editor'); e.value = {}; \
         e.dispatchEvent(new Event('input')); return true;",
        serde_json::to_string(text).unwrap()
    );
    b.eval(&script).await;
}

async fn click(b: &Browser, css: &str) {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_ui_validates_applies_and_rolls_back() {
    let Some(b) = Browser::start("the_config_ui_validates_applies_and_rolls_back").await else {
        return;
    };
    let (one, two) = (server::fixed("one").await, server::fixed("two").await);
    let p = proxy::new()
        .backend("one", one.addr())
        .backend("two", two.addr())
        .route("chat", "/", &["one"], "round_robin")
        .admin_token(TOKEN)
        .start();
    let admin = format!("http://{}", p.admin_addr());
    let through = |_: ()| async { client::get(p.addr(), "/").await.text() };
    assert_eq!(through(()).await, "one");

    // Without a session the browser is sent to sign in, then comes back.
    b.open(&format!("{admin}/admin/config/ui")).await;
    b.wait_until(
        WAIT,
        "the sign-in form",
        "return !!document.getElementById('token')",
    )
    .await;
    b.screenshot("config-ui-0-sign-in").await;
    b.client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(&b, "#sign-in").await;
    b.wait_until(
        WAIT,
        "the running config in the editor",
        "const e = document.getElementById('editor'); return !!e && e.value.includes('[route chat]');",
    )
    .await;
    let running: String = b
        .eval("return document.getElementById('editor').value;")
        .await
        .as_str()
        .unwrap()
        .to_string();
    b.screenshot("config-ui-1-loaded").await;

    // A bad edit: an unknown key on a known line; the error is listed with that line.
    let mut lines: Vec<String> = running.lines().map(str::to_string).collect();
    let route = lines.iter().position(|l| l == "[route chat]").unwrap();
    lines.insert(route + 1, "backendz = two".to_string());
    let bad_line = route + 2;
    edit(&b, &lines.join("\n")).await;
    click(&b, "#validate").await;
    b.wait_until(
        WAIT,
        "the validation error",
        &format!("return !!document.querySelector('#error-list li[data-line=\"{bad_line}\"]');"),
    )
    .await;
    let errors = b.text("#error-list").await;
    assert!(errors.contains("backendz"), "{errors}");
    assert!(
        b.text("#diff").await.contains("+ backendz = two"),
        "the text diff shows the edit"
    );
    b.screenshot("config-ui-2-invalid").await;
    click(&b, "#apply").await;
    b.wait_until(
        WAIT,
        "apply refused",
        "return document.getElementById('result').textContent.includes('unchanged');",
    )
    .await;
    assert_eq!(
        through(()).await,
        "one",
        "an invalid config changes nothing"
    );
    assert_eq!(p.stats().await["config"]["version"], 0);

    // A good edit: the route moves to backend two; validated, then applied.
    let good = running.replacen(
        "[route chat]\npath_prefix = /\nbackends = one",
        "[route chat]\npath_prefix = /\nbackends = two",
        1,
    );
    assert_ne!(
        good, running,
        "the route's backends line is where expected:\n{running}"
    );
    edit(&b, &good).await;
    click(&b, "#validate").await;
    b.wait_until(
        WAIT,
        "the change summary",
        "return !!document.querySelector('#change-list li');",
    )
    .await;
    assert!(b.text("#errors").await.contains("valid"));
    click(&b, "#apply").await;
    b.wait_until(
        WAIT,
        "the config applied",
        "return document.getElementById('result').textContent.includes('version 1 is in force');",
    )
    .await;
    b.screenshot("config-ui-3-applied").await;
    assert_eq!(
        through(()).await,
        "two",
        "the next request goes to the new backend"
    );
    assert_eq!(p.stats().await["config"]["version"], 1);

    // Roll back (confirming the browser's prompt): the route is back on one.
    click(&b, "#rollback").await;
    b.client.accept_alert().await.expect("the confirm prompt");
    b.wait_until(
        WAIT,
        "the rollback",
        "return document.getElementById('result').textContent.includes('rolled back');",
    )
    .await;
    b.screenshot("config-ui-4-rolled-back").await;
    assert_eq!(through(()).await, "one");
    b.wait_until(
        WAIT,
        "the editor shows the restored config",
        "return document.getElementById('editor').value.includes('backends = one');",
    )
    .await;

    // The only console errors are the browser's notes of the refused (400) config posts.
    let unexpected: Vec<_> = b
        .console()
        .await
        .into_iter()
        .filter(|c| c.level == "SEVERE" || c.level == "WARNING")
        .filter(|c| !c.message.contains("status of 400"))
        .collect();
    assert!(unexpected.is_empty(), "console: {unexpected:#?}");
    b.close().await;
}
