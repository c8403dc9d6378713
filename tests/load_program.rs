//! The load program (`examples/load`) counts what it claims to: run with a tiny shape against a
//! test node, its report says every message was acknowledged and every subscriber saw every one.
//! The example's own modules are compiled in here, so this runs the same code as
//! `cargo run --example load`, minus the command line. No timing is asserted.

mod common;

#[path = "../examples/load/measure.rs"]
mod measure;
#[path = "../examples/load/run.rs"]
mod run;
#[path = "../examples/load/setup.rs"]
mod setup;

use std::time::Duration;

use common::TestNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_load_run_reports_every_message_and_delivery() {
    let node = TestNode::spawn().await;
    let options = run::Options {
        addr: node.address(),
        ca_file: None,
        senders: 1,
        subscribers: 2,
        connections: 2,
        duration: Duration::from_secs(10),
        messages: Some(20),
        rate: None,
        drain_timeout: Duration::from_secs(20),
        // The node runs in this process, so its /proc entry is ours.
        pid: Some(std::process::id()),
        data_dir: Some(node.data_dir()),
        registration_token: String::new(),
    };
    let report = tokio::time::timeout(Duration::from_secs(60), run::run(&options))
        .await
        .expect("the run ends within 60 s")
        .expect("the run succeeds");

    assert_eq!(report["shape"]["senders"], 1, "{report}");
    assert_eq!(report["shape"]["subscribers"], 2, "{report}");
    assert_eq!(report["shape"]["connections"], 2, "{report}");
    assert_eq!(report["shape"]["messages"], 20, "{report}");
    assert_eq!(report["send"]["messages"], 20, "{report}");
    assert_eq!(report["send"]["latency"]["count"], 20, "{report}");

    let delivery = &report["delivery"];
    assert_eq!(delivery["expected"], 40, "{report}");
    assert_eq!(delivery["delivered"], 40, "{report}");
    assert_eq!(delivery["subscribers_with_every_message"], 2, "{report}");
    assert_eq!(delivery["fewest_received_by_a_subscriber"], 20, "{report}");
    assert_eq!(delivery["most_received_by_a_subscriber"], 20, "{report}");
    assert_eq!(
        delivery["messages_seen_by_every_subscriber"], 20,
        "{report}"
    );
    assert_eq!(delivery["streams_ended"], 0, "{report}");
    assert_eq!(
        delivery["farthest_subscriber_latency"]["count"], 20,
        "{report}"
    );

    assert_eq!(
        report["node_process"]["pid"],
        std::process::id(),
        "{report}"
    );
    assert!(
        report["node_process"]["vm_hwm_mib"].as_f64() > Some(0.0),
        "{report}"
    );
    assert!(report["disk"]["bytes_after"].as_u64() > Some(0), "{report}");
}

#[tokio::test]
async fn a_shape_without_senders_is_refused_before_connecting() {
    let options = run::Options {
        addr: "http://127.0.0.1:9".into(),
        ca_file: None,
        senders: 0,
        subscribers: 0,
        connections: 1,
        duration: Duration::from_secs(1),
        messages: None,
        rate: None,
        drain_timeout: Duration::from_secs(1),
        pid: None,
        data_dir: None,
        registration_token: String::new(),
    };
    let err = run::run(&options).await.expect_err("no senders");
    assert!(err.to_string().contains("--senders"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_rate_limits_on_makes_the_run_fail_naming_the_limit() {
    // Limits as a real node has them, but low enough for 20 messages to run into.
    let node = TestNode::spawn_with(|config| config.settings.message_rate_limit = 5).await;
    let options = run::Options {
        addr: node.address(),
        ca_file: None,
        senders: 1,
        subscribers: 0,
        connections: 1,
        duration: Duration::from_secs(10),
        messages: Some(20),
        rate: None,
        drain_timeout: Duration::from_secs(5),
        pid: None,
        data_dir: None,
        registration_token: String::new(),
    };
    let err = tokio::time::timeout(Duration::from_secs(60), run::run(&options))
        .await
        .expect("the run ends within 60 s")
        .expect_err("the sixth message is over the limit");
    let text = format!("{err:#}");
    assert!(text.contains("SendMessage: ResourceExhausted"), "{text}");
    assert!(text.contains("docs/BENCHMARKS.md"), "{text}");
}
