//! flotilla-loadtest: kubesim (a Kubernetes API simulator serving many virtual clusters), the
//! fleet launcher (kubesim + Git + Redis + the product binaries as processes) used by end-to-end
//! tests and the demo, and the load-test harness. Must not be needed at run time by the product.
#![forbid(unsafe_code)]

pub mod fleet;
pub mod harness;
pub mod kubesim;
