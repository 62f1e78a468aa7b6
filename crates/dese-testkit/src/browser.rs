//! A headless Chromium for one test, driven through `chromedriver` (the W3C WebDriver protocol,
//! plain JSON over HTTP on a loopback port).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mosquitto::{free_port, running_as_root};

/// Why the browser could not be driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// `chromium` or `chromedriver` is not installed (the test command installs Debian's
    /// `chromium` and `chromium-driver`).
    #[error("{0} is not installed (apt-get install chromium chromium-driver)")]
    NotInstalled(&'static str),
    /// Starting or talking to chromedriver failed.
    #[error("cannot drive chromedriver")]
    Io(#[from] std::io::Error),
    /// chromedriver answered with a WebDriver error.
    #[error("{request}: {error}")]
    WebDriver {
        /// The request.
        request: String,
        /// The error and its message, as chromedriver gave them.
        error: String,
    },
    /// Waited in vain.
    #[error("not in time: {0}")]
    Timeout(String),
}

/// One headless Chromium session; chromedriver (and the browser with it) is stopped by PID
/// when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// An element of the page, as WebDriver names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn installed(candidates: &[&'static str]) -> Option<&'static str> {
    candidates
        .iter()
        .copied()
        .find(|path| Path::new(path).exists())
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium window of
    /// 1400 × 1000 pixels.
    pub fn start() -> Result<Self, BrowserError> {
        let chromium = installed(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])
            .ok_or(BrowserError::NotInstalled("chromium"))?;
        let chromedriver = installed(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .ok_or(BrowserError::NotInstalled("chromedriver"))?;
        let port = free_port()?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.call("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                return Err(BrowserError::Timeout(format!(
                    "chromedriver on 127.0.0.1:{port}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args = vec![
            "--headless=new",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            "--no-first-run",
        ];
        // Chromium's sandbox refuses to run as root; the page is the test's own, on loopback.
        if running_as_root() {
            args.push("--no-sandbox");
        }
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": chromium, "args": args }
                }
            }
        });
        let created = browser.call("POST", "/session", Some(capabilities))?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| BrowserError::WebDriver {
                request: "POST /session".into(),
                error: format!("no session id in {created}"),
            })?
            .to_string();
        Ok(browser)
    }

    /// One WebDriver request; its `value`, or the error it names.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, BrowserError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let (head, payload) = read_response(&mut stream)?;
        let value: Value =
            serde_json::from_slice(&payload).map_err(|e| BrowserError::WebDriver {
                request: format!("{method} {path}"),
                error: format!("not JSON ({e}): {head}"),
            })?;
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(BrowserError::WebDriver {
                request: format!("{method} {path}"),
                error: format!("{error}: {}", value["message"].as_str().unwrap_or_default()),
            });
        }
        Ok(value)
    }

    fn session_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url` and waits for the document to load.
    pub fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.session_call("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    /// Every element matching the CSS `selector`, in document order.
    pub fn find_all(&self, selector: &str) -> Result<Vec<Element>, BrowserError> {
        let found = self.session_call(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": selector })),
        )?;
        Ok(found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
            .collect())
    }

    /// The first element matching `selector`, waiting up to `within` for one to appear.
    pub fn wait_for(&self, selector: &str, within: Duration) -> Result<Element, BrowserError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(element) = self.find_all(selector)?.into_iter().next() {
                return Ok(element);
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Timeout(format!(
                    "an element matching {selector}; the page shows: {}",
                    self.shown()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `within` for the text of the first element matching `selector` to satisfy
    /// `done`, and returns that text.
    pub fn wait_for_text(
        &self,
        selector: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, BrowserError> {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            if let Some(element) = self.find_all(selector)?.into_iter().next() {
                // The page may replace the element between the two calls.
                if let Ok(text) = self.text(&element) {
                    if done(&text) {
                        return Ok(text);
                    }
                    last = Some(text);
                }
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Timeout(format!(
                    "the text of {selector} (last seen: {last:?}); the page shows: {}",
                    self.shown()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The start of the page's text, to say what it showed when a wait failed.
    fn shown(&self) -> String {
        self.execute(
            "return location.href + ' | ' + document.body.innerText.slice(0, 1500);",
            vec![],
        )
        .map_or_else(
            |e| format!("(cannot read the page: {e})"),
            |v| v.as_str().unwrap_or_default().to_string(),
        )
    }

    /// The element's visible text.
    pub fn text(&self, element: &Element) -> Result<String, BrowserError> {
        let text = self.session_call("GET", &format!("/element/{}/text", element.0), None)?;
        Ok(text.as_str().unwrap_or_default().to_string())
    }

    /// Clicks the element.
    pub fn click(&self, element: &Element) -> Result<(), BrowserError> {
        self.session_call(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .map(drop)
    }

    /// Runs `script` in the page with `args` and returns its result (`return ...;`).
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, BrowserError> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Resizes the window (CSS pixels).
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .map(drop)
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>, BrowserError> {
        let encoded = self.session_call("GET", "/screenshot", None)?;
        decode_base64(encoded.as_str().unwrap_or_default()).ok_or_else(|| BrowserError::WebDriver {
            request: "GET /screenshot".into(),
            error: "not base64".into(),
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An HTTP/1.1 response: its head, and its body of `Content-Length` bytes (chromedriver keeps
/// the connection open whatever the request asks, and never sends chunks).
fn read_response(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "chromedriver closed the connection before its answer",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buffer.split_off(end + 4);
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// Standard base64, as WebDriver sends screenshots.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        bits = bits << 6 | u32::from(value(c)?);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_as_the_standard_says() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8hIQ==").unwrap(), b"hello!!");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("a$==").is_none());
    }
}
