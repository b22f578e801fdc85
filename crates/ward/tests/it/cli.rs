//! The `ward` command as a user runs it (the binary, not the library).

use std::io::Read;

#[test]
fn ward_upload_speaks_tls_to_an_https_server() {
    // A listener that records the first bytes a client sends: a TLS client opens with a
    // handshake record (0x16, version 3.x). A client without TLS would refuse the URL
    // without connecting ("scheme is not http").
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let first_bytes = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut bytes = [0u8; 3];
        stream.read_exact(&mut bytes).unwrap();
        bytes
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("visits.csv");
    std::fs::write(
        &file,
        "medical_record_number,date_time,first_name,last_name\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .arg("upload")
        .arg(&file)
        .arg("--server")
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--key")
        .arg("ward.PROV001.000000000000.0")
        .output()
        .unwrap();
    let bytes = first_bytes.join().unwrap();
    assert_eq!(bytes[0], 0x16, "a TLS handshake record");
    assert_eq!(bytes[1], 3, "TLS 1.x record version");
    // The listener is no TLS server, so the upload fails, saying so.
    assert!(!output.status.success());
}

fn ward(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn ward_user_create_makes_a_user_who_logs_in_and_refuses_bad_input_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let created = ward(&["tenant", "create", "PROV001", "--data-dir", data], None);
    assert!(created.status.success());
    // A generated password, printed once as the last line.
    let made = ward(
        &[
            "user",
            "create",
            "admin",
            "--provider",
            "PROV001",
            "--role",
            "provider_admin",
            "--data-dir",
            data,
        ],
        None,
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let stdout = String::from_utf8_lossy(&made.stdout);
    let password = stdout.lines().last().unwrap().trim().to_owned();
    assert!(password.len() >= 24, "{stdout}");
    // One from standard input.
    let made = ward(
        &[
            "user",
            "create",
            "dr1",
            "--provider",
            "PROV001",
            "--role",
            "clinician",
            "--clinician",
            "DR1",
            "--password-stdin",
            "--data-dir",
            data,
        ],
        Some("a clinician's passphrase\n"),
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(!String::from_utf8_lossy(&made.stdout).contains("passphrase"));
    for (args, says) in [
        (
            vec![
                "user",
                "create",
                "x",
                "--provider",
                "PROV404",
                "--role",
                "billing",
            ],
            "does not exist",
        ),
        (
            vec![
                "user",
                "create",
                "x",
                "--provider",
                "PROV001",
                "--role",
                "surgeon",
            ],
            "not a role",
        ),
        (
            vec![
                "user",
                "create",
                "x",
                "--provider",
                "PROV001",
                "--role",
                "clinician",
            ],
            "clinician id",
        ),
        (
            vec![
                "user",
                "create",
                "admin",
                "--provider",
                "PROV001",
                "--role",
                "billing",
            ],
            "exists",
        ),
    ] {
        let mut args = args;
        args.extend(["--data-dir", data]);
        let refused = ward(&args, None);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let short = ward(
        &[
            "user",
            "create",
            "y",
            "--provider",
            "PROV001",
            "--role",
            "billing",
            "--password-stdin",
            "--data-dir",
            data,
        ],
        Some("short\n"),
    );
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));
    // The users log in through a server on the folder.
    let running = crate::helpers::start_server(
        std::path::Path::new(data),
        crate::helpers::Options::default(),
    )
    .await;
    let http = reqwest::Client::new();
    for (user, secret) in [
        ("admin", password.as_str()),
        ("dr1", "a clinician's passphrase"),
    ] {
        let response = http
            .post(format!("{}/v1/login", running.base_url))
            .json(&serde_json::json!({"providerId": "PROV001", "userId": user, "password": secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{user}");
    }
    running.stop().await.unwrap();
}
