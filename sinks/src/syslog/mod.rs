//! `syslog`: sends events as syslog messages over TCP, TLS or UDP.
//!
//! Each batch is encoded once (RFC 5424 or RFC 3164 header, the `message` field or JSON
//! as payload, octet-counting or newline framing), written with one write and flushed,
//! and acknowledged once the write completed. Before writing, the connection is checked
//! for a peer that closed it (a syslog receiver never talks back), so a batch is not
//! written into a dead connection. On errors the connection is dropped and the whole
//! batch is written again on a new one, with exponential backoff and jitter (at least once).

mod config;
mod format;
mod run;
mod transport;

#[cfg(test)]
mod tests;

use anyhow::Context as _;
use siemflow_core::{BoxFuture, ConfigIssue, SinkConfig, SinkContext};
use tokio_rustls::TlsConnector;

pub use config::{Facility, Format, Framing, Mode, Oversize, Payload, Severity, SyslogSinkConfig};

use config::split_address;
use format::{HeaderFields, MessageFormat};
use run::{DatagramLimit, Settings};
use transport::Target;

impl SinkConfig for SyslogSinkConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        Ok(Box::pin(run::send_batches(self.settings()?, cx)))
    }
}

impl SyslogSinkConfig {
    fn settings(&self) -> anyhow::Result<Settings> {
        let (host, _) = split_address(&self.address).map_err(anyhow::Error::msg)?;
        let address = self.address.trim().to_string();
        let mode = self.effective_mode();
        let target = match mode {
            config::Mode::Tcp => Target::Tcp { address },
            config::Mode::Udp => Target::Udp { address },
            config::Mode::Tls => {
                let tls = self.tls.clone().unwrap_or_default();
                let client = crate::tls::client_config(&tls).context("invalid `tls` options")?;
                let name = self.tls_server_name.clone().unwrap_or(host);
                let server_name = rustls_pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| anyhow::anyhow!("`{name}` is not a DNS name or IP address to check the certificate against"))?;
                Target::Tls {
                    address,
                    connector: TlsConnector::from(std::sync::Arc::new(client)),
                    server_name,
                }
            }
        };
        let severity_field = parse_path(self.severity_field.as_deref(), "severity_field")?;
        let facility_field = parse_path(self.facility_field.as_deref(), "facility_field")?;
        let hostname = match &self.hostname {
            Some(hostname) => hostname.clone(),
            None => machine_hostname(),
        };
        let proc_id = match &self.proc_id {
            Some(proc_id) => proc_id.clone(),
            None => std::process::id().to_string(),
        };
        let header = HeaderFields::new(
            &hostname,
            &self.app_name,
            &proc_id,
            self.msg_id.as_deref().unwrap_or(""),
        );
        Ok(Settings {
            target,
            format: MessageFormat {
                format: self.format,
                framing: self.effective_framing(),
                payload: self.encoding,
                escape_newlines: self.escape_newlines,
                facility: self.facility,
                severity: self.severity,
                facility_field,
                severity_field,
                header,
            },
            datagrams: (mode == config::Mode::Udp).then_some(DatagramLimit {
                max_bytes: self.max_datagram_bytes,
                oversize: self.oversize,
            }),
            connect_timeout: self.connect_timeout,
            write_timeout: self.write_timeout,
            retry: self.retry.clone(),
        })
    }
}

fn parse_path(path: Option<&str>, key: &str) -> anyhow::Result<Option<vrl::path::OwnedValuePath>> {
    path.map(|p| {
        vrl::path::parse_value_path(p)
            .map_err(|e| anyhow::anyhow!("`{key}`: `{p}` is not a field path ({e})"))
    })
    .transpose()
}

/// The machine's host name, `-` (the NILVALUE) when it cannot be read.
fn machine_hostname() -> String {
    match hostname::get() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the host name; sending `-` as HOSTNAME (set `hostname`)");
            String::new()
        }
    }
}
