//! `/admin/diagnose`'s config block: the config in force validated again. A server started
//! from a file has that file re-read and parsed as `switchyard reload` would (every error with
//! its line, section and key), and says whether it differs from the config in force; a server
//! without one has its config in force written out and parsed again.

use serde_json::{json, Value};

use crate::server::Shared;

/// The most differences from the config in force listed.
const SHOWN_CHANGES: usize = 50;

/// The config block of the report.
pub fn report(shared: &Shared) -> Value {
    let running = shared.routing().config.clone();
    let version = shared.reloads.version();
    let Some(path) = shared.reloads.file() else {
        let (valid, errors) = match switchyard_config::parse(&running.to_ini(), "in force") {
            Ok(_) => (true, Vec::new()),
            Err(errors) => (false, errors_json(&errors)),
        };
        return json!({
            "version": version,
            "file": null,
            "source": "in force",
            "valid": valid,
            "errors": errors,
            "message": if valid {
                "in force, valid (the server was not started from a config file)"
            } else {
                "the config in force does not validate again"
            },
        });
    };
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            return json!({
                "version": version,
                "file": shown,
                "source": "file",
                "valid": false,
                "errors": [{ "line": 0, "section": null, "key": null,
                             "message": format!("cannot read: {e}") }],
                "message": "the config file cannot be read",
            })
        }
    };
    match switchyard_config::parse(&text, &shown) {
        Err(errors) => json!({
            "version": version,
            "file": shown,
            "source": "file",
            "valid": false,
            "errors": errors_json(&errors),
            "message": format!(
                "the config file has {} error(s); a reload would be refused and the config in force stays",
                errors.len()
            ),
        }),
        Ok(parsed) => {
            let changes: Vec<String> = switchyard_config::diff(&running, &parsed)
                .iter()
                .map(ToString::to_string)
                .collect();
            json!({
                "version": version,
                "file": shown,
                "source": "file",
                "valid": true,
                "errors": [],
                "matches_running": changes.is_empty(),
                "pending_changes": changes.iter().take(SHOWN_CHANGES).collect::<Vec<_>>(),
                "message": if changes.is_empty() {
                    "valid; the file is the config in force".to_string()
                } else {
                    format!("valid; the file differs from the config in force in {} place(s) (not reloaded yet)", changes.len())
                },
            })
        }
    }
}

fn errors_json(errors: &switchyard_config::ConfigErrors) -> Vec<Value> {
    errors
        .iter()
        .map(|e| {
            json!({
                "line": e.line,
                "section": e.section,
                "key": e.key,
                "message": e.kind.to_string(),
            })
        })
        .collect()
}
