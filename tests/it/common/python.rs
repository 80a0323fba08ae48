//! Python test clients (the venvs are `postagent_lab::clients`'): the e2a SDK scripts under
//! `tests/sdk/`.

use std::path::Path;

/// Starts `tests/sdk/<script>` with the venv's Python, pointed at a postagent API with the
/// environment the e2a SDK reads (`E2A_API_KEY`, `E2A_API_URL`); stdin, stdout and stderr are
/// piped for a line protocol with the test, and the child dies with the test.
pub fn spawn_script(venv: &Path, script: &str, key: &str, api_url: &str) -> tokio::process::Child {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    tokio::process::Command::new(venv.join("bin/python"))
        .arg(path)
        .env("E2A_API_KEY", key)
        .env("E2A_API_URL", api_url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python")
}
