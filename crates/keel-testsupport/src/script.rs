//! Servers started by the project's scripts (`scripts/registry-server`, `scripts/git-server`):
//! `SCRIPT start --owner-pid PID ARGS...` prints one JSON object (at least `dir` and `pid`),
//! and `SCRIPT stop DIR` stops the server and removes its directory.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A command running `scripts/NAME` of the repository.
pub fn script(name: &str) -> Command {
    Command::new(crate::repo_root().join("scripts").join(name))
}

/// Runs `command` (`what`, for the messages) to its end; panics with its stderr unless it
/// succeeds.
pub(crate) fn run_script(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A server started by `scripts/NAME start`; stopped with `scripts/NAME stop DIR` on drop.
#[derive(Debug)]
pub struct ScriptServer {
    name: String,
    started: serde_json::Value,
    dir: PathBuf,
    pid: u32,
}

impl ScriptServer {
    /// Runs `scripts/NAME start --owner-pid <this process> ARGS...` and parses what it prints;
    /// panics with the script's stderr if it fails. The owner pid makes the server stop when
    /// the test process ends without dropping it.
    pub fn start<I, S>(name: &str, args: I) -> ScriptServer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = script(name);
        command
            .arg("start")
            .args(["--owner-pid", &std::process::id().to_string()])
            .args(args);
        let output = run_script(&mut command, &format!("scripts/{name} start"));
        let line = String::from_utf8_lossy(&output.stdout);
        let started: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|error| panic!("scripts/{name} start printed {line:?}: {error}"));
        let dir = PathBuf::from(started["dir"].as_str().expect("dir"));
        let pid = u32::try_from(started["pid"].as_u64().expect("pid")).expect("pid fits u32");
        ScriptServer {
            name: name.to_owned(),
            started,
            dir,
            pid,
        }
    }

    /// The string `key` of what the script printed (e.g. `addr`); panics when missing.
    pub fn field(&self, key: &str) -> &str {
        self.started[key]
            .as_str()
            .unwrap_or_else(|| panic!("scripts/{} start printed no {key:?}", self.name))
    }

    /// The server's directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let stopped = script(&self.name)
            .arg("stop")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .status();
        if !matches!(stopped, Ok(status) if status.success()) {
            eprintln!(
                "scripts/{} stop {} failed: {stopped:?}",
                self.name,
                self.dir.display()
            );
        }
    }
}
