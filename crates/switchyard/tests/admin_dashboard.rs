//! The live dashboard at `/dashboard`: the page carries the ids its script fills in (and a
//! browser test drives), its scripts are served from the binary, and the admin API answers
//! with the series and fields the script reads.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use support::body::full;
use support::client::{self, Client};
use support::{proxy, wait_for, DEADLINE};
use switchyard_config::AlertComparison;

/// The series the dashboard asks `/history` for, as listed in its script.
fn script_series(js: &str) -> Vec<String> {
    let line = js
        .lines()
        .find(|l| l.contains("const GLOBAL = ["))
        .expect("dashboard.js lists its series in GLOBAL");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_its_scripts_and_its_data_fit_together() {
    let proxy = proxy::new()
        .server(|s| s.observe.history_interval = Duration::from_millis(100))
        .to(support::server::dead_addr())
        // Fires at once: nothing is connected to the proxy.
        .alert(
            "idle",
            "active_connections",
            AlertComparison::Below,
            1.0,
            |a| a.for_ = Duration::ZERO,
        )
        .start();

    // As a browser asks: pages are served to requests that accept HTML.
    let mut c = Client::connect(proxy.admin_addr()).await;
    let req = client::request(Method::GET, "/dashboard").header("accept", "text/html");
    let page = c.request(req.body(full(String::new())).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for id in [
        "tiles",
        "chart-rps",
        "chart-latency",
        "chart-errors",
        "chart-connections",
        "backends",
        "alerts",
        "updated",
        "error",
        "window",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no #{id} in {html}");
    }
    assert!(!html.contains(" style=\""), "the CSP blocks inline styles");
    let mut scripts = Vec::new();
    for name in ["ui.js", "chart.js", "dashboard.js"] {
        assert!(
            html.contains(&format!("<script src=\"/ui/{name}\" defer></script>")),
            "{name}"
        );
        let a = proxy.admin_get(&format!("/ui/{name}")).await;
        assert_eq!(a.status, StatusCode::OK, "/ui/{name}");
        assert!(a
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript"));
        scripts.push(a.text());
    }
    let (chart, js) = (&scripts[1], &scripts[2]);
    assert!(chart.contains("const syChart") && chart.contains("\"data-points\": n"));
    assert!(chart.contains("\"path\", { class: \"series"));
    for needle in [
        "\"/stats\"",
        "\"/admin/alerts\"",
        "`/history?since=",
        "\"data-backend\"",
        "\"data-alert\"",
        "class: \"none",
        "\"updated\"",
        "visibilitychange",
        "REFRESH_MS = 2000",
    ] {
        assert!(js.contains(needle), "dashboard.js lacks {needle}");
    }
    for id in [
        "chart-rps",
        "chart-latency",
        "chart-errors",
        "chart-connections",
    ] {
        assert!(
            js.contains(&format!("\"{id}\"")),
            "dashboard.js draws no #{id}"
        );
    }

    // Every series the script asks for exists, with points once the sampler has run.
    let series = script_series(js);
    assert!(series.len() >= 5, "{series:?}");
    let query = format!("/history?since=300&series={}", series.join(","));
    wait_for(
        DEADLINE,
        "points in every series the dashboard draws",
        || {
            let (proxy, query, series) = (&proxy, &query, &series);
            async move {
                let h = proxy.admin_get(query).await;
                assert_eq!(h.status, StatusCode::OK, "{}", h.text());
                let doc = h.json();
                series.iter().all(|s| {
                    doc["series"][s]["points"]
                        .as_array()
                        .is_some_and(|p| p.len() >= 2)
                })
            }
        },
    )
    .await;
    let h = proxy
        .admin_get("/history?series=backend%3Ab0%3Ain_flight")
        .await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text());

    // The fields the tiles and the backend table read.
    let stats = proxy.stats().await;
    assert!(stats["totals"]["connections"]["active"].is_u64());
    assert!(stats["config"]["version"].is_u64());
    let b = &stats["backends"][0];
    assert_eq!(b["name"], "b0");
    for field in [
        "address",
        "up",
        "in_flight",
        "queue_estimate",
        "engine",
        "models",
        "requests",
        "errors",
        "penalized",
        "health",
    ] {
        assert!(b.get(field).is_some(), "/stats backends[] lacks {field}");
    }

    // And the alerts list.
    wait_for(DEADLINE, "the idle alert to fire", || {
        let proxy = &proxy;
        async move {
            let a = proxy.admin_get("/admin/alerts").await.json();
            assert!(a["rules"].is_array());
            a["firing"].as_array().unwrap().iter().any(|f| {
                f["alert"] == "idle"
                    && f["series"] == "active_connections"
                    && f["severity"] == "warning"
                    && f["since"].is_string()
            })
        }
    })
    .await;
}
