//! `byoc-api` takes no arguments: `--help` and `--version` answer and exit without starting anything, and an
//! unknown argument is refused (exit 2, one line) before dev mode creates `./.byoc-dev`.

use std::process::Command;

fn run_in_empty_dir(arguments: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_byoc-api"))
        .args(arguments)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("BYOC_CONFIG_FILE")
        .output()
        .expect("run byoc-api");
    (output, dir)
}

#[test]
fn help_and_version_answer_without_starting() {
    for (flag, expected) in [("--help", "Usage: byoc-api"), ("--version", "byoc-api ")] {
        let (output, dir) = run_in_empty_dir(&[flag]);
        assert!(output.status.success(), "{flag}: {output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(expected), "{flag}: {stdout}");
        assert!(
            !dir.path().join(".byoc-dev").exists(),
            "{flag} started dev mode"
        );
    }
}

#[test]
fn an_unknown_argument_is_refused_before_anything_starts() {
    for arguments in [&["--port", "9000"][..], &["serve"][..]] {
        let (output, dir) = run_in_empty_dir(arguments);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("byoc-api: "), "{stderr}");
        assert!(stderr.contains("see byoc-api --help"), "{stderr}");
        assert!(
            !dir.path().join(".byoc-dev").exists(),
            "{arguments:?} started dev mode"
        );
    }
}

#[test]
fn help_into_a_closed_pipe_does_not_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_byoc-api"))
        .arg("--help")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run byoc-api");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{output:?}");
}
