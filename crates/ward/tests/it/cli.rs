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
