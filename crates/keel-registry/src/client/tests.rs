//! Unit tests of the registry client.

use std::time::Duration;

use reqwest::header;

use super::oci::sha256_digest;
use super::transport::redirect_refusal;
use super::*;
use crate::credentials::Credentials;

#[test]
fn listing_budget_from_the_environment() {
    let env = keel_testsupport::env_lookup;
    let b = RegistryClientBuilder::from_lookup(env(&[])).unwrap();
    assert_eq!((b.settings.max_pages, b.settings.max_tags), (1000, 100_000));
    let b = RegistryClientBuilder::from_lookup(env(&[
        ("KEEL_LISTING_MAX_PAGES", "5000"),
        ("KEEL_LISTING_MAX_TAGS", " 500000 "),
    ]))
    .unwrap();
    assert_eq!((b.settings.max_pages, b.settings.max_tags), (5000, 500_000));
    for bad in ["0", "-1", "lots", ""] {
        let err = RegistryClientBuilder::from_lookup(move |name: &str| {
            (name == "KEEL_LISTING_MAX_TAGS").then(|| bad.to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("KEEL_LISTING_MAX_TAGS"), "{err}");
    }
}

#[test]
fn link_headers() {
    let page = reqwest::Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        header::LINK,
        r#"</v2/a/tags/list?last=b&n=2>; rel="next""#.parse().unwrap(),
    );
    assert_eq!(
        next_link(&h, &page).as_deref(),
        Some("http://127.0.0.1:5000/v2/a/tags/list?last=b&n=2")
    );
    let mut h = HeaderMap::new();
    h.insert(
        header::LINK,
        r#"<https://r.example/v2/a/tags/list?last=c>; rel=next"#
            .parse()
            .unwrap(),
    );
    assert_eq!(
        next_link(&h, &page).as_deref(),
        Some("https://r.example/v2/a/tags/list?last=c")
    );
    let mut h = HeaderMap::new();
    h.insert(header::LINK, r#"</x>; rel="prev""#.parse().unwrap());
    assert_eq!(next_link(&h, &page), None);
}

#[test]
fn plain_http_only_where_allowed() {
    let c = RegistryClient::builder()
        .with_insecure_registry("registry.lan:5000")
        .build()
        .unwrap();
    assert_eq!(c.base("localhost:5000"), "http://localhost:5000");
    assert_eq!(c.base("127.0.0.1:41000"), "http://127.0.0.1:41000");
    assert_eq!(c.base("registry.lan:5000"), "http://registry.lan:5000");
    assert_eq!(c.base("registry.lan"), "https://registry.lan");
    assert_eq!(c.base("ghcr.io"), "https://ghcr.io");
    assert_eq!(c.base("docker.io"), "https://registry-1.docker.io");
}

#[test]
fn token_realms_must_be_https_unless_loopback_or_insecure() {
    let c = RegistryClient::builder()
        .with_insecure_registry("registry.lan:5000")
        .with_insecure_registry("auth.lan")
        .build()
        .unwrap();
    let check = |registry: &str, realm: &str| {
        c.check_realm(registry, &reqwest::Url::parse(realm).unwrap(), "list tags")
    };
    for (registry, realm) in [
        ("ghcr.io", "https://ghcr.io/token"),
        ("docker.io", "https://auth.docker.io/token"),
        ("127.0.0.1:5000", "http://127.0.0.1:41000/token"),
        ("ghcr.io", "http://localhost:8080/token"),
        ("ghcr.io", "http://[::1]:8080/token"),
        ("ghcr.io", "http://127.8.9.10/token"),
        ("registry.lan:5000", "http://auth.example.com/token"),
        ("ghcr.io", "http://auth.lan:9000/token"),
    ] {
        assert!(check(registry, realm).is_ok(), "{registry} {realm}");
    }
    for (registry, realm) in [
        ("ghcr.io", "http://ghcr.io/token"),
        ("docker.io", "http://auth.docker.io/token"),
        // A loopback registry does not make a remote realm safe over plain http.
        ("127.0.0.1:5000", "http://auth.example.com/token"),
        ("registry.lan", "http://auth.example.com/token"),
        ("ghcr.io", "ftp://ghcr.io/token"),
    ] {
        let e = check(registry, realm).unwrap_err().to_string();
        assert!(e.contains("not https"), "{registry} {realm}: {e}");
        let origin = reqwest::Url::parse(realm).unwrap().origin();
        if origin.is_tuple() {
            assert!(e.contains(&origin.ascii_serialization()), "{e}");
        }
        assert!(e.contains(&format!("registry {registry}")), "{e}");
    }
}

#[test]
fn only_the_registry_origin_gets_requests() {
    let c = RegistryClient::builder().build().unwrap();
    assert!(
        c.check_origin("ghcr.io", "https://ghcr.io/v2/a/tags/list?last=b", "x")
            .is_ok()
    );
    assert!(
        c.check_origin("docker.io", "https://registry-1.docker.io:443/v2/a", "x")
            .is_ok()
    );
    for url in [
        "https://evil.example/v2/a/tags/list",
        "http://ghcr.io/v2/a/tags/list",
        "https://ghcr.io:8443/v2/a/tags/list",
        "not a url",
    ] {
        let e = c.check_origin("ghcr.io", url, "list tags").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("another origin"), "{url}: {text}");
        let named = reqwest::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| url.to_owned());
        assert!(text.contains(&named), "{url}: {text}");
    }
}

#[test]
fn redirects_never_downgrade_to_plain_http() {
    let url = |u: &str| reqwest::Url::parse(u).unwrap();
    let tls = [url("https://r.example:8443/v2/a/tags/list")];
    let e = redirect_refusal(&url("http://r.example:8443/v2/a/tags/list"), &tls).unwrap();
    assert!(e.contains("http://r.example:8443"), "{e}");
    assert!(redirect_refusal(&url("http://cdn.example/blob"), &tls).is_some());
    assert_eq!(
        redirect_refusal(&url("https://cdn.example/blob"), &tls),
        None
    );
    let plain = [url("http://127.0.0.1:5000/v2/a/blobs/x")];
    assert_eq!(
        redirect_refusal(&url("http://127.0.0.1:9000/b"), &plain),
        None
    );
    let many: Vec<_> = (0..6)
        .map(|i| url(&format!("https://r.example/{i}")))
        .collect();
    assert!(redirect_refusal(&url("https://r.example/7"), &many).is_some());
    assert_eq!(
        redirect_refusal(&url("https://r.example/7"), &many[..5]),
        None
    );
}

#[test]
fn rates_slower_than_one_per_hour_are_refused() {
    for rps in [1e-300, 1.0 / 7200.0] {
        let e = RegistryClient::builder()
            .with_requests_per_second(rps)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
        assert!(e.to_string().contains("one request per hour"), "{e}");
        assert!(e.to_string().contains(&rps.to_string()), "{e}");
    }
    for rps in [0.0, 1.0 / 3600.0, 1e9, f64::INFINITY, f64::NAN, -1.0] {
        assert!(
            RegistryClient::builder()
                .with_requests_per_second(rps)
                .build()
                .is_ok(),
            "{rps}"
        );
    }
}

#[test]
fn backoff_grows_and_is_capped() {
    let c = RegistryClient::builder()
        .with_retries(5, Duration::from_millis(100), Duration::from_secs(1))
        .build()
        .unwrap();
    let backoff = c.inner.settings.backoff;
    for attempt in 1..8 {
        // Full jitter: anywhere from zero up to `base * 2^(attempt-1)`, capped.
        let d = backoff.delay(attempt);
        let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
        assert_eq!(backoff.ceiling(attempt), ceiling);
        assert!(d <= ceiling, "attempt {attempt}: {d:?}");
    }
}

#[test]
fn debug_hides_credentials() {
    let c = RegistryClient::builder()
        .with_credentials("ghcr.io", Credentials::basic("bot", "s3cr3t"))
        .build()
        .unwrap();
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

#[test]
fn sha256_of_bytes() {
    assert_eq!(
        sha256_digest(b"").to_string(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
