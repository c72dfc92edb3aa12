//! flotilla-sharding: which controller replica owns which keys (destination clusters): the
//! consistent-hash ring with bounded loads (`ring`), the claim protocol that hands a key over
//! only after its old owner stopped (`claims`), the ownership `gate` writers check, and Lease
//! membership tying them together (`membership`).
//! Must not know what an Application is: it only sees opaque keys with weights.
#![forbid(unsafe_code)]

pub mod claims;
pub mod gate;
pub mod membership;
pub mod metrics;
pub mod ring;

pub use gate::{Gate, Permit};
pub use membership::{KeySet, Keys, MembershipConfig, ShardError, ShardStatus};
pub use metrics::ShardMetrics;
pub use ring::{Placement, Ring};
