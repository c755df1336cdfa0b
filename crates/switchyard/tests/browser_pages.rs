//! The dashboard and the diagnostics page in a real browser (headless Chromium): they load
//! with no console error or warning, the dashboard's charts fill with data after traffic and
//! show the backends and a firing alert, the diagnostics page probes every backend and runs
//! again on its button. Screenshots are saved as test artefacts. Skipped, with a message,
//! where Chromium is not installed.

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::Duration;

use browser::Browser;
use fantoccini::Locator;
use support::{client, proxy, server};
use switchyard_config::AlertComparison;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_live_charts_backends_and_alerts() {
    let Some(b) = Browser::start("the_dashboard_draws_live_charts_backends_and_alerts").await
    else {
        return;
    };
    let (one, two) = (server::fixed("one").await, server::fixed("two").await);
    let p = proxy::new()
        .server(proxy::fast_history)
        .backend("one", one.addr())
        .backend("two", two.addr())
        .route("chat", "/", &["one", "two"], "round_robin")
        .alert(
            "busy",
            "requests_per_second",
            AlertComparison::Above,
            0.0,
            |a| {
                a.for_ = Duration::ZERO;
            },
        )
        .start();
    // Traffic for the whole test, so every sample sees some.
    let addr = p.addr();
    let traffic = tokio::spawn(async move {
        let mut c = client::Client::connect(addr).await;
        loop {
            let _ = c.get("/").await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    b.open(&format!("http://{}/dashboard", p.admin_addr()))
        .await;
    for chart in ["rps", "latency", "errors", "connections"] {
        b.wait_until(
            WAIT,
            &format!("the {chart} chart to hold data"),
            &format!(
                "const s = document.querySelectorAll('#chart-{chart} svg path.series'); \
                 return s.length > 0 && [...s].some(p => Number(p.dataset.points) >= 3);"
            ),
        )
        .await;
    }
    for backend in ["one", "two"] {
        b.wait_until(
            WAIT,
            &format!("backend {backend} in the table"),
            &format!(
                "return !!document.querySelector('#backends tr[data-backend=\"{backend}\"]');"
            ),
        )
        .await;
    }
    b.wait_until(
        WAIT,
        "the firing alert",
        "return !!document.querySelector('#alerts li[data-alert=\"busy\"]');",
    )
    .await;
    assert!(!b.text("#updated").await.is_empty());
    assert!(!b.text("#tiles").await.is_empty());
    b.screenshot("dashboard").await;
    b.assert_clean_console("the dashboard").await;
    traffic.abort();
    b.close().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagnostics_page_probes_every_backend_and_runs_again() {
    let Some(b) = Browser::start("the_diagnostics_page_probes_every_backend_and_runs_again").await
    else {
        return;
    };
    let live = server::fixed("live").await;
    let p = proxy::new()
        .backend("live", live.addr())
        .backend("dead", server::dead_addr())
        .route("chat", "/", &["live", "dead"], "round_robin")
        .start();
    b.open(&format!("http://{}/admin/diagnose", p.admin_addr()))
        .await;
    for backend in ["live", "dead"] {
        b.wait_until(
            WAIT,
            &format!("backend {backend} probed"),
            &format!(
                "return !!document.querySelector('#backends tr[data-backend=\"{backend}\"]');"
            ),
        )
        .await;
    }
    let live_row = b.text("#backends tr[data-backend=\"live\"]").await;
    let dead_row = b.text("#backends tr[data-backend=\"dead\"]").await;
    assert!(live_row.contains("ms"), "a connect time: {live_row}");
    assert!(
        dead_row.to_lowercase().contains("refused"),
        "the connect error: {dead_row}"
    );
    assert!(!b.text("#config").await.is_empty());
    let first = b.text("#generated").await;
    assert!(!first.is_empty());
    b.screenshot("diagnose").await;
    // Run the checks again: the report's time moves on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.client
        .find(Locator::Css("#run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_until(
        WAIT,
        "a new report",
        &format!(
            "return document.getElementById('generated').textContent !== {};",
            serde_json::to_string(&first).unwrap()
        ),
    )
    .await;
    b.assert_clean_console("the diagnostics page").await;
    b.close().await;
}
