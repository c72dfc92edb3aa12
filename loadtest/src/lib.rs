//! flotilla-loadtest: kubesim (a Kubernetes API simulator serving many virtual clusters) and,
//! later, the load-test harness. Must not be needed at run time by the product.
#![forbid(unsafe_code)]

pub mod kubesim;
