//! Bad input at both ends: the collector refuses unknown kinds and malformed frames with
//! a status that says what is wrong, stores nothing of them and loses nothing it had;
//! the agent skips malformed lines with a warning naming the file and line.
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::BufMut;
use census_proto::v1::census_client::CensusClient;
use census_proto::v1::{CollectorMessage, collector_message};
use census_tests::frames::{acked, batch, exchange, hello, runtime};
use census_tests::{Collector, authorized, binary, enroll, node_id, scan_json};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

#[test]
fn an_unknown_kind_is_refused_by_name_and_stores_nothing() -> Result<()> {
    let collector = Collector::start()?;
    let node = node_id("unknown-kind");
    let (replies, status) = runtime()?.block_on(exchange(
        &collector,
        vec![
            hello(&node),
            batch(1, "kernel_module", &["ext4"]),
            batch(2, "frobnicator", &["x"]),
            batch(3, "kernel_module", &["after-the-refusal"]),
        ],
    ))?;
    assert_eq!(acked(&replies), [1], "only the good batch is acked");
    let status = status.context("stream should end with an error status")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("unknown record kind \"frobnicator\""),
        "{}",
        status.message()
    );

    // What was stored before stays; nothing of the refused batch or after it.
    let modules = collector.api.records(&node, "kernel_module")?;
    let keys: Vec<_> = modules
        .iter()
        .map(|r| r["key"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(keys, ["ext4"]);
    assert_eq!(modules[0]["category"], "asset_basic_data");
    let everything = collector
        .api
        .records_where(&format!("node={node}&include_removed=true"))?;
    assert_eq!(everything.len(), 1, "{everything:?}");
    let (status, body) = collector
        .api
        .get_raw(&format!("/api/v1/records?node={node}&kind=frobnicator"))?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown kind \\\"frobnicator\\\""), "{body}");
    Ok(())
}

#[test]
fn a_record_under_the_wrong_kind_is_refused() -> Result<()> {
    let collector = Collector::start()?;
    let node = node_id("wrong-kind");
    let (replies, status) = runtime()?.block_on(exchange(
        &collector,
        vec![hello(&node), batch(1, "process", &["not-a-process"])],
    ))?;
    assert_eq!(acked(&replies), Vec::<u64>::new());
    let status = status.context("expected a refusal")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("carries a \"kernel_module\" body"),
        "{}",
        status.message()
    );
    assert!(collector.api.records(&node, "process")?.is_empty());
    Ok(())
}

#[test]
fn a_batch_before_hello_is_refused() -> Result<()> {
    let collector = Collector::start()?;
    let (replies, status) = runtime()?.block_on(exchange(
        &collector,
        vec![batch(1, "kernel_module", &["a"])],
    ))?;
    assert!(replies.is_empty());
    let status = status.context("expected a refusal")?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("must start with Hello"),
        "{}",
        status.message()
    );
    Ok(())
}

/// Encodes whatever bytes it is given as one gRPC message: a client that sends
/// frames no census agent would.
#[derive(Debug, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct ReplyDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ReplyDecoder {
    type Item = CollectorMessage;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CollectorMessage>, Status> {
        CollectorMessage::decode(src)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = CollectorMessage;
    type Encoder = RawEncoder;
    type Decoder = ReplyDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ReplyDecoder {
        ReplyDecoder
    }
}

#[test]
fn a_malformed_frame_is_refused_and_the_collector_keeps_serving() -> Result<()> {
    let collector = Collector::start()?;
    let node = node_id("garbage");
    let runtime = runtime()?;
    let (replies, status) = runtime.block_on(async {
        let credential = enroll(&collector, &node).await?;
        let channel = tonic::transport::Endpoint::from_shared(collector.grpc_url())?
            .connect()
            .await?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await?;
        // A valid hello, then a field-1 length prefix claiming far more bytes than follow.
        let frames = vec![
            hello(&node).encode_to_vec(),
            vec![0x12, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02],
        ];
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/census.v1.Census/Sync");
        let request = authorized(tokio_stream::iter(frames), &credential);
        let mut inbound = grpc.streaming(request, path, RawCodec).await?.into_inner();
        let mut replies = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), inbound.message()).await? {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => return anyhow::Ok((replies, None)),
                Err(status) => return Ok((replies, Some(status))),
            }
        }
    })?;
    assert!(matches!(
        replies[..],
        [CollectorMessage {
            message: Some(collector_message::Message::Welcome(_))
        }]
    ));
    let status = status.context("expected a refusal")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("malformed census.v1 frame"),
        "{}",
        status.message()
    );

    // Still serving: a real agent syncs right after, and health is good.
    let state = tempfile::tempdir()?;
    let other = node_id("after-garbage");
    let ok = Command::new(binary("census-agent"))
        .args([
            "run",
            "--once",
            "--only",
            "host",
            "--collector",
            &collector.grpc_url(),
            "--node-id",
            &other,
        ])
        .args(collector.agent_args())
        .arg("--state-dir")
        .arg(state.path())
        .status()?;
    assert!(ok.success());
    assert_eq!(collector.api.records(&other, "host")?.len(), 1);
    assert_eq!(
        collector.api.get_raw("/healthz")?,
        (200, "ok\n".to_string())
    );
    Ok(())
}

fn write(root: &std::path::Path, path: &str, text: &str) -> Result<()> {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().context("parent")?)?;
    std::fs::write(path, text)?;
    Ok(())
}

#[test]
fn malformed_host_files_cost_a_warning_naming_file_and_line() -> Result<()> {
    let root = tempfile::tempdir()?;
    write(
        root.path(),
        "var/lib/dpkg/status",
        "Package: good\nStatus: install ok installed\nVersion: 1.0\nthis line is not a field\nArchitecture: amd64\n\n\
         Package: alsogood\nStatus: install ok installed\nVersion: 2.0\nArchitecture: all\n",
    )?;
    write(
        root.path(),
        "proc/modules",
        "ext4 1003520 2 - Live 0x0\nnot a module line\n",
    )?;
    let (records, stderr) = scan_json(&[
        "--host-root",
        root.path().to_str().context("path")?,
        "--only",
        "package,kernel_module",
    ])?;
    let keys: Vec<_> = records
        .iter()
        .map(|r| r["key"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(keys, ["deb/good/amd64", "deb/alsogood/all", "ext4"]);
    let status_path = root.path().join("var/lib/dpkg/status");
    let modules_path = root.path().join("proc/modules");
    for (path, line) in [(status_path, 4), (modules_path, 2)] {
        let warned = stderr.lines().any(|l| {
            l.contains("WARN")
                && l.contains(&path.display().to_string())
                && l.contains(&format!("line={line}"))
        });
        ensure!(
            warned,
            "no warning naming {} line {line} in:\n{stderr}",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn unknown_kinds_on_the_command_line_are_named() -> Result<()> {
    let output = Command::new(binary("census-agent"))
        .args(["scan", "--only", "process,bogus"])
        .output()?;
    if output.status.success() {
        bail!("scan --only bogus succeeded");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown kind \"bogus\"") && stderr.contains("listening_port"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_second_stream_for_a_node_replaces_the_first() -> Result<()> {
    let collector = Collector::start()?;
    let node = node_id("replaced");
    runtime()?.block_on(async {
        let credential = enroll(&collector, &node).await?;
        let mut client = CensusClient::connect(collector.grpc_url()).await?;
        // The first stream stays open: its sender is kept alive.
        let (first_sender, first_receiver) = tokio::sync::mpsc::channel(4);
        first_sender.send(hello(&node)).await?;
        let mut first = client
            .sync(authorized(
                tokio_stream::wrappers::ReceiverStream::new(first_receiver),
                &credential,
            ))
            .await?
            .into_inner();
        let welcome = first.message().await?;
        ensure!(matches!(
            welcome,
            Some(CollectorMessage {
                message: Some(collector_message::Message::Welcome(_))
            })
        ));

        // The agent restarts and opens a new stream before the old one timed out.
        let (replies, status) = exchange(
            &collector,
            vec![hello(&node), batch(1, "kernel_module", &["ext4"])],
        )
        .await?;
        ensure!(status.is_none(), "second stream refused: {status:?}");
        ensure!(acked(&replies) == [1]);

        let ended = tokio::time::timeout(Duration::from_secs(20), first.message()).await?;
        let status = match ended {
            Err(status) => status,
            other => bail!("first stream still open: {other:?}"),
        };
        ensure!(status.code() == Code::Aborted, "{status:?}");
        ensure!(
            status.message().contains("replaced"),
            "{}",
            status.message()
        );
        drop(first_sender);
        Ok(())
    })
}
