//! The `trafficbench.v1` API shared by tbd (server) and tbctl (client).
#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Generated messages and services of package `trafficbench.v1`.
pub mod v1 {
    tonic::include_proto!("trafficbench.v1");
}

pub use v1::*;
