//! A small W3C WebDriver client for the browser tests: Debian's headless Chromium driven
//! by its chromedriver (`scripts/chromium.sh` installs both), spoken to over HTTP/1.1 on
//! loopback with the hyper the AWS SDK already links.
//!
//! What the tests need and no more: open a URL, find a control by the text of its
//! `<label>` (or a button by its text), move the focus there with Tab and toggle or
//! submit it with Space / Enter (keyboard only, as a person who does not use a mouse),
//! read the title and the text, and take a PNG of the whole page.
//!
//! The browser reaches nothing but loopback: every other address goes to a proxy on a
//! closed loopback port, every host name but loopback resolves to nothing, and Chromium's
//! background traffic (updates, sync, safe browsing, metrics) is switched off.

use anyhow::{Context as _, anyhow, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// The key WebDriver wraps element references in.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Keys of WebDriver's key actions (the spec's code points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Tab,
    Space,
    Enter,
}

impl Key {
    fn code(self) -> &'static str {
        match self {
            Key::Tab => "\u{E004}",
            Key::Space => "\u{E00D}",
            Key::Enter => "\u{E007}",
        }
    }
}

/// How many Tab presses may pass before a control counts as unreachable by keyboard.
const MAX_TABS: usize = 80;
/// How long a page may take to load after a submit.
const PAGE_LOAD: Duration = Duration::from_secs(20);

/// One headless Chromium session. [`Browser::quit`] ends it; dropping it (a failed test)
/// kills chromedriver and the browser it started.
pub struct Browser {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    driver: tokio::process::Child,
    /// chromedriver's process group: the browser and its helpers belong to it.
    group: Option<u32>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            // Only this session's processes: the group chromedriver was started in.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// chromedriver's path: `HERALD_CHROMEDRIVER` (what the Makefile sets from `scripts/chromium.sh
/// --driver`), else `chromedriver` on the PATH.
fn chromedriver() -> String {
    std::env::var("HERALD_CHROMEDRIVER").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "chromedriver".into())
}

/// Chromium's switches: headless, loopback only, nothing in the background.
fn chromium_args() -> Vec<&'static str> {
    vec![
        "--headless",
        // As root (CI containers) Chromium refuses to start sandboxed; the pages are our own.
        "--no-sandbox",
        // Containers often have a small /dev/shm.
        "--disable-dev-shm-usage",
        "--disable-gpu",
        // Loopback only: everything else goes to a proxy on a closed port (loopback itself is never
        // proxied), and no name but loopback resolves.
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-client-side-phishing-detection",
        "--disable-domain-reliability",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-pings",
        // Screenshots the same from run to run.
        "--window-size=800,600",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--lang=en-US",
    ]
}

impl Browser {
    /// Starts chromedriver on a free port (it takes local connections only) and a headless Chromium session through it.
    pub async fn start() -> anyhow::Result<Self> {
        let path = chromedriver();
        let mut driver = tokio::process::Command::new(&path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {path}: run `make browser` (or `scripts/chromium.sh --driver`, which installs \
                     Debian's chromium and chromium-driver) or set HERALD_CHROMEDRIVER"
                )
            })?;
        let group = driver.id();
        let stdout = driver.stdout.take().context("chromedriver's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                // "ChromeDriver was started successfully on port 40123."
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().context("chromedriver's port");
                }
            }
            bail!("chromedriver exited before it listened")
        })
        .await
        .context("chromedriver did not start within 20 s")??;
        // Keep reading what it prints, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let http = Client::builder(TokioExecutor::new()).build_http();
        let mut browser = Self { http, session: format!("http://127.0.0.1:{port}/session"), driver, group };
        let mut options = json!({ "args": chromium_args() });
        if let Some(binary) = std::env::var("HERALD_CHROMIUM").ok().filter(|p| !p.is_empty()) {
            options["binary"] = binary.into();
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "goog:chromeOptions": options,
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": 30_000, "script": 10_000, "implicit": 0 },
            "unhandledPromptBehavior": "dismiss",
        }}});
        let created = browser.call(Method::POST, "", Some(caps)).await.context("creating a Chromium session")?;
        let id = created["sessionId"].as_str().context("no session id")?;
        browser.session = format!("{}/{id}", browser.session);
        Ok(browser)
    }

    /// Ends the session (the browser exits) and stops chromedriver.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        let ended = self.call(Method::DELETE, "", None).await;
        let _ = self.driver.start_kill();
        let _ = self.driver.wait().await;
        ended.map(|_| ())
    }

    /// One WebDriver command: `path` is relative to the session (`/url`); answers its `value`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let what = format!("{method} {path}");
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.session));
        let body = match body {
            Some(b) => {
                request = request.header("content-type", "application/json; charset=utf-8");
                b.to_string()
            }
            None => String::new(),
        };
        let request = request.body(Full::new(Bytes::from(body)))?;
        let response = tokio::time::timeout(Duration::from_secs(60), self.http.request(request))
            .await
            .with_context(|| format!("WebDriver {what}: no answer within 60 s"))?
            .with_context(|| format!("WebDriver {what}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let mut answer: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("WebDriver {what}: {status} {}", String::from_utf8_lossy(&bytes)))?;
        let value = answer.get_mut("value").map(Value::take).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("WebDriver {what}: {status} {}: {}", value["error"], value["message"]);
        }
        Ok(value)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    async fn script(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// Loads `url` and waits for it (refuses anything but loopback: see [`chromium_args`]).
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.call(Method::POST, "/url", Some(json!({ "url": url }))).await.map(|_| ())
    }

    pub async fn title(&self) -> anyhow::Result<String> {
        Ok(self.call(Method::GET, "/title", None).await?.as_str().unwrap_or_default().to_owned())
    }

    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.call(Method::GET, "/url", None).await?.as_str().unwrap_or_default().to_owned())
    }

    /// The page's text as rendered (`innerText` of the body).
    pub async fn text(&self) -> anyhow::Result<String> {
        let text = self.script("return document.body ? document.body.innerText : '';", json!([])).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Presses and releases each key in turn, where the focus is.
    pub async fn press(&self, keys: &[Key]) -> anyhow::Result<()> {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({"type": "keyDown", "value": k.code()}), json!({"type": "keyUp", "value": k.code()})])
            .collect();
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] });
        self.call(Method::POST, "/actions", Some(body)).await.map(|_| ())
    }

    /// The control `label` names: the one control of a `<label>` with that text (inside the
    /// `<fieldset>` whose `<legend>` reads `group`, when given), or a button or link with that text.
    /// More than one match is an error: the test must say which.
    async fn control(&self, group: Option<&str>, label: &str) -> anyhow::Result<Value> {
        const FIND: &str = r#"
            const norm = s => (s || '').replace(/\s+/g, ' ').trim();
            const [group, want] = [arguments[0] === null ? null : norm(arguments[0]), norm(arguments[1])];
            let scopes = [document];
            if (group !== null) {
                scopes = [...document.querySelectorAll('fieldset')]
                    .filter(f => f.querySelector(':scope > legend') && norm(f.querySelector(':scope > legend').textContent) === group);
            }
            const found = new Set();
            for (const scope of scopes) {
                for (const l of scope.querySelectorAll('label')) {
                    if (norm(l.textContent) === want && l.control) found.add(l.control);
                }
                for (const b of scope.querySelectorAll('button, input[type=submit], input[type=button], a[href]')) {
                    const text = b.tagName === 'INPUT' ? b.value : b.textContent;
                    if (norm(text) === want) found.add(b);
                }
            }
            return [...found];
        "#;
        let found = self.script(FIND, json!([group, label])).await?;
        let found = found.as_array().cloned().unwrap_or_default();
        let place = group.map(|g| format!(" in the fieldset {g:?}")).unwrap_or_default();
        match found.as_slice() {
            [one] if one.get(ELEMENT).is_some() => Ok(one.clone()),
            [] => bail!("no control labelled {label:?}{place} on {}", self.url().await.unwrap_or_default()),
            many => bail!("{} controls labelled {label:?}{place}: say which", many.len()),
        }
    }

    /// Whether `element` has the focus.
    async fn focused(&self, element: &Value) -> anyhow::Result<bool> {
        Ok(self.script("return document.activeElement === arguments[0];", json!([element])).await? == json!(true))
    }

    /// Presses Tab until the control labelled `label` (in `group`) has the focus; the number of
    /// presses. Fails when it is not reachable by keyboard.
    pub async fn tab_to(&self, group: Option<&str>, label: &str) -> anyhow::Result<usize> {
        let element = self.control(group, label).await?;
        for presses in 0..=MAX_TABS {
            if self.focused(&element).await? {
                return Ok(presses);
            }
            self.press(&[Key::Tab]).await?;
        }
        bail!("{label:?} did not get the focus after {MAX_TABS} presses of Tab")
    }

    /// Whether the checkbox (or radio) labelled `label` (in `group`) is checked.
    pub async fn checked(&self, group: Option<&str>, label: &str) -> anyhow::Result<bool> {
        let element = self.control(group, label).await?;
        let checked = self.script("return arguments[0].checked;", json!([element])).await?;
        checked.as_bool().ok_or_else(|| anyhow!("{label:?} is not a checkbox"))
    }

    /// Reaches the checkbox labelled `label` (in `group`) with Tab and, when it is not in the
    /// state wanted, toggles it with Space.
    pub async fn set_checkbox(&self, group: Option<&str>, label: &str, checked: bool) -> anyhow::Result<()> {
        self.tab_to(group, label).await?;
        if self.checked(group, label).await? != checked {
            self.press(&[Key::Space]).await?;
        }
        if self.checked(group, label).await? != checked {
            bail!("Space did not set {label:?} to {checked}");
        }
        Ok(())
    }

    /// Reaches the button or link labelled `label` with Tab, presses Enter and waits for the
    /// page it loads (the form's answer, the link's target).
    pub async fn activate(&self, label: &str) -> anyhow::Result<()> {
        self.tab_to(None, label).await?;
        // A mark on this document: gone once the next one has loaded.
        self.script("window.__heraldBefore = true;", json!([])).await?;
        self.press(&[Key::Enter]).await?;
        let deadline = Instant::now() + PAGE_LOAD;
        loop {
            const LOADED: &str = "return window.__heraldBefore === undefined && document.readyState === 'complete';";
            // While the document changes, the script may fail (no context yet): not loaded.
            if let Ok(Value::Bool(true)) = self.script(LOADED, json!([])).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pressing Enter on {label:?} loaded no page within {PAGE_LOAD:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element `selector` matches, if any.
    pub async fn text_of(&self, selector: &str) -> anyhow::Result<Option<String>> {
        const TEXT: &str = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        Ok(self.script(TEXT, json!([selector])).await?.as_str().map(str::to_owned))
    }

    /// The page's language (`<html lang>`).
    pub async fn lang(&self) -> anyhow::Result<String> {
        let lang = self.script("return document.documentElement.lang;", json!([])).await?;
        Ok(lang.as_str().unwrap_or_default().to_owned())
    }

    /// The outline the focused element is drawn with (width in CSS pixels, style), as the
    /// person using the keyboard sees where they are.
    pub async fn focus_outline(&self) -> anyhow::Result<(f64, String)> {
        const OUTLINE: &str = "const s = getComputedStyle(document.activeElement);
            return [parseFloat(s.outlineWidth) || 0, s.outlineStyle];";
        let outline = self.script(OUTLINE, json!([])).await?;
        Ok((outline[0].as_f64().unwrap_or(0.0), outline[1].as_str().unwrap_or_default().to_owned()))
    }

    /// A PNG of the whole page (not only the window: down to the end of the body and its
    /// margin), written to `path` when given.
    pub async fn screenshot(&self, path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
        const SIZE: &str = "const body = document.body.getBoundingClientRect();
            const margin = parseFloat(getComputedStyle(document.body).marginBottom) || 0;
            return [document.documentElement.clientWidth, Math.ceil(body.bottom + window.scrollY + margin)];";
        let size = self.script(SIZE, json!([])).await?;
        let (width, height) = (size[0].as_f64().unwrap_or(800.0), size[1].as_f64().unwrap_or(600.0));
        let params = json!({
            "format": "png",
            "captureBeyondViewport": true,
            "clip": { "x": 0, "y": 0, "width": width, "height": height.max(1.0), "scale": 1 },
        });
        let shot = self.cdp("Page.captureScreenshot", params).await?;
        let data = shot["data"].as_str().context("no screenshot data")?;
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data)?;
        if let Some(path) = path {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, &png).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(png)
    }

    /// A DevTools command through chromedriver (for what WebDriver lacks: whole-page screenshots).
    async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, "/goog/cdp/execute", Some(json!({ "cmd": cmd, "params": params }))).await
    }
}

/// The width and height a PNG declares (its IHDR chunk), or `None` when it is not a PNG.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let header = png.get(..24)?;
    if !header.starts_with(b"\x89PNG\r\n\x1a\n") || &header[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| header.get(at..at + 4)?.try_into().ok().map(u32::from_be_bytes);
    Some((word(16)?, word(20)?))
}
