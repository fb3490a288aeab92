use super::*;

#[test]
fn names_never_carry_credentials() {
    let t = GitTarget::builder("https://u:secret@h.example/r.git").build();
    assert_eq!(t.name(), "git https://u:***@h.example/r.git#main");
    let t = GitTarget::builder("https://ghp_token@h.example/r.git?access_token=tok")
        .with_push_branch("updates")
        .build();
    assert_eq!(
        t.name(),
        "git https://***@h.example/r.git?access_token=***#main->updates"
    );
    assert!(!format!("{t:?}").contains("secret"));
    let t = GitTarget::builder("https://h.example/r.git")
        .with_auth(GitAuth::UserPassword {
            username: "bot".into(),
            password: "hunter2".into(),
        })
        .build();
    assert!(!format!("{t:?}").contains("hunter2"));
}
