//! Golden bytes: the encoding of one message of each kind, pinned so that a
//! change to the wire format fails here first. `PROTOCOL.md` shows the same
//! bytes.

use crate::frame::{decode, encode};
use crate::*;

fn check<T>(msg: T, bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = encode(&msg).unwrap();
    assert_eq!(&frame[4..], bytes, "encoding of {msg:?}");
    assert_eq!(
        u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize,
        bytes.len()
    );
    assert_eq!(decode::<T>(bytes).unwrap(), msg);
}

#[test]
fn hello() {
    check(Hello::new(Role::Instance), b"ally\x04\x00");
    check(Hello::new(Role::Control), b"ally\x04\x01");
}

#[test]
fn hello_reply() {
    check(
        HelloReply::Welcome {
            version: 1,
            master_pid: 300,
        },
        &[0, 1, 0xac, 0x02],
    );
    check(
        HelloReply::Refused(Failure::new(ErrorCode::VersionMismatch, "v")),
        &[1, 1, 1, b'v'],
    );
}

#[test]
fn listen() {
    check(
        InstanceRequest::Listen(ListenSpec {
            network: Network::Tcp,
            address: "127.0.0.1:0".into(),
            mode: None,
        }),
        b"\x00\x00\x0b127.0.0.1:0\x00",
    );
    check(
        InstanceRequest::Listen(ListenSpec {
            network: Network::Unix,
            address: "/s".into(),
            mode: Some(0o660),
        }),
        b"\x00\x02\x02/s\x01\xb0\x03",
    );
}

#[test]
fn instance_requests() {
    check(InstanceRequest::Ready, &[2]);
    check(InstanceRequest::Reload, &[4]);
    check(InstanceRequest::Info, &[5]);
    check(InstanceRequest::Connect, &[22]);
    check(
        InstanceRequest::Report(Report {
            tasks: Some(3),
            ..Report::default()
        }),
        &[3, 1, 3, 0, 0, 0],
    );
}

#[test]
fn instance_responses() {
    check(
        InstanceResponse::Listening {
            fds: 1,
            local: "1.2.3.4:5".into(),
        },
        b"\x00\x01\x091.2.3.4:5",
    );
    check(InstanceResponse::Done, &[1]);
    check(InstanceResponse::Connected { fds: 1 }, &[12, 1]);
    check(InstanceResponse::ReloadStarted { instance: 2 }, &[3, 2]);
    check(
        InstanceResponse::Error(Failure::new(ErrorCode::NotPermitted, "no")),
        b"\x04\x02\x02no",
    );
}

#[test]
fn control() {
    check(ControlRequest::List, &[0]);
    check(
        ControlRequest::Reload {
            app: "web".into(),
            wait: true,
        },
        b"\x01\x03web\x01",
    );
    check(
        ControlResponse::ReloadDone {
            app: "web".into(),
            instance: 7,
        },
        b"\x02\x03web\x07",
    );
    check(
        ControlResponse::Apps(vec![AppStatus {
            name: "a".into(),
            state: AppState::Running,
            restarts: 0,
            main: Some(1),
            reloading: None,
            queued_reloads: 0,
            last_error: None,
            instances: vec![InstanceStatus {
                id: 1,
                pid: 9,
                state: InstanceState::Main,
                started_unix_ms: 1,
                listeners: 1,
                deadline_unix_ms: None,
                report: Report {
                    tasks: Some(2),
                    ..Report::default()
                },
                cpu_ms: 3,
                rss_bytes: 4,
                uid: Some(65534),
            }],
            dropped_lines: 300,
            family: Some("f".into()),
        }]),
        &[
            0, 1, 1, b'a', 0, 0, 1, 1, 0, 0, 0, 1, 1, 9, 1, 1, 1, 0, 1, 2, 0, 0, 0, 3, 4, 1, 0xfe,
            0xff, 0x03, 0xac, 0x02, 1, 1, b'f',
        ],
    );
    check(
        ControlRequest::Logs {
            app: "w".into(),
            lines: 10,
            follow: true,
        },
        &[7, 1, b'w', 10, 1],
    );
    check(ControlRequest::Reread, &[8]);
    check(
        ControlRequest::Kill {
            app: "w".into(),
            signal: 10,
        },
        &[6, 1, b'w', 20],
    );
    check(ControlResponse::Done("ok".into()), b"\x04\x02ok");
    check(
        ControlResponse::LogLines(vec!["x".into()]),
        &[5, 1, 1, b'x'],
    );
    check(ControlRequest::Upgrade { wait: true }, &[10, 1]);
    check(ControlRequest::Version, &[11]);
    check(
        ControlResponse::UpgradeStarted { from: "1".into() },
        &[6, 1, b'1'],
    );
    check(
        ControlResponse::Upgraded {
            from: "1".into(),
            to: "2".into(),
        },
        &[7, 1, b'1', 1, b'2'],
    );
    check(
        ControlResponse::MasterVersion {
            version: "1".into(),
            handover: 1,
        },
        &[8, 1, b'1', 1],
    );
}

#[test]
fn bad_magic_or_variant_is_an_error_not_a_panic() {
    assert!(decode::<InstanceRequest>(&[200]).is_err());
    assert!(decode::<Hello>(b"ally").is_err());
    assert!(decode::<ControlRequest>(&[]).is_err());
}

#[test]
fn state_requests() {
    check(
        InstanceRequest::CacheSet {
            ns: "n".into(),
            key: "k".into(),
            value: vec![7],
            ttl_ms: Some(1000),
        },
        &[6, 1, b'n', 1, b'k', 1, 7, 1, 0xe8, 0x07],
    );
    check(
        InstanceRequest::AtomicAdd {
            name: "c".into(),
            delta: -1,
        },
        &[14, 1, b'c', 1],
    );
    check(
        InstanceRequest::Lock {
            name: "l".into(),
            mode: LockMode::Shared,
            timeout_ms: None,
        },
        &[19, 1, b'l', 1, 0],
    );
    check(
        InstanceRequest::LockQueue { name: "l".into() },
        &[21, 1, b'l'],
    );
}

#[test]
fn state_responses() {
    check(InstanceResponse::Value(Some(vec![1, 2])), &[5, 1, 2, 1, 2]);
    check(InstanceResponse::Bool(true), &[6, 1]);
    check(InstanceResponse::Int(-2), &[7, 3]);
    check(
        InstanceResponse::Items(vec![("a".into(), vec![9])]),
        &[10, 1, 1, b'a', 1, 9],
    );
    check(
        InstanceResponse::LockState(LockState {
            exclusive: true,
            shared: 0,
            waiting_exclusive: 1,
            waiting_shared: 2,
        }),
        &[11, 1, 0, 1, 2],
    );
}
