//! Shell scripts that tests write and then run at once: fake helpers, fake binaries, git hooks.

use std::path::Path;

/// Writes an executable `/bin/sh` script running `body` to `path`, ready to be run at once.
///
/// A child `sh` writes the file, never this process: a write handle of this process would be
/// inherited by any process that another thread starts meanwhile, and running the script while
/// that handle is open fails with "Text file busy" (`ETXTBSY`). Panics when the file cannot be
/// written.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("greet");
/// keel_testsupport::write_shell_script(&path, "echo hello");
/// let output = std::process::Command::new(&path).output().unwrap();
/// assert_eq!(output.stdout, b"hello\n");
/// ```
pub fn write_shell_script(path: impl AsRef<Path>, body: &str) {
    let path = path.as_ref();
    let written = std::process::Command::new("sh")
        .args([
            "-c",
            r#"printf '#!/bin/sh\n%s\n' "$1" >"$0" && chmod 755 "$0""#,
        ])
        .arg(path)
        .arg(body)
        .status()
        .unwrap_or_else(|error| panic!("starting sh to write {}: {error}", path.display()));
    assert!(
        written.success(),
        "writing {} failed ({written})",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_written_exactly_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script");
        let body = "printf '%s\\n' \"$1\" 'it''s' \"50%\"\n";
        write_shell_script(&path, body);
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, format!("#!/bin/sh\n{body}\n"));
        let output = std::process::Command::new(&path)
            .arg("a b")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "a b\nits\n50%\n");
    }
}
