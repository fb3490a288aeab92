//! The `git` CLI, isolated from the machine it runs on, with a time limit.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one `git` command may take before it is killed (a hung test fails instead).
pub const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Proxy variables that would send `http://127.0.0.1` requests elsewhere.
const PROXY_VARS: [&str; 4] = ["http_proxy", "https_proxy", "all_proxy", "ftp_proxy"];

/// Runs `git` (the first on `PATH`) isolated from the machine: `HOME` is a directory of the
/// test's own (so no global config or credential helper applies), no system config, no
/// prompts, no inherited `GIT_*` variables (`GIT_DIR` of an enclosing hook, ...), no proxies,
/// and English messages.
#[derive(Clone, Debug)]
pub struct Git {
    home: PathBuf,
    timeout: Duration,
}

/// What a finished (or killed) `git` command produced.
#[derive(Clone, Debug)]
pub struct GitOutput {
    /// The command line, for messages.
    pub command: String,
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit code (`None` when killed by a signal or by the time limit).
    pub code: Option<i32>,
    /// Whether it was killed for exceeding the time limit.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error (lossily decoded).
    pub stderr: String,
}

impl GitOutput {
    /// Standard output as text (lossily decoded).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard output without surrounding whitespace (ids, single values).
    pub fn trimmed(&self) -> String {
        self.stdout_text().trim().to_owned()
    }

    /// Panics (with the command and its stderr) unless the command succeeded.
    pub fn expect_success(self) -> GitOutput {
        assert!(
            self.success,
            "`{}` failed ({}): {}",
            self.command,
            self.describe_status(),
            self.stderr
        );
        self
    }

    fn describe_status(&self) -> String {
        match (self.timed_out, self.code) {
            (true, _) => format!("killed after {GIT_TIMEOUT:?}"),
            (false, Some(code)) => format!("exit code {code}"),
            (false, None) => "killed by a signal".to_owned(),
        }
    }
}

impl Git {
    /// A `git` whose `HOME` is `home` (created if missing).
    pub fn new(home: impl Into<PathBuf>) -> Git {
        let home = home.into();
        std::fs::create_dir_all(&home)
            .unwrap_or_else(|error| panic!("creating {}: {error}", home.display()));
        Git {
            home,
            timeout: GIT_TIMEOUT,
        }
    }

    /// The `HOME` the commands run with.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Sets the isolated environment on `command` (any program that runs git, not only git).
    pub fn apply_env(&self, command: &mut Command) {
        for (name, _) in std::env::vars_os() {
            let Some(text) = name.to_str() else { continue };
            if text.starts_with("GIT_") || PROXY_VARS.contains(&text.to_ascii_lowercase().as_str())
            {
                command.env_remove(&name);
            }
        }
        command
            .env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SSH_ASKPASS")
            .env_remove("LANGUAGE")
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("NO_PROXY", "127.0.0.1,localhost");
    }

    /// A `git` command with the isolated environment and no arguments yet.
    pub fn command(&self) -> Command {
        let mut command = Command::new("git");
        self.apply_env(&mut command);
        command
    }

    /// Runs `git ARGS` (in `cwd` when given) and returns what it produced, whether it
    /// succeeded or not.
    pub fn try_run<I, S>(&self, cwd: Option<&Path>, args: I) -> GitOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command();
        command.args(args);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        self.output(command)
    }

    /// Runs `git ARGS` (in `cwd` when given); panics unless it succeeds.
    pub fn run<I, S>(&self, cwd: Option<&Path>, args: I) -> GitOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.try_run(cwd, args).expect_success()
    }

    /// Runs `command` (stdin closed), killing it after the time limit.
    pub fn output(&self, mut command: Command) -> GitOutput {
        let line = describe(&command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|error| {
            panic!("running `{line}`: {error} (run `scripts/git-server install` if git is missing)")
        });
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));

        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(error) => panic!("waiting for `{line}`: {error}"),
            }
        };
        // A helper the command started (git-remote-http, ...) may outlive a killed command
        // and keep the pipes open: do not wait for them forever.
        let grace = if timed_out {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        };
        let stdout = stdout.recv_timeout(grace).unwrap_or_default();
        let stderr = stderr.recv_timeout(grace).unwrap_or_default();
        GitOutput {
            command: line,
            success: !timed_out && status.is_some_and(|status| status.success()),
            code: status.and_then(|status| status.code()),
            timed_out,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// Reads `pipe` to its end on a thread of its own; the bytes arrive on the returned channel.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    receiver
}

/// `git arg1 arg2 ...` of `command`, for messages.
fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
