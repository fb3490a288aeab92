//! `keel select` as a user runs it: arguments, stdin, files, exit codes, stdout and stderr.

use std::process::Output;

mod common;
use common::keel;
use keel_testsupport::assert_contains;

/// `keel select --policy POLICY --current CURRENT EXTRA...` reading `stdin`.
fn select(policy: &str, current: &str, extra: &[&str], stdin: &str) -> Output {
    let mut args = vec!["select", "--policy", policy, "--current", current];
    args.extend_from_slice(extra);
    keel(&args, stdin)
}

fn stdout(o: &Output) -> &str {
    std::str::from_utf8(&o.stdout).unwrap()
}

fn stderr(o: &Output) -> &str {
    std::str::from_utf8(&o.stderr).unwrap()
}

#[test]
fn prints_the_chosen_tag() {
    let o = select("minor", "1.2.3", &[], "1.2.4\n1.3.0\n2.0.0\n1.3.1-rc.1\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1.3.0\n");
    assert_eq!(stderr(&o), "");
}

#[test]
fn every_example_of_the_policies() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("minor", "1.2.3", "1.2.4 1.3.0 2.0.0 1.3.1-rc.1", "1.3.0"),
        ("patch", "v1.2.3", "v1.2.9 1.2.10 v1.3.0", "1.2.10"),
        (
            "semver:>=1.0.0-0 <2.0.0",
            "1.0.0-rc.1",
            "1.0.0-rc.2 1.1.0-beta.1 2.0.0",
            "1.1.0-beta.1",
        ),
        (
            r"regexp:^main-(?P<compare>\d+)-[0-9a-f]+$",
            "main-9-aa11",
            "main-10-bb22 main-8-cc33",
            "main-10-bb22",
        ),
        (
            "docker",
            "3.11-slim",
            "3.12-slim 3.12 3.12.1-slim 3.13-alpine",
            "3.12-slim",
        ),
    ];
    for (policy, current, tags, want) in cases {
        let o = select(policy, current, &[], &tags.replace(' ', "\n"));
        assert!(o.status.success(), "{policy}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("{want}\n"), "{policy}");
    }
}

#[test]
fn nothing_to_move_to_prints_nothing_and_succeeds() {
    let o = select("patch", "1.2.3", &[], "1.3.0\n1.2.3\n");
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
}

#[test]
fn reads_a_file_and_ignores_blank_lines_and_crlf() {
    let dir = std::env::temp_dir().join(format!("keel-select-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tags.txt");
    std::fs::write(&file, "1.0.1\r\n\r\n\n  1.0.2  \r\n").unwrap();
    let o = select(
        "patch",
        "1.0.0",
        &["--tags-file", file.to_str().unwrap()],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1.0.2\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn filter_extract_exclude_and_switches() {
    // Name, policy, current tag, further arguments, stdin and the chosen tag.
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "filter, extract and exclude",
            "numerical",
            "build-9-a",
            &[
                "--filter",
                r"^build-(?P<n>\d+)-",
                "--extract",
                "$n",
                "--exclude",
                "-dirty$",
            ],
            "build-10-b\nbuild-11-c-dirty\nbuild-8-d\nlatest\n",
            "build-10-b\n",
        ),
        (
            "pre-releases allowed",
            "minor",
            "1.2.3",
            &["--match-pre-release=false"],
            "1.2.4\n1.3.0-rc.1\n",
            "1.3.0-rc.1\n",
        ),
        (
            "downgrades allowed",
            "semver:^1",
            "1.5.0",
            &["--allow-downgrade"],
            "1.4.0\n1.3.0\n",
            "1.4.0\n",
        ),
    ];
    for (name, policy, current, extra, stdin, chosen) in cases {
        let o = select(policy, current, extra, stdin);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(stdout(&o), *chosen, "{name}");
    }
}

#[test]
fn digest_updates_print_tag_and_digest() {
    let old = format!("sha256:{}", "a".repeat(64));
    let new = format!("sha256:{}", "b".repeat(64));
    let o = select(
        "digest",
        "stable",
        &["--current-digest", &old],
        &format!("stable {new} 2024-05-01T10:00:00Z\nother {old}\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("stable@{new}\n"));
}

#[test]
fn explain_writes_reasons_to_stderr() {
    let o = select(
        "minor",
        "1.2.3",
        &["--explain"],
        "1.2.4\n1.3.0\n2.0.0\nlatest\n",
    );
    assert_eq!(stdout(&o), "1.3.0\n");
    let err = stderr(&o);
    assert_contains(
        err,
        &[
            "rejected 1.2.4: 1.3.0 is newer",
            "rejected 2.0.0: major version 2 differs",
            "rejected latest: not a semver version",
        ],
    );
    assert!(err.ends_with("chosen: 1.3.0\n"), "{err}");
}

#[test]
fn json_output_with_and_without_reasons() {
    let o = select("minor", "1.2.3", &["-o", "json"], "1.2.4\n1.3.0\n");
    let v: serde_json::Value = serde_json::from_str(stdout(&o)).unwrap();
    assert_eq!(v["chosen"], "1.3.0");
    assert_eq!(v["candidates"], 2);
    assert_eq!(v["policy"], "minor");
    assert!(v.get("explanation").is_none());

    let o = select(
        "minor",
        "1.2.3",
        &["-o", "json", "--explain"],
        "1.2.4\n2.0.0\n",
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&o)).unwrap();
    assert_eq!(v["chosen"], "1.2.4");
    assert_eq!(v["explanation"]["rejected"][0]["tag"], "2.0.0");
    assert_eq!(v["explanation"]["rejected"][0]["rule"], "different-major");
    assert_eq!(stderr(&o), "");

    let o = select("patch", "1.2.3", &["-o", "json"], "1.3.0\n");
    let v: serde_json::Value = serde_json::from_str(stdout(&o)).unwrap();
    assert!(v["chosen"].is_null());
}

#[test]
fn odd_lines_are_skipped_with_a_warning() {
    let o = select(
        "patch",
        "1.0.0",
        &[],
        "1.0.1\n-bad\n1.0.2 not-a-digest\n1.0.3 2024-13-01T00:00:00Z\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1.0.1\n");
    let err = stderr(&o);
    assert!(
        err.contains("skipped 3 line(s) of stdin; the first, line 2: \"-bad\" is not a valid tag"),
        "{err}"
    );
}

#[test]
fn bad_input_exits_non_zero_naming_it() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["select", "--policy", "minr"], "", "unknown policy `minr`"),
        (
            &["select", "--policy", "semver:>=1 <abc"],
            "",
            "invalid policy \"semver:>=1 <abc\"",
        ),
        (
            &["select", "--policy", "alphabetical", "--filter", "("],
            "",
            "invalid filter regex \"(\"",
        ),
        (
            &["select", "--policy", "alphabetical", "--exclude", "[z-a]"],
            "",
            "invalid exclude regex \"[z-a]\"",
        ),
        (
            &[
                "select",
                "--policy",
                "numerical",
                "--filter",
                "(\\d+)",
                "--extract",
                "$x",
            ],
            "",
            "group `x`",
        ),
        (
            &["select", "--policy", "minor", "--current", "bad tag"],
            "",
            "invalid --current \"bad tag\"",
        ),
        (
            &[
                "select",
                "--policy",
                "digest",
                "--current-digest",
                "sha256:abc",
            ],
            "",
            "invalid digest \"sha256:abc\"",
        ),
        (
            &["select", "--policy", "minor", "--match-pre-release=maybe"],
            "",
            "maybe",
        ),
        (
            &[
                "select",
                "--policy",
                "minor",
                "--tags-file",
                "/nonexistent/tags.txt",
            ],
            "",
            "cannot read tags from /nonexistent/tags.txt",
        ),
    ];
    for (args, stdin, message) in cases {
        let o = keel(args, stdin);
        assert!(!o.status.success(), "{args:?} should fail");
        assert_eq!(stdout(&o), "", "{args:?} printed a decision");
        assert!(
            stderr(&o).contains(message),
            "{args:?}: {:?} lacks {message:?}",
            stderr(&o)
        );
    }
}
