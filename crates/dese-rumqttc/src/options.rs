//! Where and how to connect.

use crate::error::Error;

/// How to reach the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// The broker's host.
    pub host: String,
    /// The broker's port.
    pub port: u16,
    /// Username and password, when the broker wants them.
    pub credentials: Option<(String, String)>,
    /// The largest packet sent or received. rumqttc's own default is 10 KiB; a DESE message is
    /// at most 16 KiB (the decoder's limit), so the default here is 20 KiB.
    pub max_packet_size: usize,
}

impl BrokerOptions {
    /// Reads `mqtt://host:port` (port 1883 when absent). `mqtts://` (TLS) is not supported yet
    /// by this transport and is refused as a configuration error.
    ///
    /// ```
    /// use dese_rumqttc::BrokerOptions;
    ///
    /// let options = BrokerOptions::parse("mqtt://127.0.0.1:1884")?;
    /// assert_eq!((options.host.as_str(), options.port), ("127.0.0.1", 1884));
    /// assert!(BrokerOptions::parse("http://example").is_err());
    /// # Ok::<(), dese_rumqttc::Error>(())
    /// ```
    pub fn parse(url: &str) -> Result<Self, Error> {
        let fail = |reason| {
            Err(Error::BrokerUrl {
                url: url.to_string(),
                reason,
            })
        };
        let rest = match url.split_once("://") {
            Some(("mqtt", rest)) => rest,
            Some(("mqtts", _)) => {
                return fail("TLS (mqtts://) is not supported by this transport yet");
            }
            _ => return fail("expected mqtt://host:port"),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => match port.parse() {
                Ok(port) => (host, port),
                Err(_) => return fail("the port is not a number from 1 to 65535"),
            },
            None => (rest, 1883),
        };
        if host.is_empty() || rest.contains('/') {
            return fail("expected mqtt://host:port");
        }
        Ok(Self {
            host: host.to_string(),
            port,
            credentials: None,
            max_packet_size: 20 * 1024,
        })
    }

    /// Adds a username and password.
    #[must_use]
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }
}
