//! What a stored kind of record is: a prost message of the API with a tree, a run and a time.
//!
//! Each kind implements [`Stored`] in a file of its own under `kinds/` and is named once in
//! [`kinds::TREES`](super::kinds::TREES); the store, its queries, counts, deletes and
//! retention work on any kind through this trait.

use std::any::Any;

use prost::Message;

/// A kind of record the store keeps, one sled tree per kind.
pub trait Stored: Message + Default + Send + Sync + 'static {
    /// The sled tree the kind is stored in.
    const TREE: &'static str;
    /// The time a record is keyed, ordered and filtered by (CLOCK_MONOTONIC ns).
    fn time_ns(&self) -> u64;
    /// The run the record belongs to (the key's prefix).
    fn run_id(&self) -> &str;
}

/// A record of any stored kind, as one drain of the ring buffer or one upload hands them
/// over together.
pub struct Record(Box<dyn Erased>);

impl Record {
    /// Wraps a record of a stored kind.
    pub fn new<M: Stored>(m: M) -> Self {
        Self(Box::new(m))
    }

    /// The record as its kind `M`, or itself back when it is of another kind.
    pub fn take<M: Stored>(self) -> Result<M, Self> {
        if self.0.as_any().is::<M>() {
            Ok(*self.0.into_any().downcast::<M>().expect("checked kind"))
        } else {
            Err(self)
        }
    }

    pub(super) fn tree(&self) -> &'static str {
        self.0.tree()
    }

    pub(super) fn time(&self) -> u64 {
        self.0.time()
    }

    pub(super) fn run_id(&self) -> &str {
        self.0.run()
    }

    /// Bytes [`Record::encode_into`] appends.
    pub(super) fn encoded_len(&self) -> usize {
        self.0.delimited_len()
    }

    /// Appends the record, length-delimited.
    pub(super) fn encode_into(&self, buf: &mut Vec<u8>) {
        self.0.encode_delimited(buf)
    }
}

/// [`Stored`] without its associated constant and generic methods, so records of all kinds
/// share one vector.
trait Erased: Send + Sync {
    fn tree(&self) -> &'static str;
    fn time(&self) -> u64;
    fn run(&self) -> &str;
    fn delimited_len(&self) -> usize;
    fn encode_delimited(&self, buf: &mut Vec<u8>);
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<M: Stored> Erased for M {
    fn tree(&self) -> &'static str {
        M::TREE
    }
    fn time(&self) -> u64 {
        self.time_ns()
    }
    fn run(&self) -> &str {
        self.run_id()
    }
    fn delimited_len(&self) -> usize {
        let n = self.encoded_len();
        prost::length_delimiter_len(n) + n
    }
    fn encode_delimited(&self, buf: &mut Vec<u8>) {
        // Encoding into a Vec cannot fail: it grows as needed.
        let _ = self.encode_length_delimited(buf);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
