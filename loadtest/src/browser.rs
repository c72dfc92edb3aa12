//! A real browser for the web UI's tests: Debian's headless Chromium driven by chromedriver
//! over WebDriver (fantoccini). Screenshots go to `artifacts/screenshots/` (or
//! `$FLOTILLA_ARTIFACTS/screenshots/`), kept after the run as the tests' artifacts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A headless Chromium session; the driver is killed when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where screenshots are written.
pub fn screenshot_dir() -> PathBuf {
    let base = std::env::var_os("FLOTILLA_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts"));
    base.join("screenshots")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a fresh profile, `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Result<Self> {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port()?;
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {driver_bin} (apt-get install chromium chromium-driver)")
            })?;
        let profile = tempfile::tempdir()?;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => bail!("capabilities"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    bail!("connecting to chromedriver at {url}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Save a screenshot of the page as `<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await.context("screenshot")?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The first element matching `css`, waiting up to `timeout` for it to appear.
    pub async fn find(&self, css: &str, timeout: Duration) -> Result<Element> {
        self.client
            .wait()
            .at_most(timeout)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css}"))
    }

    /// Every element matching `css` now.
    pub async fn all(&self, css: &str) -> Result<Vec<Element>> {
        Ok(self.client.find_all(Locator::Css(css)).await?)
    }

    /// Whether any element matches `css` now.
    pub async fn exists(&self, css: &str) -> Result<bool> {
        Ok(!self.all(css).await?.is_empty())
    }

    /// Run `script` (its `return` value) in the page.
    pub async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// Poll `check` every 200 ms until it returns `Some`, for up to `timeout`.
    pub async fn until<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let started = Instant::now();
        loop {
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) | Err(_) if started.elapsed() < timeout => {}
                Ok(None) => {
                    let path = self.screenshot("failure").await.ok();
                    bail!("timed out after {timeout:?} waiting for {what} (screenshot {path:?})")
                }
                Err(e) => return Err(e.context(format!("waiting for {what}"))),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The text of the first element matching `css`, if any.
    pub async fn text(&self, css: &str) -> Result<Option<String>> {
        match self.all(css).await?.into_iter().next() {
            Some(e) => Ok(Some(e.text().await?)),
            None => Ok(None),
        }
    }

    /// Wait until the first element matching `css` has text `want`.
    pub async fn wait_text(&self, css: &str, want: &str, timeout: Duration) -> Result<()> {
        self.until(&format!("{css} to read {want:?}"), timeout, || async {
            Ok(self
                .text(css)
                .await
                .ok()
                .flatten()
                .filter(|t| t.trim() == want)
                .map(|_| ()))
        })
        .await
    }

    /// Sign in through the login form.
    pub async fn sign_in(&self, base: &str, user: &str, password: &str) -> Result<()> {
        self.client.goto(&format!("{base}/login")).await?;
        self.find("#username", Duration::from_secs(20))
            .await?
            .send_keys(user)
            .await?;
        self.find("#password", Duration::from_secs(5))
            .await?
            .send_keys(password)
            .await?;
        self.find("[data-testid=login-submit]", Duration::from_secs(5))
            .await?
            .click()
            .await?;
        self.find("[data-testid=user]", Duration::from_secs(20))
            .await?;
        Ok(())
    }

    pub async fn close(mut self) -> Result<()> {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
