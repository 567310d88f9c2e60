//! What handover version 4 adds after the body of version 3: the config
//! each instance was started with (for `ally-ctl status`'s drift).
//!
//! Version 4 is version 3's body ([`MasterSnap`], unchanged) followed by
//! [`Since4`]. A version-4 master reads a version-3 state too, which then
//! knows no instance's config: an upgrade from a master of version 3 shows
//! no drift for the instances it started. A version-3 master refuses a
//! version-4 state (at the probe, serving on).

use serde::{Deserialize, Serialize};

use super::HandoverError;
use super::snapshot::{MasterSnap, StartedWith};

/// The handover version whose state this build reads besides its own.
pub const PREVIOUS_VERSION: u32 = 3;

/// The part after the body.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Since4 {
    /// Per app of the body, in order, per instance: the config it was
    /// started with.
    started_with: Vec<Vec<Option<StartedWith>>>,
}

/// Appends what `snap` holds beyond version 3 to `bytes`.
///
/// # Errors
///
/// If it cannot be encoded.
pub fn encode(snap: &MasterSnap, bytes: Vec<u8>) -> Result<Vec<u8>, HandoverError> {
    let extra = Since4 {
        started_with: snap
            .apps
            .iter()
            .map(|(_, app)| {
                app.instances
                    .iter()
                    .map(|i| i.started_with.clone())
                    .collect()
            })
            .collect(),
    };
    postcard::to_extend(&extra, bytes).map_err(|e| HandoverError::Decode(e.to_string()))
}

/// Reads what follows the body from `rest` into `snap`; returns the bytes
/// after it.
///
/// # Errors
///
/// If it does not decode, or does not match the body's apps and instances.
pub fn decode<'a>(snap: &mut MasterSnap, rest: &'a [u8]) -> Result<&'a [u8], HandoverError> {
    let (extra, left) = postcard::take_from_bytes::<Since4>(rest)
        .map_err(|e| HandoverError::Decode(e.to_string()))?;
    if extra.started_with.len() != snap.apps.len() {
        return Err(HandoverError::Decode(format!(
            "start configs for {} apps, the state has {}",
            extra.started_with.len(),
            snap.apps.len()
        )));
    }
    for ((_, app), configs) in snap.apps.iter_mut().zip(extra.started_with) {
        if configs.len() != app.instances.len() {
            return Err(HandoverError::Decode(format!(
                "{}: start configs for {} instances, the state has {}",
                app.config.name,
                configs.len(),
                app.instances.len()
            )));
        }
        for (instance, config) in app.instances.iter_mut().zip(configs) {
            instance.started_with = config;
        }
    }
    Ok(left)
}
