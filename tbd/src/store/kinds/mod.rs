//! The stored kinds, one file each. A new kind is a file implementing
//! [`Stored`](super::Stored) and one line in [`TREES`].

mod client_record;
mod connection;
mod dns;
mod energy_sample;
mod exchange;

use tb_proto::v1::{ClientRecord, Connection, DnsLookup, EnergySample, Exchange};

use super::Stored;

/// The tree of every stored kind: the store opens, deletes and sizes runs across these.
pub const TREES: &[&str] = &[
    Exchange::TREE,
    Connection::TREE,
    DnsLookup::TREE,
    ClientRecord::TREE,
    EnergySample::TREE,
];
