//! The plugin host against real plugins: the example Rust plugins built with cargo, the C
//! plugin and deliberately broken libraries compiled with `cc`.

mod support;

use http::{HeaderMap, Method, Request, StatusCode};
use support::plugins::libs;
use switchyard::plugin::{
    CallError, Completion, LoadedPlugin, PluginError, RequestView, ResponseView, Verdict,
};

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn request(headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = Request::builder()
        .method("POST")
        .uri("http://example/v1/chat/completions?x=1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn call(plugin: &LoadedPlugin, parts: &mut http::request::Parts) -> Result<Verdict, CallError> {
    plugin.on_request(&mut RequestView { parts, model: None })
}

#[test]
fn api_key_denies_without_a_key_and_adds_its_header_with_one() {
    let cfg = config(&[("keys", "k1, k2"), ("add_header", "x-plugin: api-key")]);
    let plugin = LoadedPlugin::load(&libs().api_key, &cfg).unwrap();
    assert_eq!(plugin.name(), "api-key");
    // `ON_COMPLETE = false`: export_plugin! registers no completion callback.
    assert!(!plugin.has_on_complete());

    let mut denied = request(&[]);
    match call(&plugin, &mut denied).unwrap() {
        Verdict::Respond { status, body } => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body, b"missing or unknown API key\n");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let mut wrong = request(&[("x-api-key", "nope")]);
    assert!(matches!(
        call(&plugin, &mut wrong).unwrap(),
        Verdict::Respond { .. }
    ));

    let mut allowed = request(&[("x-api-key", "k2")]);
    assert_eq!(call(&plugin, &mut allowed).unwrap(), Verdict::Continue);
    assert_eq!(allowed.headers["x-plugin"], "api-key");
    assert_eq!(allowed.uri.path(), "/v1/chat/completions");
}

#[test]
fn api_key_reads_a_configured_header_and_refuses_an_empty_key_list() {
    let plugin = LoadedPlugin::load(
        &libs().api_key,
        &config(&[("header", "Authorization"), ("keys", "s")]),
    )
    .unwrap();
    let mut parts = request(&[("authorization", "s")]);
    assert_eq!(call(&plugin, &mut parts).unwrap(), Verdict::Continue);
    assert!(!parts.headers.contains_key("x-plugin"));

    let err = LoadedPlugin::load(&libs().api_key, &[]).unwrap_err();
    assert!(matches!(&err, PluginError::CreateFailed { plugin, .. } if plugin == "api-key"));
    let msg = err.to_string();
    assert!(
        msg.contains("libapi_key.so") && msg.contains("keys"),
        "{msg}"
    );
}

fn respond_headers(plugin: &LoadedPlugin, model: Option<&str>, header: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(m) = header {
        headers.insert("x-model", m.parse().unwrap());
    }
    let mut view = ResponseView {
        status: StatusCode::OK,
        headers: &mut headers,
        method: &Method::POST,
        model,
    };
    plugin.on_response(&mut view).unwrap();
    headers
}

fn complete(plugin: &LoadedPlugin, model: Option<&str>) {
    let info = Completion {
        status: StatusCode::OK,
        request_bytes: 10,
        response_bytes: 200,
        duration_us: 1500,
        model,
    };
    plugin.on_complete(&info).unwrap();
}

#[test]
fn model_count_counts_per_model_across_calls_and_threads() {
    let plugin = LoadedPlugin::load(&libs().model_count, &[]).unwrap();
    assert_eq!(plugin.name(), "model-count");
    assert_eq!(
        respond_headers(&plugin, Some("llama"), None)["x-model-count"],
        "0"
    );

    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    complete(&plugin, Some("llama"));
                }
            });
        }
    });
    complete(&plugin, Some("qwen"));
    complete(&plugin, None);

    assert_eq!(
        respond_headers(&plugin, Some("llama"), None)["x-model-count"],
        "100"
    );
    assert_eq!(
        respond_headers(&plugin, Some("qwen"), None)["x-model-count"],
        "1"
    );
    // Without a model from the host, the response's x-model header names it.
    assert_eq!(
        respond_headers(&plugin, None, Some("qwen"))["x-model-count"],
        "1"
    );
    assert_eq!(respond_headers(&plugin, None, None)["x-model-count"], "1");
    // A request phase the plugin does not implement is a no-op.
    let mut parts = request(&[]);
    assert_eq!(call(&plugin, &mut parts).unwrap(), Verdict::Continue);

    let renamed = LoadedPlugin::load(&libs().model_count, &config(&[("header", "x-n")])).unwrap();
    assert_eq!(respond_headers(&renamed, Some("llama"), None)["x-n"], "0");
}

#[test]
fn the_workspace_builds_the_c_plugin_too() {
    // cargo's build of plugins/model-count: the same C code behind a Rust shim.
    let plugin = LoadedPlugin::load(&libs().model_count_cargo, &[]).unwrap();
    assert_eq!(plugin.name(), "model-count");
    assert!(plugin.has_on_complete());
    for _ in 0..3 {
        complete(&plugin, Some("llama"));
    }
    let headers = respond_headers(&plugin, Some("llama"), None);
    assert_eq!(headers["x-model-count"], "3");
}

#[test]
fn broken_libraries_are_refused_with_an_error_naming_the_file() {
    let l = libs();
    let err = LoadedPlugin::load(&l.wrong_abi, &[]).unwrap_err();
    assert!(
        matches!(&err, PluginError::AbiMismatch { found: 999, expected: 1, path } if path == &l.wrong_abi),
        "{err:?}"
    );
    assert!(err.to_string().contains("libwrong_abi.so"), "{err}");

    let err = LoadedPlugin::load(&l.no_symbol, &[]).unwrap_err();
    assert!(
        matches!(
            &err,
            PluginError::MissingSymbol {
                symbol: "switchyard_plugin_v1",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("libno_symbol.so"), "{err}");

    let err = LoadedPlugin::load(&l.text, &[]).unwrap_err();
    assert!(matches!(&err, PluginError::NotALibrary { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-library.so"), "{err}");

    let err = LoadedPlugin::load(&l.no_create, &[]).unwrap_err();
    assert!(
        matches!(&err, PluginError::MissingCallback { name: "create", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("libno_create.so"), "{err}");

    let missing = l.text.with_file_name("does-not-exist.so");
    let err = LoadedPlugin::load(&missing, &[]).unwrap_err();
    assert!(matches!(&err, PluginError::NotALibrary { .. }), "{err:?}");
}

#[test]
fn a_panicking_callback_is_an_error_and_the_next_call_succeeds() {
    let plugin = LoadedPlugin::load(&libs().faults, &config(&[("panic_on", "request")])).unwrap();
    let mut parts = request(&[("x-panic", "1")]);
    let err = call(&plugin, &mut parts).unwrap_err();
    assert_eq!(
        err,
        CallError::Panicked {
            plugin: "test-faults".into()
        }
    );
    let mut parts = request(&[]);
    assert_eq!(call(&plugin, &mut parts).unwrap(), Verdict::Continue);

    let plugin = LoadedPlugin::load(&libs().faults, &config(&[("panic_on", "complete")])).unwrap();
    let info = Completion {
        status: StatusCode::OK,
        request_bytes: 0,
        response_bytes: 0,
        duration_us: 0,
        model: None,
    };
    assert!(matches!(
        plugin.on_complete(&info),
        Err(CallError::Panicked { .. })
    ));

    let err = LoadedPlugin::load(&libs().faults, &config(&[("panic_on", "create")])).unwrap_err();
    assert!(
        matches!(&err, PluginError::CreateFailed { message, .. } if message.contains("panicked"))
    );
}

#[test]
fn invalid_headers_oversized_answers_and_error_codes_are_call_errors() {
    let faults =
        |pairs: &[(&str, &str)]| LoadedPlugin::load(&libs().faults, &config(pairs)).unwrap();

    let plugin = faults(&[("invalid_header", "true")]);
    let mut parts = request(&[]);
    let err = call(&plugin, &mut parts).unwrap_err();
    assert!(matches!(&err, CallError::InvalidHeader { name, .. } if name == "bad header name"));

    let plugin = faults(&[(
        "respond_bytes",
        &(switchyard::plugin::MAX_RESPOND_BODY + 1).to_string(),
    )]);
    let err = call(&plugin, &mut request(&[])).unwrap_err();
    assert!(matches!(err, CallError::BodyTooLarge { .. }), "{err:?}");

    let plugin = faults(&[("respond_bytes", "5")]);
    match call(&plugin, &mut request(&[])).unwrap() {
        Verdict::Respond { status, body } => assert_eq!((status.as_u16(), body.len()), (200, 5)),
        other => panic!("{other:?}"),
    }

    let plugin = faults(&[("fail", "true")]);
    let err = call(&plugin, &mut request(&[])).unwrap_err();
    assert_eq!(
        err,
        CallError::Failed {
            plugin: "test-faults".into(),
            code: -1
        }
    );
    assert_eq!(err.to_string(), "plugin test-faults failed (code -1)");
}

#[test]
fn a_plugin_shared_across_threads_outlives_its_clones() {
    let plugin = LoadedPlugin::load(&libs().api_key, &config(&[("keys", "k")])).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let p = plugin.clone();
            s.spawn(move || {
                for _ in 0..50 {
                    let mut parts = request(&[("x-api-key", "k")]);
                    assert_eq!(call(&p, &mut parts).unwrap(), Verdict::Continue);
                }
            });
        }
    });
    drop(plugin);
}

#[test]
fn the_noop_plugin_has_only_a_request_callback() {
    let plugin = LoadedPlugin::load(&libs().noop, &[]).unwrap();
    assert_eq!(plugin.name(), "noop");
    assert!(!plugin.has_on_complete());
    let mut parts = request(&[("x-a", "1")]);
    assert_eq!(call(&plugin, &mut parts).unwrap(), Verdict::Continue);
    assert_eq!(parts.headers["x-a"], "1");
    assert_eq!(parts.uri.path(), "/v1/chat/completions");
    // No response callback: the headers are left as they are.
    let headers = respond_headers(&plugin, Some("m"), None);
    assert!(headers.is_empty());
}
