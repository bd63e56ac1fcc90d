//! Starts a Prism mock server (`prism mock <spec>`) on a free local port for one test and stops it when
//! dropped. Prism validates every request against the spec and answers 422 to a malformed one.
//!
//! Prism is found at `$BYOC_PRISM_BIN`, else `<workspace>/tests/tools/node_modules/.bin/prism`; when it is
//! missing the test fails and says to run `npm ci --prefix tests/tools`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub struct PrismServer {
    child: Child,
    pub base_url: String,
    log_path: PathBuf,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prism_binary() -> PathBuf {
    let (path, origin) = match std::env::var_os("BYOC_PRISM_BIN") {
        Some(path) => (PathBuf::from(path), "BYOC_PRISM_BIN"),
        None => (
            workspace_root().join("tests/tools/node_modules/.bin/prism"),
            "the workspace's test tools",
        ),
    };
    assert!(
        path.exists(),
        "Prism is not installed at {} ({origin}): run `npm ci --prefix tests/tools` from the workspace root \
         (or point BYOC_PRISM_BIN at a prism binary)",
        path.display()
    );
    path
}

/// A third-party test-data file under the workspace's `tests/data` (sources and licences in its README).
pub fn testdata(relative: &str) -> PathBuf {
    workspace_root().join("tests/data").join(relative)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free local port")
}

impl PrismServer {
    /// Starts Prism on `spec` and waits until it accepts connections.
    pub async fn start(spec: PathBuf) -> PrismServer {
        assert!(spec.exists(), "missing spec {}", spec.display());
        let port = free_port();
        let log_path = std::env::temp_dir().join(format!("byoc-prism-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("prism log file");
        let child = Command::new(prism_binary())
            .arg("mock")
            .arg(&spec)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("Prism starts (is node installed?)");
        let mut server = PrismServer {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log_path,
        };
        server.wait_until_listening(port).await;
        server
    }

    async fn wait_until_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Prism exited with {status} before listening:\n{}",
                    self.log()
                );
            }
            let listening = self
                .log()
                .contains(&format!("Prism is listening on http://127.0.0.1:{port}"));
            if listening
                && tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prism did not start within 180 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Prism's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for PrismServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log_path);
    }
}
