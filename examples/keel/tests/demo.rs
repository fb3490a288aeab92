//! `scripts/demo`, the first command of the README, keeps doing the main job: run with the
//! binary under test, it shows the updates the repository's policies pick, pushes one commit
//! making exactly those, shows nothing left to update, and leaves no server running.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use keel_testsupport::script;

/// The part of the demo's output under the heading that starts with `title` (`==> title...`),
/// up to the next heading.
fn section<'a>(output: &'a str, title: &str) -> &'a str {
    let start = output
        .find(&format!("==> {title}"))
        .unwrap_or_else(|| panic!("no heading {title:?} in:\n{output}"));
    let body = &output[start..];
    let body = &body[body.find('\n').map_or(body.len(), |i| i + 1)..];
    &body[..body.find("==> ").unwrap_or(body.len())]
}

/// The cells of the table row of `section` whose reference is in `file`.
fn row<'a>(section: &'a str, file: &str) -> Vec<&'a str> {
    let rows: Vec<Vec<&str>> = section
        .lines()
        .filter(|line| line.starts_with(&format!("{file}#")))
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "one row for {file} in:\n{section}");
    rows.into_iter().next().unwrap_or_default()
}

/// The `addr` after `prefix` in `output` (`127.0.0.1:PORT`).
fn addr_after(output: &str, prefix: &str) -> String {
    let start = output
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{output}"))
        + prefix.len();
    output[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect()
}

#[test]
fn demo_updates_the_fleet_by_its_policies() {
    assert!(
        std::process::Command::new("sh")
            .args(["-c", "command -v docker-registry"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "`docker-registry` is not installed: run `scripts/registry-server install` first \
         (scripts/demo would install it itself)"
    );
    let begun = Instant::now();
    let output = script("demo")
        .env("KEEL_BIN", env!("CARGO_BIN_EXE_keel"))
        .output()
        .expect("scripts/demo runs");
    let took = begun.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        took < Duration::from_secs(60),
        "scripts/demo took {took:?} with a built binary:\n{stdout}"
    );

    // Before: each reference, its policy and the update it picks, never beyond the policy.
    let before = section(&stdout, "Before:");
    for (file, image, policy, update, why) in [
        (
            "apps/web.yaml",
            "/demo/web:1.0.0",
            "minor",
            "1.1.0",
            "minor: 1.1.0, not 2.0.0",
        ),
        (
            "apps/api.yaml",
            "/demo/api:3.1.0",
            "semver:~3.1",
            "3.1.1",
            "~3.1: 3.1.1, not 3.2.0",
        ),
        (
            "apps/kustomization.yaml",
            "/demo/worker:main-a41d7b0",
            "newest-build",
            "main-08e5c6d",
            "the image created last, whatever its tag",
        ),
    ] {
        let cells = row(before, file);
        assert!(cells[1].ends_with(image), "{before}");
        assert_eq!(cells[2], policy, "{before}");
        assert!(cells[3].ends_with(update), "{why}:\n{before}");
    }

    // The commit changes exactly those tags, and nothing else.
    let commit = section(&stdout, "The commit it pushed");
    let diff = &commit[commit
        .find("diff --git")
        .unwrap_or_else(|| panic!("no diff in:\n{commit}"))..];
    let changed = |sign: char| -> Vec<&str> {
        diff.lines()
            .filter(|l| l.starts_with(sign) && !l.starts_with("---") && !l.starts_with("+++"))
            .map(|l| &l[1..])
            .collect()
    };
    let (removed, added) = (changed('-'), changed('+'));
    // git shows the files in path order: api.yaml, kustomization.yaml, web.yaml.
    let expected = [
        ("\"3.1.0\"", "\"3.1.1\""),
        ("main-a41d7b0", "main-08e5c6d"),
        ("demo/web:1.0.0", "demo/web:1.1.0"),
    ];
    assert_eq!(removed.len(), expected.len(), "{commit}");
    assert_eq!(added.len(), expected.len(), "{commit}");
    for ((old_line, new_line), (old, new)) in removed.iter().zip(&added).zip(expected) {
        assert!(old_line.contains(old), "{old} in {old_line:?}:\n{commit}");
        assert_eq!(old_line.replace(old, new), *new_line, "{commit}");
    }

    // After: every reference is where its policy wants it.
    let after = section(&stdout, "After:");
    for file in ["apps/web.yaml", "apps/api.yaml", "apps/kustomization.yaml"] {
        let cells = row(after, file);
        assert_eq!(
            cells.last(),
            Some(&"-"),
            "no update left for {file}:\n{after}"
        );
    }
    assert!(
        row(after, "apps/web.yaml")[1].ends_with("/demo/web:1.1.0"),
        "{after}"
    );

    // Nothing keeps running: the trap stopped both servers.
    for prefix in ["A registry at ", "git://"] {
        let addr = addr_after(&stdout, prefix);
        assert!(
            TcpStream::connect_timeout(&addr.parse().expect("an address"), Duration::from_secs(1))
                .is_err(),
            "{addr} still answers after the demo"
        );
    }
}
