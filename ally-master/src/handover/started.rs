//! What handover version 5 adds after version 4's state (the body and the
//! [`Families`](super::snapshot::Families)): the config each instance was
//! started with, for `ally-ctl status`'s drift.
//!
//! A version-5 master reads a version-4 state too
//! ([`STARTLESS_VERSION`]), which then knows no instance's config: an
//! upgrade from such a master shows no drift for the instances it started
//! (`ally-ctl status` says it is not known). A version-4 master refuses a
//! version-5 state (at the probe, serving on).

use serde::{Deserialize, Serialize};

use super::HandoverError;
use super::snapshot::{AppConfigSnap, MasterSnap, StartedWith};

/// The handover version of the build before start configs: its state is
/// read too, its instances' start configs unknown.
pub const STARTLESS_VERSION: u32 = 4;

/// An instance's start config as it travels: [`AppConfigSnap`]'s encoding
/// leaves its `family` out (that travels in `Families`), so it is carried
/// beside it here.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum Wire {
    /// Its app's config as it is now.
    Current,
    /// Another one, and its family.
    Other(Box<AppConfigSnap>, Option<String>),
}

/// The part after version 4's state: per app of the body, in order, per
/// instance, the config it was started with.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Started(Vec<Vec<Option<Wire>>>);

/// Appends the start configs of `snap`'s instances to `bytes`.
///
/// # Errors
///
/// If they cannot be encoded.
pub fn encode(snap: &MasterSnap, bytes: Vec<u8>) -> Result<Vec<u8>, HandoverError> {
    let wire = |started: &StartedWith| match started {
        StartedWith::Current => Wire::Current,
        StartedWith::Other(config) => Wire::Other(config.clone(), config.family.clone()),
    };
    let extra = Started(
        snap.apps
            .iter()
            .map(|(_, app)| {
                app.instances
                    .iter()
                    .map(|i| i.started_with.as_ref().map(wire))
                    .collect()
            })
            .collect(),
    );
    postcard::to_extend(&extra, bytes).map_err(|e| HandoverError::Decode(e.to_string()))
}

/// Reads the start configs from `rest` into `snap`'s instances; returns
/// the bytes after them.
///
/// # Errors
///
/// If they do not decode, or do not match the state's apps and instances.
pub fn decode<'a>(snap: &mut MasterSnap, rest: &'a [u8]) -> Result<&'a [u8], HandoverError> {
    let (Started(started), left) = postcard::take_from_bytes::<Started>(rest)
        .map_err(|e| HandoverError::Decode(e.to_string()))?;
    if started.len() != snap.apps.len() {
        return Err(HandoverError::Decode(format!(
            "start configs for {} apps, the state has {}",
            started.len(),
            snap.apps.len()
        )));
    }
    for ((_, app), configs) in snap.apps.iter_mut().zip(started) {
        if configs.len() != app.instances.len() {
            return Err(HandoverError::Decode(format!(
                "{}: start configs for {} instances, the state has {}",
                app.config.name,
                configs.len(),
                app.instances.len()
            )));
        }
        for (instance, config) in app.instances.iter_mut().zip(configs) {
            instance.started_with = config.map(|wire| match wire {
                Wire::Current => StartedWith::Current,
                Wire::Other(mut config, family) => {
                    config.family = family;
                    StartedWith::Other(config)
                }
            });
        }
    }
    Ok(left)
}
