//! flotilla-sharding: which controller replica owns which keys (destination clusters). Today a
//! single replica owns everything; Lease membership and the consistent-hash ring come next.
//! Must not know what an Application is: it only sees opaque keys.
#![forbid(unsafe_code)]

pub mod assignment;

pub use assignment::Assignment;
