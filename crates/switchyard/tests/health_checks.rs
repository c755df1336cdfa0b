//! Active health checks: a backend whose check fails `health_fall` times leaves rotation, and
//! comes back after `health_rise` passes; a TCP check notices a backend that is not listening.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::client::Client;
use support::server::{self, respond, Backend};
use support::{proxy, wait_for, DEADLINE};

/// A backend whose `/health` answers 200 or 503 as `healthy` says; other requests are counted.
async fn switchable() -> (Backend, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let backend = {
        let (healthy, served) = (Arc::clone(&healthy), Arc::clone(&served));
        server::serve(move |req| {
            let health = req.uri().path() == "/health";
            let (ok, served) = (healthy.load(SeqCst), Arc::clone(&served));
            async move {
                if health {
                    let status = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    return respond(status, "");
                }
                served.fetch_add(1, SeqCst);
                respond(StatusCode::OK, "ok")
            }
        })
        .await
    };
    (backend, healthy, served)
}

fn fast_checks(s: &mut switchyard_config::ServerConfig) {
    s.health_interval = Duration::from_millis(50);
    s.health_timeout = Duration::from_millis(500);
    s.health_fall = 2;
    s.health_rise = 2;
}

async fn health_state(proxy: &proxy::Proxy, i: usize) -> String {
    proxy.stats().await["backends"][i]["health"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_http_check_takes_a_backend_out_and_passing_brings_it_back() {
    let (a, a_healthy, a_served) = switchable().await;
    let (b, _, b_served) = switchable().await;
    let proxy = proxy::new()
        .server(fast_checks)
        .backend("a", a.addr())
        .health("http GET /health 200")
        .backend("b", b.addr())
        .health("http /health")
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    wait_for(DEADLINE, "checks pass", || async {
        health_state(&proxy, 0).await == "up" && health_state(&proxy, 1).await == "up"
    })
    .await;
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert!(a_served.load(SeqCst) > 0 && b_served.load(SeqCst) > 0);

    a_healthy.store(false, SeqCst);
    wait_for(DEADLINE, "a down", || async {
        health_state(&proxy, 0).await == "down"
    })
    .await;
    let before = a_served.load(SeqCst);
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert_eq!(
        a_served.load(SeqCst),
        before,
        "a got traffic while its check failed"
    );
    assert_eq!(proxy.stats().await["backends"][0]["up"], false);

    a_healthy.store(true, SeqCst);
    wait_for(DEADLINE, "a up again", || async {
        health_state(&proxy, 0).await == "up"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert!(a_served.load(SeqCst) > before, "a did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_notices_a_backend_that_is_not_listening() {
    let (a, _, _) = switchable().await;
    let dead = server::dead_addr();
    let proxy = proxy::new()
        .server(fast_checks)
        .backend("a", a.addr())
        .health("tcp")
        .backend("dead", dead)
        .health("tcp")
        .route("r", "/", &["a", "dead"], "round_robin")
        .start();
    wait_for(DEADLINE, "dead marked down", || async {
        health_state(&proxy, 1).await == "down" && health_state(&proxy, 0).await == "up"
    })
    .await;
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    // No request went to the dead backend: none needed the retry.
    assert_eq!(proxy.stats().await["backends"][1]["requests"], 0);
}

/// A backend whose `/health` answers 200 with `healthy: yes` or `healthy: no`, as `healthy`
/// says; other requests are counted.
async fn body_switchable() -> (Backend, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let backend = {
        let (healthy, served) = (Arc::clone(&healthy), Arc::clone(&served));
        server::serve(move |req| {
            let health = req.uri().path() == "/health";
            let (ok, served) = (healthy.load(SeqCst), Arc::clone(&served));
            async move {
                if health {
                    let body = if ok { "healthy: yes" } else { "healthy: no" };
                    return respond(StatusCode::OK, body);
                }
                served.fetch_add(1, SeqCst);
                respond(StatusCode::OK, "ok")
            }
        })
        .await
    };
    (backend, healthy, served)
}

async fn health_counts(proxy: &proxy::Proxy, i: usize) -> (u64, u64) {
    let h = proxy.stats().await["backends"][i]["health"].clone();
    (
        h["ok"].as_u64().unwrap_or(0),
        h["failed"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_with_a_body_substring_follows_the_body_not_only_the_status() {
    let (a, a_healthy, a_served) = body_switchable().await;
    let (b, _, b_served) = body_switchable().await;
    let proxy = proxy::new()
        .server(fast_checks)
        .backend("a", a.addr())
        .health("http GET /health 200 \"healthy: yes\"")
        .backend("b", b.addr())
        .health("http /health 200 'yes'")
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    wait_for(DEADLINE, "checks pass", || async {
        health_state(&proxy, 0).await == "up" && health_state(&proxy, 1).await == "up"
    })
    .await;
    assert_eq!(
        proxy.stats().await["backends"][0]["health"]["check"],
        "http GET /health 200 \"healthy: yes\""
    );

    // Still 200, but the body no longer says so.
    a_healthy.store(false, SeqCst);
    wait_for(DEADLINE, "a down", || async {
        health_state(&proxy, 0).await == "down"
    })
    .await;
    assert!(health_counts(&proxy, 0).await.1 >= 2);
    let mut c = Client::connect(proxy.addr()).await;
    let before = a_served.load(SeqCst);
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert_eq!(
        a_served.load(SeqCst),
        before,
        "a got traffic while its body check failed"
    );
    assert!(b_served.load(SeqCst) >= 10);

    a_healthy.store(true, SeqCst);
    wait_for(DEADLINE, "a up again", || async {
        health_state(&proxy, 0).await == "up"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert!(a_served.load(SeqCst) > before, "a did not come back");
}

/// A file path unique to this test process and `name`, removed first.
fn scratch_path(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("switchyard-health-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_check_sees_the_backend_in_its_environment_and_passes_on_exit_0() {
    let (a, _, _) = switchable().await;
    let (b, _, _) = switchable().await;
    let port = a.addr().port();
    // The first runs `sh` from PATH, the second by its path; both get the backend's address.
    let env_check = format!(
        "script sh -c 'test \"$SWITCHYARD_BACKEND_PORT\" = {port} && \
         test \"$SWITCHYARD_BACKEND_HOST\" = 127.0.0.1 && \
         test \"$SWITCHYARD_BACKEND_ADDRESS\" = 127.0.0.1:{port} && \
         test \"$SWITCHYARD_BACKEND_NAME\" = a && \
         test \"$SWITCHYARD_HEALTH_TIMEOUT_MS\" = 2000'"
    );
    let proxy = proxy::new()
        .server(|s| {
            fast_checks(s);
            s.health_timeout = Duration::from_secs(2);
        })
        .backend("a", a.addr())
        .health(&env_check)
        .backend("b", b.addr())
        // b's port is not a's: exit status 1.
        .health(&format!(
            "script /bin/sh -c 'test \"$SWITCHYARD_BACKEND_PORT\" = {port}'"
        ))
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    wait_for(DEADLINE, "a up, b down", || async {
        health_state(&proxy, 0).await == "up" && health_state(&proxy, 1).await == "down"
    })
    .await;
    assert_eq!(
        health_counts(&proxy, 0).await.1,
        0,
        "a's script never failed"
    );
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..6 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert_eq!(proxy.backend_stats(1).await["requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_check_failing_takes_the_backend_out_and_passing_brings_it_back() {
    let (a, _, a_served) = switchable().await;
    let (b, _, _) = switchable().await;
    let flag = scratch_path("flag");
    std::fs::write(&flag, "").unwrap();
    let proxy = proxy::new()
        .server(fast_checks)
        .backend("a", a.addr())
        .health(&format!("script /bin/sh -c 'test -e {}'", flag.display()))
        .backend("b", b.addr())
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    wait_for(DEADLINE, "a up", || async {
        health_state(&proxy, 0).await == "up"
    })
    .await;

    std::fs::remove_file(&flag).unwrap();
    wait_for(DEADLINE, "a down", || async {
        health_state(&proxy, 0).await == "down"
    })
    .await;
    let mut c = Client::connect(proxy.addr()).await;
    let before = a_served.load(SeqCst);
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert_eq!(
        a_served.load(SeqCst),
        before,
        "a got traffic while its script failed"
    );

    std::fs::write(&flag, "").unwrap();
    wait_for(DEADLINE, "a up again", || async {
        health_state(&proxy, 0).await == "up"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert!(a_served.load(SeqCst) > before, "a did not come back");
    let _ = std::fs::remove_file(&flag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_past_health_timeout_fails_and_is_killed() {
    let (a, _, _) = switchable().await;
    let pidfile = scratch_path("pid");
    // `exec` makes the shell's pid the sleeper's: that is the process to be killed.
    let check = format!(
        "script /bin/sh -c 'echo $$ > {}; exec sleep 30'",
        pidfile.display()
    );
    let proxy = proxy::new()
        .server(|s| {
            fast_checks(s);
            s.health_timeout = Duration::from_millis(300);
        })
        .backend("a", a.addr())
        .health(&check)
        .route("r", "/", &["a"], "round_robin")
        .start();
    wait_for(DEADLINE, "a down", || async {
        health_state(&proxy, 0).await == "down"
    })
    .await;
    let (ok, failed) = health_counts(&proxy, 0).await;
    assert_eq!(ok, 0);
    assert!(failed >= 2, "{failed}");
    // A sleeper started by some check is gone well before its 30 seconds. (On a loaded
    // machine a check may be killed before its shell wrote the file: wait for one that did.)
    wait_for(DEADLINE, "a check to record its pid", || async {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.trim().parse::<u32>().is_ok())
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    #[cfg(target_os = "linux")]
    wait_for(DEADLINE, &format!("sleeper {pid} killed"), || async {
        // Gone, or a zombie about to be reaped.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    })
    .await;
    let _ = pid;
    drop(proxy);
    let _ = std::fs::remove_file(&pidfile);
}
