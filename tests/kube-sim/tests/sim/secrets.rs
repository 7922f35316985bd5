//! Secrets are decoded, defaulted and validated as the real server does on create and
//! update: undecodable base64 is a 400, bad keys, oversized data and missing type-specific
//! keys a 422, and an immutable Secret keeps its data.

use base64::Engine as _;
use kube_sim::SimConfig;
use serde_json::{Value, json};

use crate::common::*;

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

async fn empty() -> kube_sim::SimServer {
    start(SimConfig {
        empty: true,
        ..Default::default()
    })
    .await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn secret(name: &str, fields: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}});
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

async fn post(c: &kube::Client, body: &Value) -> Resp {
    send(c, "POST", SECRETS, &[], Some(body.clone())).await
}

fn causes(r: &Resp) -> Vec<(String, String, String)> {
    r.json()["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["reason"].as_str().unwrap().to_string(),
                c["field"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn data_that_is_not_base64_is_a_bad_request() {
    let server = empty().await;
    let c = client(&server).await;
    // A value written as plain text, as people do by hand.
    let r = post(&c, &secret("plain", json!({"data": {"password": "billy"}}))).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let s = r.json();
    assert_eq!(s["reason"], "BadRequest");
    assert_eq!(s["code"], 400);
    assert_eq!(
        s["message"],
        r#"Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 4"#
    );
    let r = post(&c, &secret("number", json!({"data": {"port": 5432}}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        r#"Secret in version "v1" cannot be handled as a Secret: json: cannot unmarshal number into Go struct field Secret.data of type []uint8"#
    );
    // An update is decoded the same way.
    let r = post(&c, &secret("good", json!({"data": {"k": b64(b"v")}}))).await;
    assert_eq!(r.status, 201);
    let mut body = r.json();
    body["data"]["k"] = json!("not base64!");
    let r = send(&c, "PUT", &format!("{SECRETS}/good"), &[], Some(body)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        r#"Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 3"#
    );
    let created: Vec<String> = server.create_log().iter().map(|k| k.name.clone()).collect();
    assert_eq!(created, ["good"]);
}

#[tokio::test]
async fn string_data_is_merged_into_data_and_the_type_defaults_to_opaque() {
    let server = empty().await;
    let c = client(&server).await;
    let r = post(
        &c,
        &secret(
            "merged",
            json!({"data": {"a": b64(b"from data"), "b": b64(b"overwritten")}, "stringData": {"b": "from stringData", "c": "new"}}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let stored = get_json(&c, &format!("{SECRETS}/merged")).await;
    assert_eq!(
        stored["data"],
        json!({"a": b64(b"from data"), "b": b64(b"from stringData"), "c": b64(b"new")})
    );
    assert!(stored.get("stringData").is_none(), "{stored}");
    assert_eq!(stored["type"], "Opaque");
}

#[tokio::test]
async fn keys_size_and_the_types_required_keys_are_validated() {
    let server = empty().await;
    let c = client(&server).await;
    let r = post(
        &c,
        &secret(
            "bad-keys",
            json!({"type": "kubernetes.io/tls", "data": {"tls.key": "", "my key": "", "..": ""}}),
        ),
    )
    .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "Secret");
    assert_eq!(s["details"]["name"], "bad-keys");
    assert!(s["details"].get("group").is_none());
    let regex = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
    assert_eq!(
        s["message"],
        format!(
            r#"Secret "bad-keys" is invalid: [data[..]: Invalid value: "..": must not be '..', data[my key]: Invalid value: "my key": {regex}, data[tls.crt]: Required value]"#
        )
    );
    assert_eq!(
        causes(&r),
        [
            (
                "FieldValueInvalid".to_string(),
                "data[..]".to_string(),
                r#"Invalid value: "..": must not be '..'"#.to_string()
            ),
            (
                "FieldValueInvalid".to_string(),
                "data[my key]".to_string(),
                format!(r#"Invalid value: "my key": {regex}"#)
            ),
            (
                "FieldValueRequired".to_string(),
                "data[tls.crt]".to_string(),
                "Required value".to_string()
            ),
        ]
    );

    let mebibyte = b64(&vec![7u8; 1024 * 1024 + 1]);
    let r = post(&c, &secret("big", json!({"data": {"blob": mebibyte}}))).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        r#"Secret "big" is invalid: data: Too long: must have at most 1048576 bytes"#
    );
    assert_eq!(causes(&r)[0].0, "FieldValueTooLong");

    let cases = [
        (
            json!({"type": "kubernetes.io/service-account-token"}),
            "metadata.annotations[kubernetes.io/service-account.name]: Required value",
        ),
        (
            json!({"type": "kubernetes.io/dockercfg"}),
            "data[.dockercfg]: Required value",
        ),
        (
            json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(b"{\"auths\"")}}),
            r#"data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": unexpected end of JSON input"#,
        ),
        (
            json!({"type": "kubernetes.io/basic-auth", "data": {"user": ""}}),
            "[data[username]: Required value, data[password]: Required value]",
        ),
        (
            json!({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": ""}}),
            "data[ssh-privatekey]: Required value",
        ),
    ];
    for (fields, expected) in cases {
        let r = post(&c, &secret("typed", fields.clone())).await;
        assert_eq!(r.status, 422, "{fields}");
        assert_eq!(
            r.json()["message"],
            format!(r#"Secret "typed" is invalid: {expected}"#),
            "{fields}"
        );
    }
    assert!(server.create_log().is_empty());

    // The same types with their keys are created.
    let valid = [
        json!({"type": "kubernetes.io/service-account-token", "metadata": {"name": "typed-0", "annotations": {"kubernetes.io/service-account.name": "default"}}}),
        json!({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(b"{}")}}),
        json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":{}}"}}),
        json!({"type": "kubernetes.io/basic-auth", "data": {"password": ""}}),
        json!({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": b64(b"key")}}),
        json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
        json!({"type": "example.com/anything", "data": {"x": ""}}),
    ];
    for (i, fields) in valid.into_iter().enumerate() {
        let mut body = secret(&format!("typed-{i}"), json!({}));
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = post(&c, &body).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
}

#[tokio::test]
async fn an_immutable_secret_keeps_its_data_and_its_type() {
    let server = empty().await;
    let c = client(&server).await;
    let r = post(
        &c,
        &secret(
            "frozen",
            json!({"immutable": true, "data": {"k": b64(b"v1")}}),
        ),
    )
    .await;
    assert_eq!(r.status, 201);
    let path = format!("{SECRETS}/frozen");
    let mut changed = r.json();
    changed["data"]["k"] = json!(b64(b"v2"));
    let r = send(&c, "PUT", &path, &[], Some(changed.clone())).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["message"],
        "Secret \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    let merge = [("Content-Type", "application/merge-patch+json")];
    let r = send(
        &c,
        "PATCH",
        &path,
        &merge,
        Some(json!({"immutable": false, "type": "kubernetes.io/tls"})),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Secret \"frozen\" is invalid: [type: Invalid value: \"kubernetes.io/tls\": field is immutable, immutable: Forbidden: field is immutable when `immutable` is set, data[tls.crt]: Required value, data[tls.key]: Required value]"
    );
    // Metadata still changes.
    let r = send(
        &c,
        "PATCH",
        &path,
        &merge,
        Some(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(get_json(&c, &path).await["data"]["k"], b64(b"v1"));
}

/// Every Secret the generator makes (service-account tokens, TLS, Helm releases, applied
/// and opaque ones) is accepted when created again, as a restore creates it.
#[tokio::test]
async fn every_generated_secret_is_accepted_by_a_create() {
    let source = start_n(3_000).await;
    let target = empty().await;
    let (sc, tc) = (client(&source).await, client(&target).await);
    let secrets = get_json(&sc, "/api/v1/secrets").await["items"]
        .as_array()
        .unwrap()
        .clone();
    let types: std::collections::BTreeSet<&str> = secrets
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    for t in [
        "Opaque",
        "helm.sh/release.v1",
        "kubernetes.io/service-account-token",
        "kubernetes.io/tls",
    ] {
        assert!(types.contains(t), "no {t} among {types:?}");
    }
    let namespaces: std::collections::BTreeSet<&str> = secrets
        .iter()
        .map(|s| s["metadata"]["namespace"].as_str().unwrap())
        .collect();
    for ns in namespaces {
        let r = send(
            &tc,
            "POST",
            "/api/v1/namespaces",
            &[],
            Some(json!({"metadata": {"name": ns}})),
        )
        .await;
        assert!(matches!(r.status, 201 | 409), "{ns}: {}", r.status);
    }
    for s in &secrets {
        let meta = &s["metadata"];
        let (ns, name) = (
            meta["namespace"].as_str().unwrap(),
            meta["name"].as_str().unwrap(),
        );
        let mut body = s.clone();
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            body["metadata"].as_object_mut().unwrap().remove(k);
        }
        let path = format!("/api/v1/namespaces/{ns}/secrets");
        let r = send(&tc, "POST", &path, &[], Some(body)).await;
        assert_eq!(
            r.status,
            201,
            "{ns}/{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let created = r.json();
        assert_eq!(created["data"], s["data"], "{ns}/{name}");
        assert_eq!(created["type"], s["type"], "{ns}/{name}");
    }
}
