//! `bindery healthcheck`: asks this broker's own listener for `/healthz` (over TLS when
//! TLS is configured) and succeeds only on a 200, so a container's HEALTHCHECK follows
//! `BINDERY_LISTEN` and the TLS settings instead of a hard-coded URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::config::Settings;

/// Longest the check waits: Docker's HEALTHCHECK in the Dockerfile allows 3 s.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Checks `/healthz` on the configured listener; an error says why it failed.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let mut address = settings.listen;
    // A wildcard listener is reached on the loopback address of its family.
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let tls = settings.tls.cert_file.is_some();
    let url = format!("{}://{address}/healthz", if tls { "https" } else { "http" });
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        // The server is this broker itself, reached by address: its certificate names the
        // Service, not 127.0.0.1, and proving its identity to itself adds nothing.
        .danger_accept_invalid_certs(tls)
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        bail!("{url} answered {status}");
    }
    println!("{url}: healthy");
    Ok(())
}
