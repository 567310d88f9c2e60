//! Property tests of the wire format: every message survives
//! encode → decode unchanged, and no byte string makes decoding panic or
//! allocate past its frame.

use ally_proto::frame::{self, FrameBuf, MAX_FRAME_LEN};
use ally_proto::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..48)
}

fn failure() -> impl Strategy<Value = Failure> {
    let code = prop_oneof![
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::VersionMismatch),
        Just(ErrorCode::NotPermitted),
        Just(ErrorCode::UnknownApp),
        Just(ErrorCode::ListenFailed),
        Just(ErrorCode::ReloadFailed),
        Just(ErrorCode::LimitExceeded),
        Just(ErrorCode::ShuttingDown),
        Just(ErrorCode::Internal),
        Just(ErrorCode::Overflow),
        Just(ErrorCode::InvalidConfig),
    ];
    (code, text()).prop_map(|(code, message)| Failure { code, message })
}

fn network() -> impl Strategy<Value = Network> {
    prop_oneof![
        Just(Network::Tcp),
        Just(Network::Udp),
        Just(Network::Unix),
        Just(Network::Unixgram),
    ]
}

fn listen_spec() -> impl Strategy<Value = ListenSpec> {
    (network(), text(), option::of(any::<u32>())).prop_map(|(network, address, mode)| ListenSpec {
        network,
        address,
        mode,
    })
}

fn report() -> impl Strategy<Value = Report> {
    (
        option::of(any::<u64>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
    )
        .prop_map(|(tasks, version, commit, text)| Report {
            tasks,
            version,
            commit,
            text,
        })
}

fn lock_mode() -> impl Strategy<Value = LockMode> {
    prop_oneof![Just(LockMode::Exclusive), Just(LockMode::Shared)]
}

fn instance_request() -> impl Strategy<Value = InstanceRequest> {
    use InstanceRequest as R;
    prop_oneof![
        listen_spec().prop_map(R::Listen),
        listen_spec().prop_map(R::Unlisten),
        Just(R::Ready),
        report().prop_map(R::Report),
        Just(R::Reload),
        Just(R::Info),
        (text(), text(), bytes(), option::of(any::<u64>())).prop_map(|(ns, key, value, ttl_ms)| {
            R::CacheSet {
                ns,
                key,
                value,
                ttl_ms,
            }
        }),
        (text(), text()).prop_map(|(ns, key)| R::CacheGet { ns, key }),
        (text(), text()).prop_map(|(ns, key)| R::CacheDel { ns, key }),
        (text(), text()).prop_map(|(ns, key)| R::CacheExists { ns, key }),
        text().prop_map(|ns| R::CacheKeys { ns }),
        text().prop_map(|ns| R::CacheCount { ns }),
        text().prop_map(|ns| R::CacheItems { ns }),
        text().prop_map(|ns| R::CacheFlush { ns }),
        (text(), any::<i64>()).prop_map(|(name, delta)| R::AtomicAdd { name, delta }),
        text().prop_map(|name| R::AtomicLoad { name }),
        (text(), any::<i64>()).prop_map(|(name, value)| R::AtomicStore { name, value }),
        (text(), any::<i64>()).prop_map(|(name, value)| R::AtomicSwap { name, value }),
        (text(), any::<i64>(), any::<i64>()).prop_map(|(name, current, new)| R::AtomicCas {
            name,
            current,
            new
        }),
        (text(), lock_mode(), option::of(any::<u64>())).prop_map(|(name, mode, timeout_ms)| {
            R::Lock {
                name,
                mode,
                timeout_ms,
            }
        }),
        (text(), lock_mode()).prop_map(|(name, mode)| R::Unlock { name, mode }),
        text().prop_map(|name| R::LockQueue { name }),
        Just(R::Connect),
    ]
}

fn instance_response() -> impl Strategy<Value = InstanceResponse> {
    use InstanceResponse as R;
    prop_oneof![
        (any::<u8>(), text()).prop_map(|(fds, local)| R::Listening { fds, local }),
        Just(R::Done),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(app, instance, started_unix_ms)| {
            R::Info(InstanceInfo {
                app,
                instance,
                started_unix_ms,
            })
        }),
        any::<u64>().prop_map(|instance| R::ReloadStarted { instance }),
        failure().prop_map(R::Error),
        option::of(bytes()).prop_map(R::Value),
        any::<bool>().prop_map(R::Bool),
        any::<i64>().prop_map(R::Int),
        any::<u64>().prop_map(R::Count),
        vec(text(), 0..4).prop_map(R::Keys),
        vec((text(), bytes()), 0..4).prop_map(R::Items),
        (any::<bool>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(exclusive, shared, waiting_exclusive, waiting_shared)| {
                R::LockState(LockState {
                    exclusive,
                    shared,
                    waiting_exclusive,
                    waiting_shared,
                })
            }
        ),
        any::<u8>().prop_map(|fds| R::Connected { fds }),
    ]
}

fn control_request() -> impl Strategy<Value = ControlRequest> {
    use ControlRequest as R;
    prop_oneof![
        Just(R::List),
        (text(), any::<bool>()).prop_map(|(app, wait)| R::Reload { app, wait }),
        text().prop_map(|app| R::Status { app }),
        text().prop_map(|app| R::Start { app }),
        text().prop_map(|app| R::Stop { app }),
        text().prop_map(|app| R::Restart { app }),
        (text(), any::<i32>()).prop_map(|(app, signal)| R::Kill { app, signal }),
        (text(), any::<u32>(), any::<bool>()).prop_map(|(app, lines, follow)| R::Logs {
            app,
            lines,
            follow
        }),
        Just(R::Reread),
        Just(R::Reopen),
        any::<bool>().prop_map(|wait| R::Upgrade { wait }),
        Just(R::Version),
    ]
}

fn instance_status() -> impl Strategy<Value = InstanceStatus> {
    let state = prop_oneof![
        Just(InstanceState::Starting),
        Just(InstanceState::Main),
        Just(InstanceState::Draining),
        Just(InstanceState::Killed),
    ];
    (
        (
            any::<u64>(),
            any::<u32>(),
            state,
            any::<u64>(),
            any::<u32>(),
        ),
        (
            option::of(any::<u64>()),
            report(),
            any::<u64>(),
            any::<u64>(),
            option::of(any::<u32>()),
        ),
    )
        .prop_map(
            |(
                (id, pid, state, started_unix_ms, listeners),
                (deadline_unix_ms, report, cpu_ms, rss_bytes, uid),
            )| {
                InstanceStatus {
                    id,
                    pid,
                    state,
                    started_unix_ms,
                    listeners,
                    deadline_unix_ms,
                    report,
                    cpu_ms,
                    rss_bytes,
                    uid,
                }
            },
        )
}

fn app_status() -> impl Strategy<Value = AppStatus> {
    let state = prop_oneof![
        Just(AppState::Running),
        Just(AppState::Starting),
        any::<u64>().prop_map(|until_unix_ms| AppState::Backoff { until_unix_ms }),
        Just(AppState::Failed),
        Just(AppState::Stopping),
        Just(AppState::Stopped),
    ];
    (
        (text(), state, any::<u32>(), option::of(any::<u64>())),
        (option::of(any::<u64>()), any::<u32>(), option::of(text())),
        vec(instance_status(), 0..3),
        (any::<u64>(), option::of(text())),
    )
        .prop_map(
            |(
                (name, state, restarts, main),
                (reloading, queued_reloads, last_error),
                instances,
                (dropped_lines, family),
            )| {
                AppStatus {
                    name,
                    state,
                    restarts,
                    main,
                    reloading,
                    queued_reloads,
                    last_error,
                    instances,
                    dropped_lines,
                    family,
                }
            },
        )
}

fn control_response() -> impl Strategy<Value = ControlResponse> {
    use ControlResponse as R;
    prop_oneof![
        vec(app_status(), 0..3).prop_map(R::Apps),
        (text(), any::<u64>()).prop_map(|(app, instance)| R::ReloadStarted { app, instance }),
        (text(), any::<u64>()).prop_map(|(app, instance)| R::ReloadDone { app, instance }),
        failure().prop_map(R::Error),
        text().prop_map(R::Done),
        vec(text(), 0..4).prop_map(R::LogLines),
        text().prop_map(|from| R::UpgradeStarted { from }),
        (text(), text()).prop_map(|(from, to)| R::Upgraded { from, to }),
        (text(), any::<u32>())
            .prop_map(|(version, handover)| R::MasterVersion { version, handover }),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    let role = prop_oneof![Just(Role::Instance), Just(Role::Control)];
    (any::<[u8; 4]>(), any::<u32>(), role).prop_map(|(magic, version, role)| Hello {
        magic,
        version,
        role,
    })
}

fn hello_reply() -> impl Strategy<Value = HelloReply> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(version, master_pid)| HelloReply::Welcome {
            version,
            master_pid
        }),
        failure().prop_map(HelloReply::Refused),
    ]
}

/// encode → decode is the identity, through a byte-at-a-time FrameBuf too.
fn round_trips<T>(msg: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = frame::encode(msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decoded: T = frame::decode(&bytes[4..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, msg);
    let mut buf = FrameBuf::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend(&[*b]);
        let got: Option<T> = buf.next().map_err(|e| TestCaseError::fail(e.to_string()))?;
        if i + 1 < bytes.len() {
            prop_assert!(got.is_none());
        } else {
            prop_assert_eq!(got.as_ref(), Some(msg));
        }
    }
    Ok(())
}

/// Decoding `bytes` as every message type returns, whatever the outcome.
fn decodes_without_panic(bytes: &[u8]) {
    let _ = frame::decode::<Hello>(bytes);
    let _ = frame::decode::<HelloReply>(bytes);
    let _ = frame::decode::<InstanceRequest>(bytes);
    let _ = frame::decode::<InstanceResponse>(bytes);
    let _ = frame::decode::<ControlRequest>(bytes);
    let _ = frame::decode::<ControlResponse>(bytes);
    let mut buf = FrameBuf::new();
    buf.extend(bytes);
    let _ = buf.next::<ControlResponse>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hello_round_trips(m in hello()) { round_trips(&m)?; }

    #[test]
    fn hello_reply_round_trips(m in hello_reply()) { round_trips(&m)?; }

    #[test]
    fn instance_requests_round_trip(m in instance_request()) { round_trips(&m)?; }

    #[test]
    fn instance_responses_round_trip(m in instance_response()) { round_trips(&m)?; }

    #[test]
    fn control_requests_round_trip(m in control_request()) { round_trips(&m)?; }

    #[test]
    fn control_responses_round_trip(m in control_response()) { round_trips(&m)?; }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        decodes_without_panic(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(m in control_response(), flips in vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = frame::encode(&m).unwrap()[4..].to_vec();
        if !bytes.is_empty() {
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] = value;
            }
        }
        decodes_without_panic(&bytes);
    }
}

/// A length prefix that claims a huge sequence must not make the decoder
/// reserve memory for it: the frame is small, the claim is refused.
#[test]
fn huge_claimed_lengths_are_refused_cheaply() {
    // ControlResponse::LogLines with a claimed 2^35 lines.
    let body = [5u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    assert!(frame::decode::<ControlResponse>(&body).is_err());
    // A string claiming nearly the whole frame limit, with no bytes.
    let mut body = vec![4u8];
    let mut n = MAX_FRAME_LEN as u64;
    while n >= 0x80 {
        body.push((n as u8) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    assert!(frame::decode::<ControlResponse>(&body).is_err());
}
