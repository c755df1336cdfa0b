//! A reloaded config's static backends, resolved and with their TLS settings loaded, before
//! anything is applied: a backend whose address and TLS settings did not change keeps its
//! resolved address and TLS state; others are resolved now (on the admin thread).

use std::net::ToSocketAddrs;
use std::sync::Arc;

use switchyard_config::Config;

use super::Problem;
use crate::server::Shared;
use crate::upstream::directory::StaticBackend;
use crate::upstream::tls::UpstreamTls;

/// Every static backend of `config`, or every problem with them.
pub(super) fn statics(
    shared: &Shared,
    config: &Config,
) -> Result<Vec<StaticBackend>, Vec<Problem>> {
    let snapshot = shared.directory.snapshot();
    let mut problems = Vec::new();
    if let Err(e) = crate::upstream::scrape::check_targets(config) {
        problems.push(Problem {
            line: 0,
            section: None,
            key: Some("metrics".into()),
            message: e,
        });
    }
    let mut out = Vec::with_capacity(config.backends.len());
    for b in &config.backends {
        let section = Some(format!("backend {}", b.name));
        let running = snapshot
            .backends()
            .find(|o| !o.is_registered() && o.name() == b.name)
            .filter(|o| o.config.address == b.address && o.config.tls == b.tls);
        if let Some(o) = running {
            out.push(StaticBackend {
                config: b.clone(),
                addr: o.addr,
                tls: o.tls.clone(),
            });
            continue;
        }
        let addr = match (b.address.host.as_str(), b.address.port).to_socket_addrs() {
            Ok(mut it) => it.next(),
            Err(e) => {
                problems.push(Problem {
                    line: 0,
                    section: section.clone(),
                    key: Some("address".into()),
                    message: format!("{} does not resolve: {e}", b.address),
                });
                continue;
            }
        };
        let Some(addr) = addr else {
            problems.push(Problem {
                line: 0,
                section,
                key: Some("address".into()),
                message: format!("{} resolves to no address", b.address),
            });
            continue;
        };
        match UpstreamTls::for_backend(b) {
            Ok(tls) => out.push(StaticBackend {
                config: b.clone(),
                addr,
                tls: tls.map(|t: Arc<UpstreamTls>| t),
            }),
            Err(e) => problems.push(Problem {
                line: 0,
                section,
                key: Some("tls".into()),
                message: e.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}
