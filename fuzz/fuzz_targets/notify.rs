//! The master's notify-socket parser on arbitrary datagrams: never
//! panics, and the messages it reads, written back one per line, read the
//! same again.
//!
//! The parser lives in the `ally-master` binary, which a fuzz target
//! cannot link, so its module (and the constants it uses) is compiled in
//! here.
#![no_main]

#[path = "../../ally-master/src/limits.rs"]
#[allow(dead_code)]
mod limits;
#[path = "../../ally-master/src/notify.rs"]
#[allow(dead_code)]
mod notify;

use libfuzzer_sys::fuzz_target;
use notify::Message;

fn line(m: &Message) -> String {
    match m {
        Message::Ready => "READY=1".into(),
        Message::Status(s) => format!("STATUS={s}"),
        Message::Stopping => "STOPPING=1".into(),
        Message::Reloading => "RELOADING=1".into(),
        Message::MainPid(p) => format!("MAINPID={p}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let messages = notify::parse(data);
    assert!(messages.len() <= data.iter().filter(|&&b| b == b'\n').count() + 1);
    for m in &messages {
        if let Message::Status(s) | Message::MainPid(s) = m {
            assert!(!s.contains('\n'));
        }
    }
    let text = messages.iter().map(line).collect::<Vec<_>>().join("\n");
    assert_eq!(notify::parse(text.as_bytes()), messages);
});
