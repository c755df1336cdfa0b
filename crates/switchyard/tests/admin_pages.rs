//! The admin web pages and signing in to them: the pages and their assets are served from the
//! binary; with an admin token a browser is sent to sign in, trades the token for a session
//! cookie, and the cookie then stands in for the token (a state-changing request also needs
//! the pages' `x-switchyard-ui` header); a wrong token counts as a failed attempt.

mod support;

use http::{Method, StatusCode};
use support::body::full;
use support::client::{self, Answer, Client};
use support::proxy;

const TOKEN: &str = "adm-pages-5e1d0c9b";

async fn send(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut c = Client::connect(addr).await;
    let mut b = client::request(method, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    c.request(b.body(full(body.to_string())).unwrap()).await
}

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");

#[tokio::test]
async fn pages_and_assets_are_served_without_a_token_configured() {
    let p = proxy::new().to(support::server::dead_addr()).start();
    let admin = p.admin_addr();
    for path in ["/dashboard", "/admin/diagnose", "/admin/config/ui"] {
        let a = send(admin, Method::GET, path, &[HTML], "").await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(a.header("content-type").unwrap().starts_with("text/html"));
        let csp = a.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = a.text();
        assert!(html.contains("<link rel=\"stylesheet\" href=\"/ui/ui.css\">"));
        assert!(
            !html.contains("/admin/logout"),
            "no sign-out without a session"
        );
    }
    for (asset, kind) in [("/ui/ui.css", "text/css"), ("/ui/ui.js", "text/javascript")] {
        let a = send(admin, Method::GET, asset, &[], "").await;
        assert_eq!(a.status, StatusCode::OK, "{asset}");
        assert!(a.header("content-type").unwrap().starts_with(kind));
    }
    // A page without a JSON twin is a page for any client; /admin/diagnose is JSON unless
    // the client takes HTML.
    let a = send(admin, Method::GET, "/dashboard", &[], "").await;
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    let a = send(admin, Method::GET, "/admin/diagnose?format=json", &[], "").await;
    assert!(a
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let a = send(admin, Method::GET, "/ui/../Cargo.toml", &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(admin, Method::GET, "/", &[HTML], "").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), Some("/dashboard"));
    // Signing in is a no-op without a token: straight on.
    let a = send(
        admin,
        Method::GET,
        "/admin/login?next=/admin/diagnose",
        &[],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), Some("/admin/diagnose"));
}

#[tokio::test]
async fn a_browser_signs_in_and_its_cookie_stands_in_for_the_token() {
    let audit = proxy::temp_path("admin-pages-audit.log");
    let p = proxy::new()
        .to(support::server::dead_addr())
        .admin_token(TOKEN)
        .server(|s| s.audit.log = Some(audit.clone()))
        .start();
    let admin = p.admin_addr();

    // A page without a session: off to sign in, remembering where to come back to.
    let a = send(admin, Method::GET, "/admin/config/ui?x=1", &[HTML], "").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.header("location"),
        Some("/admin/login?next=/admin/config/ui%3Fx%3D1")
    );
    // The assets and the form are open.
    assert_eq!(
        send(admin, Method::GET, "/ui/ui.css", &[], "").await.status,
        StatusCode::OK
    );
    let form = send(
        admin,
        Method::GET,
        "/admin/login?next=%2Fadmin%2Fdiagnose",
        &[],
        "",
    )
    .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text().contains("value=\"/admin/diagnose\""));
    // A script without a session gets 401 as before, not a redirect.
    let a = send(admin, Method::GET, "/stats", &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // A wrong token: the form again with the error, counted and audited.
    let form_ct = ("content-type", "application/x-www-form-urlencoded");
    let a = send(
        admin,
        Method::POST,
        "/admin/login",
        &[form_ct],
        "token=nope&next=%2Fdashboard",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.text().contains("not the admin token"));
    assert!(a.header("set-cookie").is_none());

    // The right token: a session cookie and back to the page; somewhere off-site is refused.
    let a = send(
        admin,
        Method::POST,
        "/admin/login",
        &[form_ct],
        &format!("token={TOKEN}&next=%2F%2Fevil.example%2F"),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), Some("/dashboard"));
    let set = a.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = ("cookie", cookie.as_str());

    let a = send(admin, Method::GET, "/dashboard", &[HTML, with_cookie], "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.text().contains("/admin/logout"),
        "signed in: a sign-out button"
    );
    let a = send(admin, Method::GET, "/stats", &[with_cookie], "").await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the cookie stands in for the token"
    );
    assert!(!a.text().contains(TOKEN));

    // Changing state by cookie needs the pages' header (a cross-site form cannot send it).
    let a = send(
        admin,
        Method::POST,
        "/admin/config?dry_run=1",
        &[with_cookie],
        "[server]\n",
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let running = send(admin, Method::GET, "/admin/config", &[with_cookie], "").await;
    let a = send(
        admin,
        Method::POST,
        "/admin/config?dry_run=1",
        &[with_cookie, ("x-switchyard-ui", "1")],
        &running.text(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    // Signing out ends the session.
    let a = send(admin, Method::POST, "/admin/logout", &[with_cookie], "").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.header("set-cookie").unwrap().contains("Max-Age=0"));
    let a = send(admin, Method::GET, "/stats", &[with_cookie], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = send(admin, Method::GET, "/dashboard", &[HTML, with_cookie], "").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);

    // The audit writer appends in the background: wait for the lines.
    let actions = [
        "\"admin_auth_failed\"",
        "\"admin_login\"",
        "\"admin_logout\"",
    ];
    let read = || std::fs::read_to_string(&audit).unwrap_or_default();
    support::wait_for(support::DEADLINE, "the sign-in audit lines", || {
        let lines = read();
        async move { actions.iter().all(|a| lines.contains(a)) }
    })
    .await;
    assert!(!read().contains(TOKEN), "the token is never written");
}

#[tokio::test]
async fn a_wrong_sign_in_counts_toward_the_block() {
    let p = proxy::new()
        .to(support::server::dead_addr())
        .admin_token(TOKEN)
        .server(|s| s.admin_max_failures = 2)
        .start();
    let admin = p.admin_addr();
    let form_ct = ("content-type", "application/x-www-form-urlencoded");
    for _ in 0..2 {
        let a = send(admin, Method::POST, "/admin/login", &[form_ct], "token=x").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = send(
        admin,
        Method::POST,
        "/admin/login",
        &[form_ct],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "blocked even with the right token"
    );
    assert!(a.header("retry-after").is_some());
    assert!(a.header("set-cookie").is_none());
}
