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
    /// The run id's field. The store moves it out before encoding (the key holds it) and puts
    /// it back after a read.
    fn run_id_mut(&mut self) -> &mut String;
    /// Puts the record in a more compact stored form before it is encoded (default: as is).
    fn pack(&mut self) {}
    /// Undoes [`Stored::pack`] after a read (default: as is).
    fn unpack(&mut self) {}
}

/// A record of any stored kind, as one drain of the ring buffer or one upload hands them
/// over together: in its stored form (packed, its run id held apart) from the start, so it is
/// encoded once as it will be stored.
pub struct Record {
    run_id: String,
    m: Box<dyn Erased>,
}

impl Record {
    /// Wraps a record of a stored kind, packing it.
    pub fn new<M: Stored>(m: M) -> Self {
        Self::boxed(Box::new(m))
    }

    /// [`Record::new`] for a record already boxed, which is kept in its box (no copy).
    pub fn boxed<M: Stored>(mut m: Box<M>) -> Self {
        m.pack();
        let run_id = std::mem::take(m.run_id_mut());
        Self { run_id, m }
    }

    /// The record as its kind `M` in its stored form (packed, see [`Stored::pack`]), still in
    /// its box, or itself back when it is of another kind.
    pub fn take<M: Stored>(self) -> Result<Box<M>, Self> {
        if self.m.as_any().is::<M>() {
            let mut m = self.m.into_any().downcast::<M>().expect("checked kind");
            *m.run_id_mut() = self.run_id;
            Ok(m)
        } else {
            Err(self)
        }
    }

    pub(super) fn tree(&self) -> &'static str {
        self.m.tree()
    }

    pub(super) fn time(&self) -> u64 {
        self.m.time()
    }

    pub(super) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Appends the record, length-delimited.
    pub(super) fn encode_into(&self, buf: &mut Vec<u8>) {
        self.m.encode_delimited(buf)
    }
}

/// A record read back from the store: unpacked, with its run id (records stored before run
/// ids were left out of values keep their own).
pub(super) fn from_stored<M: Stored>(mut m: M, run_id: &str) -> M {
    m.unpack();
    if m.run_id().is_empty() {
        run_id.clone_into(m.run_id_mut());
    }
    m
}

/// [`Stored`] without its associated constant and generic methods, so records of all kinds
/// share one vector.
trait Erased: Send + Sync {
    fn tree(&self) -> &'static str;
    fn time(&self) -> u64;
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
