//! Who gets in: enrollment and credentials on the gRPC port, bearer tokens on the HTTP
//! API, TLS with a pinned CA (and mutual TLS), and the limits that keep one hostile
//! client from hurting the others. Real collector and agent binaries on loopback.
use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use census_proto::v1::census_client::CensusClient;
use census_proto::v1::{AgentMessage, EnrollRequest};
use census_tests::frames::{acked, batch, exchange, exchange_as, hello, runtime};
use census_tests::{
    Collector, ENROLLMENT_SECRET, Pki, READ_TOKEN, Running, SyntheticHost, Tls, binary, enroll,
    node_id, wait_for,
};
use serde_json::{Value, json};
use tonic::Code;

/// Kernel modules of `node` the collector holds.
fn modules(collector: &Collector, node: &str) -> Result<Vec<String>> {
    Ok(collector
        .api
        .records(node, "kernel_module")?
        .iter()
        .filter_map(|r| r["key"].as_str().map(str::to_string))
        .collect())
}

fn node_known(collector: &Collector, node: &str) -> Result<bool> {
    let nodes = collector.api.get("/api/v1/nodes")?;
    Ok(nodes["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .any(|n| n["id"] == node))
}

fn credentials(collector: &Collector, node: &str) -> Result<Vec<Value>> {
    let listed = collector
        .api
        .get(&format!("/api/v1/credentials?node={node}"))?;
    Ok(listed["credentials"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[test]
fn streams_without_a_valid_credential_for_their_node_are_refused_and_store_nothing() -> Result<()> {
    let collector = Collector::start()?;
    let rt = runtime()?;
    let (a, b) = (node_id("owner"), node_id("victim"));

    // No credential at all.
    let (replies, status) = rt.block_on(exchange_as(
        &collector,
        None,
        vec![hello(&b), batch(1, "kernel_module", &["planted-none"])],
    ))?;
    let status = status.context("a stream without a credential must be refused")?;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("no credential"), "{status:?}");
    assert!(acked(&replies).is_empty());

    // A credential that was never issued (well formed, random).
    let forged = format!(
        "cen1.{:016x}.{:032x}{:032x}",
        fastrand::u64(..),
        fastrand::u128(..),
        fastrand::u128(..)
    );
    let (_, status) = rt.block_on(exchange_as(
        &collector,
        Some(&forged),
        vec![hello(&b), batch(1, "kernel_module", &["planted-forged"])],
    ))?;
    let status = status.context("a forged credential must be refused")?;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("unknown credential"),
        "{status:?}"
    );
    assert!(
        status
            .metadata()
            .contains_key(census_proto::REENROLL_METADATA)
    );

    // Node A's credential, writing node B.
    let credential_a = rt.block_on(enroll(&collector, &a))?;
    let (replies, status) = rt.block_on(exchange_as(
        &collector,
        Some(&credential_a),
        vec![hello(&b), batch(1, "kernel_module", &["planted-foreign"])],
    ))?;
    let status = status.context("another node's credential must be refused")?;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(&format!("bound to node {a:?}"))
            && status
                .message()
                .contains(&format!("cannot write node {b:?}")),
        "{status:?}"
    );
    assert!(acked(&replies).is_empty());
    assert!(
        collector
            .log()
            .contains("hello names another node than its credential"),
        "the foreign write is logged:\n{}",
        collector.log()
    );
    ensure!(!node_known(&collector, &b)?, "node B was registered");
    assert!(modules(&collector, &b)?.is_empty());

    // The same credential writes its own node.
    let (replies, status) = rt.block_on(exchange_as(
        &collector,
        Some(&credential_a),
        vec![hello(&a), batch(1, "kernel_module", &["own-module"])],
    ))?;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(acked(&replies), [1]);
    assert_eq!(modules(&collector, &a)?, ["own-module"]);

    // A wrong enrollment secret gets no credential.
    let refused = rt.block_on(async {
        let mut client = CensusClient::connect(collector.grpc_url()).await?;
        anyhow::Ok(
            client
                .enroll(EnrollRequest {
                    enrollment_secret: "not-the-enrollment-secret".into(),
                    node_id: b.clone(),
                    agent_id: "x".into(),
                    hostname: "x".into(),
                })
                .await,
        )
    })?;
    let status = refused.expect_err("a wrong enrollment secret must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(credentials(&collector, &b)?.is_empty());
    Ok(())
}

#[test]
fn a_revoked_credential_is_refused_and_its_agent_enrolls_again() -> Result<()> {
    let collector = Collector::start()?;
    let host = SyntheticHost::new(50)?;
    let dir = tempfile::tempdir()?;
    let node = node_id("revoked");
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    let _agent = host.agent(
        &collector.grpc_url(),
        &collector.agent_args(),
        &state,
        &node,
        &log,
        &[],
    )?;
    let first = wait_for(
        Duration::from_secs(60),
        "the agent to enroll and sync",
        || {
            let listed = credentials(&collector, &node)?;
            let synced = !collector.api.records(&node, "package")?.is_empty();
            Ok((synced && listed.len() == 1).then(|| listed[0].clone()))
        },
    )?;
    let first_id = first["id"].as_str().context("credential id")?.to_string();
    assert!(first.get("secret_sha256").is_none() && !first.to_string().contains("cen1."));

    // The credential is private to the agent's state dir.
    use std::os::unix::fs::PermissionsExt as _;
    let file = state.join("credential");
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    let stolen = std::fs::read_to_string(&file)?
        .lines()
        .nth(1)
        .context("credential line")?
        .to_string();

    // A read-only token cannot revoke; an admin token can.
    let path = format!("/api/v1/credentials/{first_id}/revoke");
    let body = json!({"reason": "node reimaged"}).to_string();
    let (status, answer) =
        collector
            .api
            .with_token(Some(READ_TOKEN))
            .send("POST", &path, Some(&body))?;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = collector.api.send("POST", &path, Some(&body))?;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = collector.api.send("POST", &path, Some(&body))?;
    assert_eq!(status, 409, "a second revocation: {answer}");

    // The running agent is told, enrolls again and keeps delivering.
    let second = wait_for(Duration::from_secs(60), "the agent to enroll again", || {
        let listed = credentials(&collector, &node)?;
        Ok(listed
            .iter()
            .find(|c| c["id"] != first_id.as_str() && c["revoked_at"].is_null())
            .cloned())
    })?;
    assert_ne!(second["id"], first["id"]);
    host.generation(1)?;
    wait_for(
        Duration::from_secs(60),
        "a change after re-enrollment",
        || {
            let found = collector.api.records_where(&format!(
                "node={node}&kind=package&q=census-extra-1-0&limit=5"
            ))?;
            Ok((!found.is_empty()).then_some(()))
        },
    )?;

    // The revoked credential, replayed by someone who copied it, writes nothing.
    let (replies, status) = runtime()?.block_on(exchange_as(
        &collector,
        Some(&stolen),
        vec![
            hello(&node),
            batch(1_000_000, "kernel_module", &["planted-revoked"]),
        ],
    ))?;
    let status = status.context("a revoked credential must be refused")?;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    assert!(
        status
            .metadata()
            .contains_key(census_proto::REENROLL_METADATA)
    );
    assert!(acked(&replies).is_empty());
    assert!(modules(&collector, &node)?.is_empty());
    let agent_log = std::fs::read_to_string(&log)?;
    assert!(
        agent_log.contains("credential refused: enrolling again"),
        "{agent_log}"
    );
    Ok(())
}

#[test]
fn enrollment_secrets_rotate_with_overlap() -> Result<()> {
    let collector = Collector::start()?;
    let rt = runtime()?;
    let enroll_with = |secret: &str, node: &str| {
        rt.block_on(async {
            let mut client = CensusClient::connect(collector.grpc_url()).await?;
            anyhow::Ok(
                client
                    .enroll(EnrollRequest {
                        enrollment_secret: secret.into(),
                        node_id: node.into(),
                        agent_id: "rotation".into(),
                        hostname: "rotation".into(),
                    })
                    .await
                    .map(|r| r.into_inner().credential_id),
            )
        })
    };
    let new_secret = "census-test-enrollment-secret-2";
    assert!(enroll_with(new_secret, &node_id("early"))?.is_err());
    // Both listed: both work.
    std::fs::write(
        &collector.enrollment_secret,
        format!("{ENROLLMENT_SECRET}\n{new_secret}\n"),
    )?;
    assert!(enroll_with(ENROLLMENT_SECRET, &node_id("old"))?.is_ok());
    assert!(enroll_with(new_secret, &node_id("new"))?.is_ok());
    // The old one retired; credentials it issued stay valid.
    std::fs::write(&collector.enrollment_secret, format!("{new_secret}\n"))?;
    let retired = enroll_with(ENROLLMENT_SECRET, &node_id("late"))?;
    assert_eq!(
        retired.expect_err("retired secret").code(),
        Code::Unauthenticated
    );
    assert!(enroll_with(new_secret, &node_id("later"))?.is_ok());
    // A broken edit keeps the last good list, and says so.
    std::fs::write(&collector.enrollment_secret, "short\n")?;
    assert!(enroll_with(new_secret, &node_id("after-bad-edit"))?.is_ok());
    assert!(
        collector
            .log()
            .contains("secrets file changed but cannot be used")
    );
    Ok(())
}

#[test]
fn the_api_needs_a_token_and_changes_need_an_admin_token() -> Result<()> {
    let collector = Collector::start()?;
    let node = node_id("api-auth");
    let rt = runtime()?;
    rt.block_on(exchange(
        &collector,
        vec![hello(&node), batch(1, "kernel_module", &["ext4"])],
    ))?;
    let anonymous = collector.api.with_token(None);
    let (status, body) = anonymous.get_raw("/healthz")?;
    assert_eq!((status, body.trim()), (200, "ok"));
    for path in [
        "/api/v1/nodes",
        "/api/v1/records?kind=kernel_module",
        "/api/v1/credentials",
        "/api/v1/retention/audit",
    ] {
        let (status, body) = anonymous.get_raw(path)?;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("needs a bearer token"), "{path}: {body}");
        let (status, body) = collector
            .api
            .with_token(Some("census-test-wrong-token"))
            .get_raw(path)?;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let reader = collector.api.with_token(Some(READ_TOKEN));
    let (status, body) = reader.get_raw("/api/v1/nodes")?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&node));

    let admin_routes = [
        (
            "POST",
            "/api/v1/terminations".to_string(),
            Some(json!({"hosting_service": format!("node:{node}"), "at": "2026-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            "/api/v1/deletion-requests".to_string(),
            Some(json!({"hosting_service": format!("node:{node}")})),
        ),
        (
            "POST",
            "/api/v1/legal-holds".to_string(),
            Some(json!({"hosting_service": format!("node:{node}"), "reason": "audit"})),
        ),
        ("DELETE", "/api/v1/legal-holds/1".to_string(), None),
        (
            "PUT",
            "/api/v1/config/detection_schedule/all".to_string(),
            Some(json!({"interval_secs": 60})),
        ),
        (
            "DELETE",
            "/api/v1/config/detection_schedule/all".to_string(),
            None,
        ),
    ];
    for (method, path, body) in &admin_routes {
        let body = body.as_ref().map(Value::to_string);
        let (status, answer) = reader.send(method, path, body.as_deref())?;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(answer.contains("needs an admin token"), "{answer}");
        let (status, answer) = anonymous.send(method, path, body.as_deref())?;
        assert_eq!(status, 401, "{method} {path}: {answer}");
    }
    // Refused requests changed nothing.
    let nodes = collector.api.get("/api/v1/nodes")?;
    let ours = nodes["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == node.as_str()))
        .context("node")?;
    assert!(ours["terminated_at"].is_null(), "{ours}");
    assert_eq!(
        collector.api.get("/api/v1/legal-holds")?["legal_holds"],
        json!([])
    );
    assert_eq!(collector.api.get("/api/v1/config")?["items"], json!([]));
    // The admin token may.
    let (status, answer) = collector.api.send(
        "PUT",
        "/api/v1/config/detection_schedule/all",
        Some(&json!({"interval_secs": 60}).to_string()),
    )?;
    assert_eq!(status, 201, "{answer}");
    Ok(())
}

/// Runs `census-agent run --once` against `url` with `args`; its exit status and stderr.
fn once(url: &str, node: &str, args: &[String]) -> Result<(bool, String)> {
    let state = tempfile::tempdir()?;
    let mut command = Command::new(binary("census-agent"));
    command
        .args([
            "run",
            "--once",
            "--only",
            "host",
            "--node-id",
            node,
            "--collector",
            url,
        ])
        .arg("--state-dir")
        .arg(state.path())
        .args(args);
    let output = command.output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn tls_pins_the_collectors_ca_and_mutual_tls_requires_a_client_certificate() -> Result<()> {
    let pki = Pki::new("census")?;
    let impostor = Pki::new("impostor")?;
    let collector = Collector::start_secured(Some(Tls::of(&pki, false)), &[])?;
    assert!(collector.grpc_url().starts_with("https://"));

    let good = node_id("tls-good");
    let (ok, stderr) = once(&collector.grpc_url(), &good, &collector.agent_args())?;
    assert!(ok, "{stderr}");
    assert_eq!(collector.api.records(&good, "host")?.len(), 1);

    // The agent trusts only its CA: a collector certificate from another is refused.
    let wrong = node_id("tls-wrong-ca");
    let mut args = collector.agent_args();
    let ca = args.iter().position(|a| a == "--ca").context("--ca")? + 1;
    args[ca] = impostor.ca.display().to_string();
    let (ok, stderr) = once(&collector.grpc_url(), &wrong, &args)?;
    assert!(!ok, "an agent pinning another CA connected");
    assert!(stderr.contains("cannot connect to collector"), "{stderr}");
    assert!(!node_known(&collector, &wrong)?);
    assert!(credentials(&collector, &wrong)?.is_empty());

    // Plain text to the TLS port gets nowhere, and http:// needs its flag.
    let plain = node_id("tls-plain");
    let (ok, stderr) = once(
        &format!("http://{}", collector.grpc),
        &plain,
        &[
            "--insecure-plaintext".into(),
            "--enrollment-secret-file".into(),
            collector.enrollment_secret.display().to_string(),
        ],
    )?;
    assert!(!ok, "{stderr}");
    assert!(!node_known(&collector, &plain)?);

    // The HTTP API is TLS too: a client pinning another CA is refused.
    let mut impostor_api = collector.api.clone();
    if let Some(tls) = &mut impostor_api.tls {
        tls.ca = impostor.ca.clone();
    }
    assert!(impostor_api.get_raw("/healthz").is_err());
    let plain_http = ureq::get(&format!("http://{}/healthz", collector.api.http)).call();
    assert!(plain_http.is_err(), "plain HTTP answered on the TLS port");
    drop(collector);

    // Mutual TLS: without a client certificate, no connection.
    let collector = Collector::start_secured(Some(Tls::of(&pki, true)), &[])?;
    let with_cert = node_id("mtls-cert");
    let (ok, stderr) = once(&collector.grpc_url(), &with_cert, &collector.agent_args())?;
    assert!(ok, "{stderr}");
    let without = node_id("mtls-none");
    let args: Vec<String> = collector.agent_args();
    let cert = args
        .iter()
        .position(|a| a == "--tls-cert")
        .context("--tls-cert")?;
    let args: Vec<String> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| !(cert..cert + 4).contains(i))
        .map(|(_, a)| a.clone())
        .collect();
    let (ok, stderr) = once(&collector.grpc_url(), &without, &args)?;
    assert!(!ok, "an agent without a client certificate connected");
    assert!(!stderr.is_empty());
    assert!(!node_known(&collector, &without)?);
    assert!(credentials(&collector, &without)?.is_empty());
    Ok(())
}

#[test]
fn limits_refuse_with_a_status_that_says_why() -> Result<()> {
    let collector = Collector::start_with(&[
        "--max-batch-changes",
        "3",
        "--max-string-bytes",
        "64",
        "--rate-bytes-per-sec",
        "1024",
        "--rate-burst-bytes",
        "8192",
    ])?;
    let rt = runtime()?;

    let node = node_id("too-many");
    let (replies, status) = rt.block_on(exchange(
        &collector,
        vec![
            hello(&node),
            batch(1, "kernel_module", &["a", "b", "c", "d"]),
        ],
    ))?;
    let status = status.context("an oversized batch must be refused")?;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("4 changes, more than the limit of 3"),
        "{status:?}"
    );
    assert!(acked(&replies).is_empty());

    let node = node_id("long-string");
    let long = "x".repeat(65);
    let (_, status) = rt.block_on(exchange(
        &collector,
        vec![hello(&node), batch(1, "kernel_module", &["ok", &long])],
    ))?;
    let status = status.context("an oversized string must be refused")?;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("field \"name\" is 65 bytes, more than the limit of 64"),
        "{status:?}"
    );
    assert!(modules(&collector, &node)?.is_empty());

    let node = node_id("flood");
    let mut messages = vec![hello(&node)];
    messages.extend((1..=20).map(|seq| batch(seq, "kernel_module", &["m"])));
    let (replies, status) = rt.block_on(exchange(&collector, messages))?;
    let status = status.context("a flood must be refused")?;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("over its rate limit of 1024 bytes/s"),
        "{status:?}"
    );
    let acked = acked(&replies);
    assert!(!acked.is_empty() && acked.len() < 20, "{acked:?}");
    drop(collector);

    // Concurrent streams.
    let collector = Collector::start_with(&["--max-streams", "1"])?;
    let (first, second) = (node_id("stream-1"), node_id("stream-2"));
    rt.block_on(async {
        let credential = enroll(&collector, &first).await?;
        let mut client = CensusClient::connect(collector.grpc_url()).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel::<AgentMessage>(4);
        sender.send(hello(&first)).await?;
        let mut open = client
            .sync(census_tests::authorized(
                tokio_stream::wrappers::ReceiverStream::new(receiver),
                &credential,
            ))
            .await?
            .into_inner();
        let welcome = open.message().await?;
        ensure!(matches!(
            welcome.and_then(|w| w.message),
            Some(census_proto::v1::collector_message::Message::Welcome(_))
        ));
        let (_, status) = exchange(&collector, vec![hello(&second)]).await?;
        let status = status.context("a second concurrent stream must be refused")?;
        ensure!(status.code() == Code::ResourceExhausted, "{status:?}");
        ensure!(
            status
                .message()
                .contains("limit of 1 concurrent agent streams"),
            "{status:?}"
        );
        drop(sender);
        drop(open);
        anyhow::Ok(())
    })?;
    Ok(())
}

/// One agent keeps syncing while other clients send the gRPC port garbage, oversized
/// frames and half-open connections.
#[test]
fn garbage_and_oversized_frames_do_not_stop_the_collector_serving_others() -> Result<()> {
    let collector = Collector::start_with(&["--max-frame-bytes", "65536"])?;
    let host = SyntheticHost::new(200)?;
    let dir = tempfile::tempdir()?;
    let node = node_id("steady");
    let _agent: Running = host.agent(
        &collector.grpc_url(),
        &collector.agent_args(),
        &dir.path().join("state"),
        &node,
        &dir.path().join("agent.log"),
        &[],
    )?;
    let has = |name: &str| -> Result<bool> {
        Ok(!collector
            .api
            .records_where(&format!("node={node}&kind=package&q={name}&limit=5"))?
            .is_empty())
    };
    wait_for(Duration::from_secs(60), "the first sync", || {
        Ok(has("census-extra-0-0")?.then_some(()))
    })?;

    // Connections that send nothing, hold on, and never finish a request.
    let idle: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(&collector.grpc))
        .collect::<std::io::Result<_>>()?;
    // Garbage: random bytes, an HTTP/1 request, a broken HTTP/2 preface.
    for i in 0..50 {
        let mut stream = std::net::TcpStream::connect(&collector.grpc)?;
        let garbage: Vec<u8> = match i % 3 {
            0 => (0..4096).map(|_| fastrand::u8(..)).collect(),
            1 => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            _ => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        };
        let _ = stream.write_all(&garbage);
    }
    // An oversized frame from an enrolled client, and one far past any sane size.
    let rt = runtime()?;
    let big = node_id("oversized");
    let keys: Vec<String> = (0..2_000)
        .map(|i| format!("module-{i:04}-{}", "y".repeat(40)))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (replies, status) = rt.block_on(exchange(
        &collector,
        vec![hello(&big), batch(1, "kernel_module", &keys)],
    ))?;
    let status = status.context("an oversized frame must be refused")?;
    assert!(
        status.message().contains("too large") || status.message().contains("limit"),
        "{status:?}"
    );
    assert!(acked(&replies).is_empty());
    assert!(modules(&collector, &big)?.is_empty());
    // The steady agent still delivers, the API still answers.
    host.generation(1)?;
    wait_for(
        Duration::from_secs(60),
        "a change from the steady agent",
        || Ok(has("census-extra-1-0")?.then_some(())),
    )?;
    let (status, _) = collector.api.get_raw("/healthz")?;
    assert_eq!(status, 200);
    drop(idle);
    Ok(())
}
