//! The dashboard over real HTTP: a server on 127.0.0.1, a browser-like client without a cookie
//! store (cookies are carried by hand) and no redirect following.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use keel_api::dashboard::{DashboardConfig, ImageDetail, TrackedImages, TrackedRow};
use keel_api::{ApiAuth, Role};
use keel_core::Error;
use keel_core::approval::{
    ApprovalRequest, ApprovalState, Approvals, AuditAction, AuditEntry, MemoryApprovalStore,
};
use keel_core::keel_keys::{self, changed_settings};
use keel_core::policy::{Explanation, Reason, Rejection};
use keel_core::target::SettingsChange;
use keel_testsupport::pipeline::{stored_request, web_plan};
use keel_testsupport::receiver::serve_router;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

const SCRIPT: &str = "<script>alert(1)</script>";
const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
const READER_TOKEN: &str = "token-of-the-reader-4242";
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Extra request headers.
type Headers<'a> = &'a [(&'a str, &'a str)];

struct Server {
    url: String,
    approvals: Approvals,
    http: reqwest::Client,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn start(tracked: Option<Arc<dyn TrackedImages>>) -> Server {
    let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
    let auth = ApiAuth::builder()
        .basic_user("root", "pw-of-root")
        .with_role("root", Role::Admin)
        .basic_user("ann", "pw-of-ann")
        .with_role("ann", Role::Approver)
        .basic_user("rita", "pw-of-rita")
        .with_role("rita", Role::Reader)
        .basic_user(SCRIPT, "pw-of-script")
        .with_role(SCRIPT, Role::Approver)
        .bearer_token("board", READER_TOKEN)
        .with_role("board", Role::Reader)
        .build()
        .unwrap();
    let mut config = DashboardConfig::new(approvals.clone(), auth);
    config.tracked = tracked;
    let url = format!(
        "http://{}",
        serve_router(keel_api::dashboard::router(config)).await
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Server {
        url,
        approvals,
        http,
    }
}

/// A server with one pending request for `deployment/default/web/app` to 1.1.0, and the
/// session cookie of `user` signed in there.
async fn web_request_seen_by(user: &str, password: &str) -> (Server, ApprovalRequest, String) {
    let s = start(None).await;
    let r = s.open("deployment/default/web/app", "1.1.0").await;
    let cookie = s.session(user, password).await;
    (s, r, cookie)
}

impl Server {
    async fn open(&self, id: &str, tag: &str) -> ApprovalRequest {
        self.approvals
            .request(&web_plan(id, tag), None, 1, None, None)
            .await
            .unwrap()
    }

    async fn state(&self, id: &str) -> ApprovalState {
        self.approvals.get(id).await.unwrap().unwrap().state
    }

    /// The `name=value` of the session cookie a login sets, or `None` when it is refused.
    async fn login(&self, user: &str, password: &str) -> (Page, Option<String>) {
        let r = self
            .http
            .post(format!("{}/ui/login", self.url))
            .form(&[("user", user), ("password", password)])
            .send()
            .await
            .unwrap();
        let cookie = r
            .headers()
            .get(SET_COOKIE)
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        (page(r).await, cookie)
    }

    async fn session(&self, user: &str, password: &str) -> String {
        self.login(user, password).await.1.expect("logged in")
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        page(r.send().await.unwrap()).await
    }

    async fn post(
        &self,
        path: &str,
        cookie: &str,
        csrf: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Page {
        let mut r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", cookie);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let form: Vec<(&str, &str)> = csrf.map(|c| ("csrf", c)).into_iter().collect();
        page(r.form(&form).send().await.unwrap()).await
    }

    /// Presses the button `action` (`approve`, `reject` or `delete`) of request `id` on
    /// `page`, a page that shows it (for its CSRF token).
    async fn press(&self, page: &Page, id: &str, action: &str, cookie: &str) -> Page {
        let path = format!("/ui/approvals/{id}/{action}");
        self.post(&path, cookie, Some(&csrf(&page.body)), &[]).await
    }

    /// Posts `fields` as a same-origin form.
    async fn submit(&self, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", cookie)
            .header("origin", &self.url)
            .form(fields);
        page(r.send().await.unwrap()).await
    }
}

async fn page(r: reqwest::Response) -> Page {
    Page {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// The CSRF token of the first form on a page.
fn csrf(body: &str) -> String {
    let start = body
        .find(r#"name="csrf" value=""#)
        .expect("a form with a token")
        + 19;
    let len = body[start..].find('"').unwrap();
    body[start..start + len].to_owned()
}

fn location(p: &Page) -> &str {
    p.headers.get(LOCATION).unwrap().to_str().unwrap()
}

fn entry(time: DateTime<Utc>, action: AuditAction, actor: Option<&str>, msg: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        time,
        action,
        request: None,
        actor: actor.map(str::to_owned),
        target: "prod".into(),
        image_id: "deployment/default/web/app".into(),
        image: "ghcr.io/acme/web:1.1.0".into(),
        message: msg.into(),
    }
}

#[tokio::test]
async fn login_with_right_and_wrong_password() {
    let s = start(None).await;
    let form = s.get("/ui/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains(r#"<label for="password">"#));
    assert!(form.body.contains("<title>Log in · Keel</title>"));

    let (refused, cookie) = s.login("ann", "not-her-password").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    assert!(refused.body.contains("Wrong user name or password."));
    let (refused, cookie) = s.login("nobody", "pw-of-ann").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());

    let (ok, cookie) = s.login("ann", "pw-of-ann").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&ok), "/ui/");
    let set = ok.headers.get(SET_COOKIE).unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let cookie = cookie.unwrap();
    let approvals = s.get("/ui/approvals", Some(&cookie)).await;
    assert_eq!(approvals.status, StatusCode::OK);
    assert!(approvals.body.contains("<title>Approvals · Keel</title>"));

    let logout = s
        .post("/ui/logout", &cookie, Some(&csrf(&approvals.body)), &[])
        .await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    let cleared = logout.headers.get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn pages_without_a_valid_session_redirect_to_login() {
    let s = start(None).await;
    let cookie = s.session("ann", "pw-of-ann").await;
    let (name, value) = cookie.split_once('=').unwrap();
    let (payload, tag) = value.split_once('.').unwrap();
    let tampered = format!("{name}={payload}x.{tag}");
    for path in [
        "/ui/",
        "/ui/approvals",
        "/ui/audit",
        "/ui/audit.json",
        "/ui/activity",
        "/ui/pending-count",
    ] {
        for c in [None, Some(tampered.as_str()), Some("keel_session=abc.def")] {
            let p = s.get(path, c).await;
            assert_eq!(p.status, StatusCode::SEE_OTHER, "{path} {c:?}");
            assert_eq!(location(&p), "/ui/login");
        }
    }
    let r = s
        .http
        .get(format!("{}/ui/approvals", s.url))
        .bearer_auth(READER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a bearer token may read pages");
}

#[tokio::test]
async fn approver_approves_through_the_form_and_the_audit_shows_the_vote() {
    let (s, r, cookie) = web_request_seen_by("ann", "pw-of-ann").await;
    let list = s.get("/ui/approvals?state=pending", Some(&cookie)).await;
    assert!(list.body.contains(">Approve</button>"));
    assert!(list.body.contains(">Reject</button>"));
    assert!(
        !list.body.contains(">Delete</button>"),
        "deleting is for admins"
    );
    assert!(list.body.contains("ghcr.io/acme/web:1.1.0"));
    assert!(list.body.contains("deployment/default/web/app"));

    let voted = s
        .post(
            &format!("/ui/approvals/{}/approve", r.id),
            &cookie,
            Some(&csrf(&list.body)),
            &[("origin", &s.url), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(voted.status, StatusCode::SEE_OTHER, "{}", voted.body);
    assert_eq!(s.state(&r.id).await, ApprovalState::Approved);
    let stored = s.approvals.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.votes[0].voter, "ann");

    let approved = s.get("/ui/approvals?state=approved", Some(&cookie)).await;
    assert!(approved.body.contains(r#"<span class="voter">ann</span>"#));
    assert!(!approved.body.contains(">Approve</button>"));
    let audit = s.get("/ui/audit", Some(&cookie)).await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit
            .body
            .contains(r#"<span class="badge voted">voted</span>"#)
    );
    assert!(audit.body.contains("<td>ann</td>"));

    let admin = s.session("root", "pw-of-root").await;
    let list = s.get("/ui/approvals", Some(&admin)).await;
    assert!(list.body.contains(">Delete</button>"));
    let deleted = s.press(&list, &r.id, "delete", &admin).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert!(s.approvals.get(&r.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_reader_sees_no_buttons_and_its_post_is_refused() {
    let (s, r, cookie) = web_request_seen_by("rita", "pw-of-rita").await;
    let list = s.get("/ui/approvals", Some(&cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("ghcr.io/acme/web:1.1.0"));
    for button in [">Approve</button>", ">Reject</button>", ">Delete</button>"] {
        assert!(!list.body.contains(button), "{button}");
    }
    for action in ["approve", "reject", "delete"] {
        // With the token of the page's only form, the logout form.
        let p = s.press(&list, &r.id, action, &cookie).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(s.state(&r.id).await, ApprovalState::Pending);
    assert!(stored_request(&s.approvals, &r.id).await.votes.is_empty());
}

#[tokio::test]
async fn forged_posts_are_refused_and_change_nothing() {
    let (s, r, cookie) = web_request_seen_by("ann", "pw-of-ann").await;
    let other = s.session("root", "pw-of-root").await;
    let token = csrf(&s.get("/ui/approvals", Some(&cookie)).await.body);
    let others_token = csrf(&s.get("/ui/approvals", Some(&other)).await.body);
    let path = format!("/ui/approvals/{}/approve", r.id);
    let forged: [(Option<&str>, Headers); 5] = [
        (None, &[]),
        (Some("not-the-token"), &[]),
        (Some(&others_token), &[]),
        (Some(&token), &[("origin", "https://evil.example")]),
        (Some(&token), &[("sec-fetch-site", "cross-site")]),
    ];
    for (csrf, headers) in forged {
        let p = s.post(&path, &cookie, csrf, headers).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{csrf:?} {headers:?}");
        assert_eq!(s.state(&r.id).await, ApprovalState::Pending);
    }
    let login = s
        .http
        .post(format!("{}/ui/login", s.url))
        .header("origin", "https://evil.example")
        .form(&[("user", "ann"), ("password", "pw-of-ann")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
    assert!(login.headers().get(SET_COOKIE).is_none());
    let audit = s.approvals.audit_log(&Default::default()).await.unwrap();
    assert!(audit.iter().all(|e| e.action == AuditAction::Requested));

    // The same request with the right token from the same site goes through.
    let p = s
        .post(&path, &cookie, Some(&token), &[("origin", &s.url)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(s.state(&r.id).await, ApprovalState::Approved);
}

struct Rows(Vec<TrackedRow>);

#[async_trait]
impl TrackedImages for Rows {
    async fn snapshot(&self) -> Vec<TrackedRow> {
        self.0.clone()
    }
}

fn rows(n: usize) -> Vec<TrackedRow> {
    let now = Utc::now();
    (0..n)
        .map(|i| TrackedRow {
            target: "prod".into(),
            kind: if i % 3 == 0 {
                "statefulset"
            } else {
                "deployment"
            }
            .into(),
            namespace_or_repo: format!("team-{}", i % 7),
            id: format!("deployment/team-{}/app-{i}/web", i % 7),
            container: "web".into(),
            image: format!("ghcr.io/acme/app-{i}:1.{}.0", i % 10),
            policy: if i % 2 == 0 { "minor" } else { "patch" }.into(),
            trigger: "poll @every 5m".into(),
            update: (i % 4 == 0).then(|| format!("ghcr.io/acme/app-{i}:1.{}.1", i % 10)),
            last_checked: Some(now - Duration::minutes(i as i64 % 60)),
            last_error: (i % 25 == 0).then(|| "registry answered 503".to_owned()),
            paused: false,
        })
        .collect()
}

#[tokio::test]
async fn user_controlled_text_is_shown_escaped() {
    let mut tracked = rows(2);
    tracked[0].image = format!("ghcr.io/acme/{SCRIPT}");
    tracked[1].last_error = Some(SCRIPT.into());
    let s = start(Some(Arc::new(Rows(tracked)))).await;
    let r = s.open("deployment/default/web/app", "1.1.0").await;
    s.approvals
        .store()
        .append_audit(entry(
            Utc::now(),
            AuditAction::Applied,
            Some(SCRIPT),
            &format!("applied {SCRIPT}"),
        ))
        .await
        .unwrap();
    let cookie = s.session(SCRIPT, "pw-of-script").await;
    let list = s.get("/ui/approvals", Some(&cookie)).await;
    let voted = s.press(&list, &r.id, "reject", &cookie).await;
    assert_eq!(voted.status, StatusCode::SEE_OTHER, "{}", voted.body);
    assert_eq!(s.state(&r.id).await, ApprovalState::Rejected);
    for path in ["/ui/approvals", "/ui/audit", "/ui/"] {
        let p = s.get(path, Some(&cookie)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert!(p.body.contains(ESCAPED), "{path} shows the text escaped");
        assert!(!p.body.contains(SCRIPT), "{path} has no raw script");
    }
    let export = s.get("/ui/audit.json?action=applied", Some(&cookie)).await;
    let json: serde_json::Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["actor"], SCRIPT);
}

#[tokio::test]
async fn every_ui_response_carries_the_security_headers() {
    let s = start(None).await;
    let cookie = s.session("ann", "pw-of-ann").await;
    let responses = [
        s.get("/ui/login", None).await,
        s.get("/ui/approvals", None).await,
        s.get("/ui/approvals", Some(&cookie)).await,
        s.get("/ui/style.css", None).await,
        s.get("/ui/refresh.js", None).await,
        s.get("/ui/activity", Some(&cookie)).await,
        s.post("/ui/approvals/x/approve", &cookie, None, &[]).await,
    ];
    for p in &responses {
        let h = |name: &str| p.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h("content-security-policy").as_deref(), Some(CSP));
        assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(h("referrer-policy").as_deref(), Some("no-referrer"));
        assert_eq!(h("cache-control").as_deref(), Some("no-store"));
    }
    let css = &responses[3];
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.body.contains("@media"));
    assert!(responses[4].body.contains("/ui/pending-count"));
    assert!(!responses[2].body.contains("<script>"), "no inline script");

    let count: serde_json::Value =
        serde_json::from_str(&s.get("/ui/pending-count", Some(&cookie)).await.body).unwrap();
    assert_eq!(count["pending"], 0);
}

#[tokio::test]
async fn the_activity_chart_counts_a_seeded_audit_log() {
    let s = start(None).await;
    let now = Utc::now();
    let today = now.date_naive();
    let yesterday = today.pred_opt().unwrap();
    let store = s.approvals.store();
    let mut seed = vec![];
    seed.extend((0..3).map(|_| entry(now, AuditAction::Applied, None, "")));
    seed.push(entry(now, AuditAction::ApplyFailed, None, ""));
    seed.push(entry(now, AuditAction::Voted, Some("ann"), ""));
    seed.extend((0..2).map(|_| entry(now - Duration::days(1), AuditAction::Rejected, None, "")));
    seed.push(entry(
        now - Duration::days(40),
        AuditAction::Applied,
        None,
        "",
    ));
    for e in seed {
        store.append_audit(e).await.unwrap();
    }
    let cookie = s.session("rita", "pw-of-rita").await;
    let p = s.get("/ui/activity", Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::OK);
    let body = &p.body;
    assert!(body.contains("<svg"));
    assert!(body.contains("Updates per day over the last 30 days: 6 in all</title>"));
    let bar = |class: &str, day, n: usize| {
        format!(r#"class="bar {class}""#) + "|" + &format!(r#"data-day="{day}" data-count="{n}""#)
    };
    for (class, day, n) in [
        ("applied", today, 3),
        ("failed", today, 1),
        ("rejected", yesterday, 2),
    ] {
        let want = bar(class, day, n);
        let (c, d) = want.split_once('|').unwrap();
        let found = body
            .split("<rect ")
            .any(|rect| rect.contains(c) && rect.contains(d));
        assert!(found, "a {class} bar of {n} on {day}");
        assert!(body.contains(&format!("<title>{day}: {n} {class}</title>")));
    }
    assert_eq!(body.matches(r#"class="bar "#).count(), 3, "three bars");
    let old = (now - Duration::days(40)).date_naive();
    assert!(!body.contains(&old.to_string()));
    assert!(body.contains(&format!(
        "<tr><td>{today}</td><td class=\"num\">3</td><td class=\"num\">1</td><td class=\"num\">0</td></tr>"
    )));
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_and_filters() {
    let s = start(None).await;
    let store = s.approvals.store();
    for i in 0..120 {
        let mut e = entry(
            Utc::now(),
            AuditAction::Applied,
            None,
            &format!("entry {i}"),
        );
        if i % 2 == 0 {
            e.image_id = format!("deployment/other/db-{i}/db");
            e.action = AuditAction::ApplyFailed;
        }
        store.append_audit(e).await.unwrap();
    }
    let cookie = s.session("rita", "pw-of-rita").await;
    let first = s.get("/ui/audit", Some(&cookie)).await;
    assert_eq!(first.body.matches("<tr><td>").count(), 50);
    assert!(first.body.contains("<td>entry 119</td>"));
    assert!(first.body.contains("page 1 of 3"));
    let third = s.get("/ui/audit?page=3", Some(&cookie)).await;
    assert_eq!(third.body.matches("<tr><td>").count(), 20);
    assert!(third.body.contains("<td>entry 0</td>"));
    let filtered = s
        .get("/ui/audit?action=apply-failed&image=db-1", Some(&cookie))
        .await;
    // db-10, db-12 .. db-18, db-100 .. db-118
    assert_eq!(filtered.body.matches("<tr><td>").count(), 15);
    let json: Vec<AuditEntry> = serde_json::from_str(
        &s.get("/ui/audit.json?image=other", Some(&cookie))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(json.len(), 60);
    assert!(json.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
}

#[tokio::test]
async fn the_tracked_images_page_without_a_provider_says_none_are_known() {
    let s = start(None).await;
    let cookie = s.session("rita", "pw-of-rita").await;
    let p = s.get("/ui/", Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("No tracked images are known"));
}

#[tokio::test]
async fn the_tracked_images_page_with_1000_rows_stays_under_a_megabyte() {
    let s = start(Some(Arc::new(Rows(rows(1000))))).await;
    let cookie = s.session("rita", "pw-of-rita").await;
    let started = Instant::now();
    let p = s.get("/ui/", Some(&cookie)).await;
    let took = started.elapsed();
    assert_eq!(p.status, StatusCode::OK);
    let css = s.get("/ui/style.css", None).await.body.len();
    let js = s.get("/ui/refresh.js", None).await.body.len();
    let total = p.body.len() + css + js;
    eprintln!(
        "tracked images page, 1000 rows: {} bytes HTML + {css} CSS + {js} JS = {total} bytes, served in {took:?}",
        p.body.len()
    );
    assert!(total < 1_000_000, "{total} bytes");
    assert_eq!(p.body.matches("<tr><td>prod</td>").count(), 1000);
    // 250 rows have an update, 40 an error (10 of which also have an update).
    assert!(
        p.body
            .contains(r#"<span class="badge failed">error</span> <strong>40</strong>"#)
    );
    assert!(
        p.body.contains(
            r#"<span class="badge pending">update available</span> <strong>240</strong>"#
        )
    );
    assert!(
        p.body
            .contains(r#"<span class="badge applied">up to date</span> <strong>720</strong>"#)
    );

    let filtered = s
        .get(
            "/ui/?ns=team-3&kind=deployment&policy=minor&update=yes",
            Some(&cookie),
        )
        .await;
    let want = rows(1000)
        .iter()
        .filter(|r| {
            r.namespace_or_repo == "team-3"
                && r.kind == "deployment"
                && r.policy == "minor"
                && r.update.is_some()
        })
        .count();
    assert!(want > 0);
    assert_eq!(filtered.body.matches("<tr><td>prod</td>").count(), want);

    let sorted = s.get("/ui/?sort=image&desc=1", Some(&cookie)).await;
    let first = sorted.body.find("ghcr.io/acme/app-999:1.9.0").unwrap();
    let later = sorted.body.find("ghcr.io/acme/app-0:1.0.0").unwrap();
    assert!(first < later, "sorted by image, descending");
    assert!(sorted.body.contains(r#"aria-sort="descending""#));
}

/// One image whose settings live in memory and are checked as a target checks them.
struct Editable {
    row: TrackedRow,
    settings: Mutex<BTreeMap<String, String>>,
}

impl Editable {
    fn new() -> Arc<Self> {
        let row = rows(1).remove(0);
        let settings = BTreeMap::from([(keel_keys::POLICY.to_owned(), "patch".to_owned())]);
        Arc::new(Editable {
            row,
            settings: Mutex::new(settings),
        })
    }

    fn settings(&self) -> BTreeMap<String, String> {
        self.settings.lock().unwrap().clone()
    }
}

#[async_trait]
impl TrackedImages for Editable {
    async fn snapshot(&self) -> Vec<TrackedRow> {
        vec![self.row.clone()]
    }

    async fn image(&self, target: &str, id: &str) -> Option<ImageDetail> {
        (target == self.row.target && id == self.row.id).then(|| {
            let mut detail = ImageDetail::of(self.row.clone());
            detail.settings = Some(self.settings());
            detail.tags_listed = 2;
            let explanation = Explanation {
                chosen: Some("1.0.1".into()),
                note: None,
                rejected: vec![Rejection {
                    tag: SCRIPT.into(),
                    reason: Reason::Unparsable {
                        expected: "a semver version",
                    },
                }],
            };
            detail.explanation = Some(explanation);
            detail.next_change = Some(format!("-image: web:1.0.0\n+image: {SCRIPT}"));
            detail
        })
    }

    async fn settings(&self, _: &str, _: &str) -> Result<BTreeMap<String, String>, Error> {
        Ok(self.settings())
    }

    async fn change_settings(
        &self,
        _: &str,
        id: &str,
        change: &SettingsChange,
    ) -> Result<(), Error> {
        let mut settings = self.settings.lock().unwrap();
        let next = changed_settings(&settings, change).map_err(|e| {
            Error::InvalidInput(keel_core::ParseError::new("setting", id, e.to_string()))
        })?;
        *settings = next;
        Ok(())
    }
}

/// A dashboard over one [`Editable`] image, and the path of that image's page.
async fn image_page() -> (Server, Arc<Editable>, String) {
    let image = Editable::new();
    let s = start(Some(image.clone())).await;
    let path = format!("/ui/image?target=prod&id={}", image.row.id);
    (s, image, path)
}

#[tokio::test]
async fn the_image_page_explains_the_choice_and_escapes_every_tag() {
    let (s, _, path) = image_page().await;
    let cookie = s.session("rita", "pw-of-rita").await;
    let p = s.get(&path, Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("The policy chooses"), "{}", p.body);
    assert!(p.body.contains("1.0.1"));
    assert!(
        p.body.contains("does not parse as a semver version") || p.body.contains("semver version")
    );
    assert!(p.body.contains(ESCAPED) && !p.body.contains(SCRIPT));
    assert!(p.body.contains("What the next update changes"));
    // A reader sees the settings but no form.
    assert!(!p.body.contains("/ui/image/settings"));
    let missing = s.get("/ui/image?target=prod&id=nope", Some(&cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_admin_changes_settings_and_pauses_and_the_audit_says_who() {
    let (s, image, path) = image_page().await;
    let cookie = s.session("root", "pw-of-root").await;
    let token = csrf(&s.get(&path, Some(&cookie)).await.body);
    let id = image.row.id.as_str();
    let form = |policy: &'static str, approvals: &'static str| {
        [
            ("target", "prod"),
            ("id", id),
            ("policy", policy),
            ("trigger", "poll"),
            ("schedule", "@every 5m"),
            ("approvals", approvals),
            ("deadline", ""),
        ]
    };
    let mut fields = form("minor", "1").to_vec();
    fields.push(("csrf", &token));
    let p = s.submit("/ui/image/settings", &cookie, &fields).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(location(&p).starts_with("/ui/image?target=prod&id="));
    let settings = image.settings();
    assert_eq!(settings[keel_keys::POLICY], "minor");
    assert_eq!(settings[keel_keys::TRIGGER], "poll");
    assert_eq!(settings[keel_keys::APPROVALS], "1");

    // A bad value is refused with its key named, and nothing changes or is recorded.
    let mut bad = form("major", "many").to_vec();
    bad.push(("csrf", &token));
    let p = s.submit("/ui/image/settings", &cookie, &bad).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("keel.sh/approvals"), "{}", p.body);
    assert_eq!(image.settings(), settings);

    let pause = image_form(id, ("action", "pause"), &token);
    let p = s.submit("/ui/image/pause", &cookie, &pause).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(image.settings()[keel_keys::PAUSED], "web");

    let audit = s.approvals.audit_log(&Default::default()).await.unwrap();
    let shown: Vec<(AuditAction, Option<&str>, &str)> = audit
        .iter()
        .map(|e| (e.action, e.actor.as_deref(), e.message.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                AuditAction::SettingsChanged,
                Some("root"),
                "approvals: (unset) → 1; policy: patch → minor; pollSchedule: (unset) → @every 5m; trigger: (unset) → poll"
            ),
            (
                AuditAction::Paused,
                Some("root"),
                "paused tracking of container web"
            ),
        ]
    );
    let history = s.get(&path, Some(&cookie)).await;
    assert!(history.body.contains("paused tracking of container web"));
}

#[tokio::test]
async fn an_unknown_action_is_refused_when_forged_and_not_found_when_genuine() {
    let (s, r, cookie) = web_request_seen_by("root", "pw-of-root").await;
    let token = csrf(&s.get("/ui/approvals", Some(&cookie)).await.body);
    let path = format!("/ui/approvals/{}/frobnicate", r.id);
    // A forged form learns nothing about which actions exist.
    let forged: [(&str, Option<&str>, Headers); 3] = [
        ("no token", None, &[]),
        ("wrong token", Some("not-the-token"), &[]),
        (
            "cross-site",
            Some(&token),
            &[("sec-fetch-site", "cross-site")],
        ),
    ];
    for (case, csrf, headers) in forged {
        let p = s.post(&path, &cookie, csrf, headers).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{case}");
    }
    let genuine = s
        .post(&path, &cookie, Some(&token), &[("origin", &s.url)])
        .await;
    assert_eq!(genuine.status, StatusCode::NOT_FOUND);
    assert_eq!(s.state(&r.id).await, ApprovalState::Pending);
}

/// A form of the image page: image `id` of target `prod`, one `field` and the CSRF token.
fn image_form<'a>(
    id: &'a str,
    field: (&'a str, &'a str),
    csrf: &'a str,
) -> [(&'a str, &'a str); 4] {
    [("target", "prod"), ("id", id), field, ("csrf", csrf)]
}

#[tokio::test]
async fn settings_need_an_admin_and_a_same_site_form() {
    let (s, image, path) = image_page().await;
    let id = image.row.id.as_str();
    let approver = s.session("ann", "pw-of-ann").await;
    let token = csrf(&s.get(&path, Some(&approver)).await.body);
    let fields = image_form(id, ("policy", "all"), &token);
    let p = s.submit("/ui/image/settings", &approver, &fields).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("needs admin"));

    let admin = s.session("root", "pw-of-root").await;
    let token = csrf(&s.get(&path, Some(&admin)).await.body);
    let forged = s
        .http
        .post(format!("{}/ui/image/pause", s.url))
        .header("cookie", &admin)
        .header("sec-fetch-site", "cross-site")
        .form(&image_form(id, ("action", "pause"), &token))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(image.settings()[keel_keys::POLICY], "patch");
    assert!(!image.settings().contains_key(keel_keys::PAUSED));
    assert!(
        s.approvals
            .audit_log(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}
