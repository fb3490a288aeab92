use super::*;

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = HttpConfig::new()
        .with_auth(Credential::Token(Secret::new("tok-123")))
        .with_auth(Credential::Basic {
            username: "ci".into(),
            password: Secret::new("pw-456"),
        })
        .with_auth(Credential::Bearer(Secret::new("bear-789")));
    let shown = format!("{config:?}");
    for secret in ["tok-123", "pw-456", "bear-789"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("\"ci\""), "{shown}");
}

#[test]
fn per_source_credentials_replace_the_common_ones() {
    let config = HttpConfig::new()
        .with_auth(Credential::Token(Secret::new("all")))
        .with_source_auth(
            WebhookSource::DockerHub,
            Credential::Token(Secret::new("hub")),
        );
    assert_eq!(config.credentials(WebhookSource::DockerHub).len(), 1);
    assert!(config.open_sources().is_empty());
    assert_eq!(HttpConfig::new().open_sources().len(), 8);
    let mut headers = HeaderMap::new();
    headers.insert(TOKEN_HEADER, HeaderValue::from_static("all"));
    assert!(!header_auth(
        config.credentials(WebhookSource::DockerHub),
        &headers,
        None
    ));
    assert!(header_auth(
        config.credentials(WebhookSource::Quay),
        &headers,
        None
    ));
    assert!(header_auth(
        config.credentials(WebhookSource::DockerHub),
        &HeaderMap::new(),
        Some("hub")
    ));
}

#[test]
fn credentials_from_the_environment() {
    let env = keel_testsupport::env_lookup;
    let config = HttpConfig::new()
        .with_env(env(&[
            ("KEEL_WEBHOOK_TOKEN", "t"),
            ("KEEL_WEBHOOK_BASIC_USER", "u"),
            ("KEEL_WEBHOOK_BASIC_PASSWORD", "p"),
            ("KEEL_WEBHOOK_TOKEN_REGISTRY", "r"),
        ]))
        .unwrap();
    assert_eq!(config.credentials(WebhookSource::Quay).len(), 2);
    assert_eq!(config.credentials(WebhookSource::Registry).len(), 1);
    let err = HttpConfig::new()
        .with_env(env(&[("KEEL_WEBHOOK_BASIC_USER", "u")]))
        .unwrap_err();
    assert!(err.contains("KEEL_WEBHOOK_BASIC_PASSWORD"), "{err}");
    assert_eq!(
        HttpConfig::new()
            .with_env(env(&[]))
            .unwrap()
            .open_sources()
            .len(),
        8
    );
}

#[test]
fn open_endpoints_are_named_until_all_have_credentials() {
    let all_open = HttpConfig::new().open_endpoints_error().unwrap();
    assert!(
        all_open.contains("/v1/webhooks/native") && all_open.contains("/v1/webhooks/registry"),
        "{all_open}"
    );
    assert!(
        all_open.contains("KEEL_WEBHOOK_TOKEN")
            && all_open.contains("--unsafe-unauthenticated-webhooks"),
        "{all_open}"
    );
    let one_open = WebhookSource::ALL
        .into_iter()
        .filter(|s| *s != WebhookSource::Quay)
        .fold(HttpConfig::new(), |c, s| {
            c.with_source_auth(s, Credential::Token(Secret::new("t")))
        })
        .open_endpoints_error()
        .unwrap();
    assert!(
        one_open.contains("endpoints /v1/webhooks/quay would"),
        "{one_open}"
    );
    assert!(!one_open.contains("native"), "{one_open}");
    let closed = HttpConfig::new().with_auth(Credential::Token(Secret::new("t")));
    assert_eq!(closed.open_endpoints_error(), None);
}

#[test]
fn the_delivery_log_refuses_replays_within_its_bounds() {
    let log = DeliveryLog::new(4, std::time::Duration::from_secs(3600));
    assert_eq!(log.admit(Some("d-1"), "sha256=aa"), Ok(()));
    assert_eq!(log.admit(Some("d-1"), "sha256=bb"), Err(Replay::DeliveryId));
    assert_eq!(log.admit(Some("d-2"), "sha256=AA"), Err(Replay::Signature));
    assert_eq!(log.admit(None, "sha256=aa"), Err(Replay::Signature));
    // Refused deliveries are not remembered: d-2 is still new.
    assert_eq!(log.admit(Some("d-2"), "sha256=cc"), Ok(()));
    // Capacity four keys: a third delivery pushes out the first one's two.
    assert_eq!(log.admit(Some("d-3"), "sha256=dd"), Ok(()));
    assert_eq!(log.admit(Some("d-1"), "sha256=aa"), Ok(()));

    let short = DeliveryLog::new(100, std::time::Duration::from_millis(10));
    assert_eq!(short.admit(Some("d-1"), "sha256=aa"), Ok(()));
    assert_eq!(
        short.admit(Some("d-1"), "sha256=aa"),
        Err(Replay::DeliveryId)
    );
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(short.admit(Some("d-1"), "sha256=aa"), Ok(()));
}

#[test]
fn signatures_must_be_whole_hex() {
    let credentials = [Credential::Token(Secret::new("hub"))];
    let body = b"{}";
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hub").unwrap();
    mac.update(body);
    let good = hex::encode(mac.finalize().into_bytes());
    let with = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, value.parse().unwrap());
        signature_auth(&credentials, &headers, body)
    };
    assert!(with(&format!("sha256={good}")));
    assert!(!with(&format!("sha256={}", &good[1..])));
    assert!(!with("sha256=0af"));
    assert!(!with("sha256=zz"));
}
