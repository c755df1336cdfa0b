//! The admin plane's web pages: `/dashboard`, `/admin/diagnose` and `/admin/config/ui`, and
//! the sign-in page browsers are sent to when an admin token is configured (see
//! [`super::session`]).
//!
//! Everything is embedded in the binary: a page is a fragment of HTML (its `<main>`) wrapped
//! here in the shared header and navigation, plus its own script; the stylesheet and scripts
//! are served under `/ui/`. No CDN, no inline script (the pages are served with a
//! Content-Security-Policy that allows only this origin), no network access needed.

/// One page: where it is served, its title and navigation label, its `<main>` and script.
#[derive(Debug)]
pub struct Page {
    /// The path it is served at.
    pub path: &'static str,
    /// The `<title>` suffix and navigation label.
    pub title: &'static str,
    /// The content of `<main>`.
    body: &'static str,
    /// Its script under `/ui/`.
    script: &'static str,
    /// The same path also answers JSON (the page is then served only to a client that
    /// accepts HTML).
    json_twin: bool,
}

/// The pages, in navigation order.
pub const PAGES: &[Page] = &[
    Page {
        path: "/dashboard",
        title: "Dashboard",
        body: include_str!("assets/dashboard.html"),
        script: "dashboard.js",
        json_twin: false,
    },
    Page {
        path: "/admin/diagnose",
        title: "Diagnose",
        body: include_str!("assets/diagnose.html"),
        script: "diagnose.js",
        json_twin: true,
    },
    Page {
        path: "/admin/config/ui",
        title: "Config",
        body: include_str!("assets/config.html"),
        script: "config.js",
        json_twin: false,
    },
];

/// The static files under `/ui/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "ui.css",
        "text/css; charset=utf-8",
        include_str!("assets/ui.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/ui.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/chart.js"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    ),
    (
        "diagnose.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/diagnose.js"),
    ),
    (
        "config.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/config.js"),
    ),
];

/// The scripts under `/ui/` every page loads before its own: `sy` (requests, elements,
/// formatting) and `syChart` (the SVG line charts).
const SHARED_SCRIPTS: &[&str] = &["ui.js", "chart.js"];

/// The header every page is served with: scripts, styles and requests only from this origin;
/// never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     form-action 'self'; base-uri 'none'";

/// The page served at `path`, if any.
pub fn page(path: &str) -> Option<&'static Page> {
    PAGES.iter().find(|p| p.path == path)
}

/// The page a `GET path` is answered with: a path that also answers JSON is a page only for a
/// client that `accepts_html` (a browser navigating), the others always.
pub fn page_for(path: &str, accepts_html: bool) -> Option<&'static Page> {
    page(path).filter(|p| accepts_html || !p.json_twin)
}

/// The static file `/ui/{name}`: its content type and content.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, c)| (*t, *c))
}

/// `page` as a whole document; `signed_in`: a session cookie is in use (the header then
/// offers to sign out).
pub fn render(page: &Page, signed_in: bool) -> String {
    let mut nav = String::new();
    for p in PAGES {
        let current = if p.path == page.path {
            " aria-current=\"page\""
        } else {
            ""
        };
        nav.push_str(&format!("<a href=\"{}\"{current}>{}</a>", p.path, p.title));
    }
    let mut scripts = String::new();
    for s in SHARED_SCRIPTS.iter().chain([&page.script]) {
        scripts.push_str(&format!("<script src=\"/ui/{s}\" defer></script>\n"));
    }
    let sign_out = if signed_in {
        "<form method=\"post\" action=\"/admin/logout\"><button type=\"submit\" id=\"sign-out\">Sign out</button></form>"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n<title>switchyard · {title}</title>\n\
         <link rel=\"stylesheet\" href=\"/ui/ui.css\">\n\
         {scripts}</head>\n<body>\n<header class=\"top\"><span class=\"brand\">switchyard</span>\
         <nav>{nav}</nav>{sign_out}</header>\n<main id=\"main\">\n{body}</main>\n</body>\n</html>\n",
        title = page.title,
        body = page.body,
    )
}

/// The sign-in page; `next` is where to go after (already checked to be a local path),
/// `message` an error to show (plain text).
pub fn login(next: &str, message: Option<&str>) -> String {
    let message = message
        .map(|m| format!("<p class=\"error\" id=\"login-error\">{}</p>", escape(m)))
        .unwrap_or_default();
    include_str!("assets/login.html")
        .replace("<!--MESSAGE-->", &message)
        .replace("<!--NEXT-->", &escape(next))
}

/// `s` with the characters HTML gives meaning to escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_script_is_an_asset() {
        for s in SHARED_SCRIPTS {
            assert!(asset(s).is_some(), "no /ui/{s}");
        }
        for p in PAGES {
            assert!(
                asset(p.script).is_some(),
                "{} has no /ui/{}",
                p.path,
                p.script
            );
            let html = render(p, true);
            assert!(html.contains(&format!("aria-current=\"page\">{}<", p.title)));
            assert!(html.contains("/admin/logout"));
            assert!(!render(p, false).contains("/admin/logout"));
        }
        assert!(page("/dashboard").is_some());
        assert!(page_for("/dashboard", false).is_some());
        assert!(
            page_for("/admin/diagnose", false).is_none(),
            "JSON for scripts"
        );
        assert!(page_for("/admin/diagnose", true).is_some());
        assert!(page("/nope").is_none());
        assert!(asset("../mod.rs").is_none());
    }

    #[test]
    fn the_login_page_escapes_what_it_echoes() {
        let html = login("/dashboard?a=\"><script>", Some("<b>wrong</b>"));
        assert!(html.contains("value=\"/dashboard?a=&quot;&gt;&lt;script&gt;\""));
        assert!(html.contains("&lt;b&gt;wrong&lt;/b&gt;"));
        assert!(!html.contains("<!--NEXT-->"));
    }

    #[test]
    fn no_page_has_inline_script() {
        for p in PAGES {
            assert!(
                !p.body.contains("<script"),
                "{}: scripts go in /ui/",
                p.path
            );
            let handler = p.body.split(" on").skip(1).any(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase())
                    .collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!handler, "{}: no inline event handlers", p.path);
        }
    }
}
