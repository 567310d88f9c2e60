//! What a test asks of a running master's listing: `ally-ctl list --json`
//! parsed, an app's entry, its instances and its main instance.

use std::time::Duration;

use serde_json::Value;

use super::{MainInstance, Master};
use crate::proc::wait_until;

impl Master {
    /// `ally-ctl list --json`, parsed.
    ///
    /// # Panics
    ///
    /// When the command fails or prints something that is not JSON.
    pub fn list_json(&self) -> Value {
        let out = self.ctl_expect(&["list", "--json"], 0);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("list --json printed invalid JSON: {e}\n{out}"))
    }

    /// The app's entry in [`list_json`](Self::list_json).
    ///
    /// # Panics
    ///
    /// When the listing has no such app.
    pub fn app(&self, app: &str) -> Value {
        let list = self.list_json();
        list["apps"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == app))
            .cloned()
            .unwrap_or_else(|| panic!("no app {app:?} in the listing: {list}"))
    }

    /// The app's live instances, oldest first, as listed.
    pub fn instances(&self, app: &str) -> Vec<Value> {
        self.app(app)["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The pid of instance `id` of `app`, if it is listed.
    pub fn pid_of(&self, app: &str, id: u64) -> Option<u32> {
        self.instances(app)
            .iter()
            .find(|i| i["id"] == id)
            .and_then(|i| i["pid"].as_u64())
            .and_then(|p| u32::try_from(p).ok())
    }

    /// The app's main instance right now, if any.
    pub fn main_of(&self, app: &str) -> Option<MainInstance> {
        main_in(&self.app(app))
    }

    /// Waits until `app` has a main instance (with id ≥ `min_id` if given)
    /// and returns it.
    ///
    /// # Panics
    ///
    /// When that does not happen within `timeout`; the message shows the
    /// last listing and the log.
    pub fn wait_main(&self, app: &str, min_id: Option<u64>, timeout: Duration) -> MainInstance {
        let mut last = Value::Null;
        let mut found = None;
        wait_until(timeout, || {
            last = self.app(app);
            found = main_in(&last).filter(|m| min_id.is_none_or(|min| m.id >= min));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "{app} has no main instance{} within {timeout:?}; last listing: {last}\n{}",
                min_id
                    .map(|m| format!(" with id >= {m}"))
                    .unwrap_or_default(),
                self.log_tail()
            )
        })
    }
}

fn main_in(app: &Value) -> Option<MainInstance> {
    let id = app["main"].as_u64()?;
    let inst = app["instances"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id)?;
    if inst["state"] != "main" {
        return None;
    }
    let pid = u32::try_from(inst["pid"].as_u64()?).ok()?;
    Some(MainInstance { id, pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_instance_is_read_from_the_listing() {
        let app: Value = serde_json::from_str(
            r#"{"name":"web","main":2,"instances":[
                {"id":1,"pid":10,"state":"draining"},{"id":2,"pid":20,"state":"main"}]}"#,
        )
        .unwrap();
        assert_eq!(main_in(&app), Some(MainInstance { id: 2, pid: 20 }));
        let none: Value =
            serde_json::from_str(r#"{"name":"web","main":null,"instances":[]}"#).unwrap();
        assert_eq!(main_in(&none), None);
    }
}
