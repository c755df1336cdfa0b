//! Headless Chromium driven through chromedriver (WebDriver) with fantoccini, for the admin
//! pages' browser tests. [`Browser::start`] returns `None`, after saying so on stderr, when
//! Chromium or chromedriver is not installed (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). `SWITCHYARD_CHROMIUM` and
//! `SWITCHYARD_CHROMEDRIVER` name other binaries. Screenshots are saved under
//! `$CARGO_TARGET_TMPDIR/browser/` (or `SWITCHYARD_ARTIFACTS`) and their paths printed.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// One browser: a chromedriver process and its session.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The directory screenshots go to.
pub fn artifacts() -> PathBuf {
    std::env::var("SWITCHYARD_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser"))
}

/// chromedriver's log endpoint (`goog:loggingPrefs` must ask for the browser log).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

/// One console message: its level (`SEVERE`, `WARNING`, `INFO`, ...) and text.
#[derive(Debug, Clone)]
pub struct Console {
    /// The level.
    pub level: String,
    /// The message (with its source location).
    pub message: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (said on stderr) when
    /// either is missing.
    pub async fn start(test: &str) -> Option<Browser> {
        let chromium = find(
            "SWITCHYARD_CHROMIUM",
            &[
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "/usr/bin/google-chrome",
            ],
        );
        let driver = find("SWITCHYARD_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            eprintln!(
                "SKIPPED {test}: headless Chromium is not installed \
                 (apt-get install -y chromium chromium-driver, or set SWITCHYARD_CHROMIUM \
                 and SWITCHYARD_CHROMEDRIVER)"
            );
            return None;
        };
        let port = free_port();
        // Its own process group, so that Chromium goes with it if a test fails midway.
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = std::env::temp_dir().join(format!("switchyard-chromium-{port}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver at {url}: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            profile,
        })
    }

    /// Opens `url` and waits for the document to finish loading.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigates");
    }

    /// The console messages since the last call.
    pub async fn console(&self) -> Vec<Console> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("the browser log");
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|m| Console {
                        level: m["level"].as_str().unwrap_or_default().to_string(),
                        message: m["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Panics if the console holds an error or a warning.
    pub async fn assert_clean_console(&self, what: &str) {
        let bad: Vec<Console> = self
            .console()
            .await
            .into_iter()
            .filter(|c| c.level == "SEVERE" || c.level == "WARNING")
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: console errors or warnings: {bad:#?}"
        );
    }

    /// Saves a screenshot as `name.png` in [`artifacts`] and prints where.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = artifacts();
        std::fs::create_dir_all(&dir).expect("the artefacts directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// The text of the element `css`.
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits (up to `timeout`) until `script` evaluates to `true` in the page.
    pub async fn wait_until(&self, timeout: Duration, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self
                    .screenshot(&format!("timeout-{}", sanitize(what)))
                    .await;
                panic!("timed out after {timeout:?} waiting for {what} ({script})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session (closing Chromium), then chromedriver (on drop).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
